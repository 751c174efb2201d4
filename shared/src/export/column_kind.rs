//! What a data column holds ([`ColumnKind`]) and the classification of one value: the parser
//! classifies each batch's columns on its own thread (see [`RowBatch::classify_columns`]),
//! and each warehouse's load widens them into its stored kinds
//! (the tracker in `warehouse/column_kinds.rs`).
//!
//! [`RowBatch::classify_columns`]: super::RowBatch::classify_columns

use serde::de::IgnoredAny;

use crate::time::days_in_month;

/// The kind of a column's non-NULL values. A column with no non-NULL value yet has none
/// (`Option<ColumnKind>` is `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnKind {
    /// A 64-bit signed integer written canonically: `-12`, `0`, `42` (no `+`, no leading zero).
    Integer,
    /// A JSON-grammar number with a fraction or an exponent (`1.5`, `-0.25`, `1e+30`) whose
    /// value is a finite `f64`.
    Decimal,
    /// Exactly `true` or `false`.
    Boolean,
    /// An ISO-8601 date or date-time that names a real instant, or CleverTap's `$D_<epoch seconds>`.
    Timestamp,
    /// A JSON array or object (`[…]`, `{…}`) that parses.
    Json,
    /// Anything else, and any mix of the kinds above but integer with decimal.
    Text,
}

impl ColumnKind {
    /// The text stored in `_tapline_columns.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnKind::Integer => "integer",
            ColumnKind::Decimal => "decimal",
            ColumnKind::Boolean => "boolean",
            ColumnKind::Timestamp => "timestamp",
            ColumnKind::Json => "json",
            ColumnKind::Text => "text",
        }
    }

    /// Parses the stored text; anything unknown reads as text, which hides no value.
    pub fn parse(text: &str) -> Self {
        match text {
            "integer" => ColumnKind::Integer,
            "decimal" => ColumnKind::Decimal,
            "boolean" => ColumnKind::Boolean,
            "timestamp" => ColumnKind::Timestamp,
            "json" => ColumnKind::Json,
            _ => ColumnKind::Text,
        }
    }
}

/// The narrowest kind both `a` and `b` fit: the same kind, decimal for integer with decimal,
/// text otherwise.
pub fn widen(a: ColumnKind, b: ColumnKind) -> ColumnKind {
    use ColumnKind::{Decimal, Integer, Text};
    match (a, b) {
        _ if a == b => a,
        (Integer, Decimal) | (Decimal, Integer) => Decimal,
        _ => Text,
    }
}

/// [`widen`] where a side may have no kind yet (only NULLs seen).
pub fn widen_known(a: Option<ColumnKind>, b: Option<ColumnKind>) -> Option<ColumnKind> {
    match (a, b) {
        (Some(a), Some(b)) => Some(widen(a, b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The kind of one non-NULL value. Runs for every field of every row: it dispatches on the
/// first byte, allocates nothing and uses no regex.
pub fn classify(value: &str) -> ColumnKind {
    let b = value.as_bytes();
    match b.first() {
        Some(b'0'..=b'9') if is_iso_timestamp(b) => ColumnKind::Timestamp,
        Some(b'0'..=b'9' | b'-') => classify_number(value),
        Some(b't') if value == "true" => ColumnKind::Boolean,
        Some(b'f') if value == "false" => ColumnKind::Boolean,
        Some(b'[' | b'{') if serde_json::from_str::<IgnoredAny>(value).is_ok() => ColumnKind::Json,
        Some(b'$') if is_clevertap_date(b) => ColumnKind::Timestamp,
        _ => ColumnKind::Text,
    }
}

/// JSON's number grammar, `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`: the form Parquet and
/// JSON exports write floats in (shortest round trip, `1e+30` for large ones), so exponents
/// are accepted. A bare integer must fit in an `i64` (longer digit strings are identifiers) and
/// be its own canonical text (`-0` is not); a decimal must be a finite `f64`.
fn classify_number(value: &str) -> ColumnKind {
    let b = value.as_bytes();
    let mut i = usize::from(b[0] == b'-');
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    let int_digits = digits(&mut i);
    if int_digits == 0 || (int_digits > 1 && b[int_start] == b'0') {
        return ColumnKind::Text;
    }
    let mut decimal = false;
    let mut exponent = false;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return ColumnKind::Text;
        }
        decimal = true;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return ColumnKind::Text;
        }
        decimal = true;
        exponent = true;
    }
    if i != b.len() {
        return ColumnKind::Text;
    }
    // The parses below only settle the edges (overflow); the common values skip them, as
    // this runs for every numeric field of a load.
    if decimal {
        let finite =
            (!exponent && int_digits <= 308) || value.parse::<f64>().is_ok_and(|v| v.is_finite());
        if finite {
            ColumnKind::Decimal
        } else {
            ColumnKind::Text
        }
    } else if value == "-0" || (int_digits > 18 && value.parse::<i64>().is_err()) {
        ColumnKind::Text
    } else {
        ColumnKind::Integer
    }
}

/// `YYYY-MM-DD`, optionally followed by `T` (or a space) and `HH:MM:SS`, an optional fraction of
/// 1–9 digits and an optional zone (`Z` or `±HH:MM`), naming a real date and time in years
/// 0001–9999: the forms every warehouse's timestamp cast (and SQLite's date functions) read.
fn is_iso_timestamp(b: &[u8]) -> bool {
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(year), Some(month), Some(day)) = (num(&b[0..4]), num(&b[5..7]), num(&b[8..10]))
    else {
        return false;
    };
    if year == 0 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return false;
    }
    if b.len() == 10 {
        return true;
    }
    if b.len() < 19 || !(b[10] == b'T' || b[10] == b' ') || b[13] != b':' || b[16] != b':' {
        return false;
    }
    let (Some(hour), Some(minute), Some(second)) =
        (num(&b[11..13]), num(&b[14..16]), num(&b[17..19]))
    else {
        return false;
    };
    if hour > 23 || minute > 59 || second > 59 {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|d| d.is_ascii_digit()).count();
        if !(1..=9).contains(&n) {
            return false;
        }
        rest = &fraction[n..];
    }
    match rest {
        [] | [b'Z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            matches!((num(&[*h1, *h2]), num(&[*m1, *m2])), (Some(h), Some(m)) if h <= 23 && m <= 59)
        }
        _ => false,
    }
}

/// CleverTap's date property form, `$D_<epoch seconds>`, within the years every warehouse's
/// timestamp type holds (0001-01-01 to 9999-12-31).
fn is_clevertap_date(b: &[u8]) -> bool {
    const MIN: i64 = -62_135_596_800;
    const MAX: i64 = 253_402_300_799;
    let Some(epoch) = b.strip_prefix(b"$D_") else {
        return false;
    };
    let digits = epoch.strip_prefix(b"-").unwrap_or(epoch);
    if digits.is_empty() || digits.len() > 12 || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    // ASCII digits and a sign: valid UTF-8, and at most 13 bytes parse without overflow.
    std::str::from_utf8(epoch)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .is_some_and(|v| (MIN..=MAX).contains(&v))
}

/// The value of ASCII digits, `None` if any byte is not one.
fn num(digits: &[u8]) -> Option<i32> {
    digits.iter().try_fold(0i32, |acc, d| {
        d.is_ascii_digit().then(|| acc * 10 + i32::from(d - b'0'))
    })
}
