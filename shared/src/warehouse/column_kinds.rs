//! What a data column holds, inferred from its values while a file loads: the kind the typed
//! views (`bi_*`) cast it to. Raw tables stay text; a kind only decides how a view reads them.
//! Kinds widen (integer → decimal → text; boolean, timestamp and JSON only to text) and are never
//! narrowed, so a value that once fitted its column's kind always does.

use std::collections::HashMap;

use serde::de::IgnoredAny;

use crate::export::RowBatch;
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

/// The kinds one load saw: per table key (a row's [`event_name`](crate::export::Row::event_name))
/// and raw column, the widened kind of its non-NULL values. `ts` is a timestamp by construction
/// and is not classified. Every warehouse's `append` calls [`Self::observe`] once per batch, and
/// its commit widens the stored kinds with [`Self::observed`].
#[derive(Debug, Default, Clone)]
pub struct ColumnKindTracker {
    /// Table key → raw column → kind (`None`: only NULLs so far).
    tables: HashMap<String, HashMap<String, Option<ColumnKind>>>,
    /// Set by [`Self::disabled`]: observe nothing (the bench's baseline).
    off: bool,
}

impl ColumnKindTracker {
    /// The tracker a warehouse load starts with: inferring, unless built with the cargo
    /// feature `bench-no-kind-inference` (a second binary `make bench` builds to measure what
    /// inference costs; never a deployed build).
    pub fn for_load() -> Self {
        if cfg!(feature = "bench-no-kind-inference") {
            Self::disabled()
        } else {
            Self::default()
        }
    }

    /// A tracker that observes nothing, so a bench can measure the load without inference.
    pub fn disabled() -> Self {
        Self {
            off: true,
            ..Self::default()
        }
    }

    /// Widens the kinds with every row of `batch`. Rows of one table come in runs, so each run
    /// is classified into a local vector and merged into the map once.
    pub fn observe(&mut self, batch: &RowBatch) {
        if self.off {
            return;
        }
        let columns = batch.schema().columns();
        let mut rows = batch.rows().peekable();
        let mut run: Vec<Option<ColumnKind>> = Vec::with_capacity(columns.len());
        // The columns still worth classifying: one that reached text is dropped from the list.
        let mut open: Vec<usize> = Vec::with_capacity(columns.len());
        while let Some(first) = rows.peek().copied() {
            let key = first.event_name();
            let ts = first.ts_index();
            run.clear();
            run.resize(columns.len(), None);
            open.clear();
            open.extend((0..columns.len()).filter(|i| ts != Some(*i)));
            while let Some(row) = rows.next_if(|r| r.event_name() == key) {
                open.retain(|&i| {
                    if let Some(value) = row.value(i) {
                        let seen = classify(value);
                        run[i] = Some(run[i].map_or(seen, |k| widen(k, seen)));
                    }
                    run[i] != Some(ColumnKind::Text)
                });
            }
            if let Some(i) = ts {
                run[i] = Some(ColumnKind::Timestamp);
            }
            let table = self.tables.entry(key.to_string()).or_default();
            for (raw, kind) in columns.iter().zip(&run) {
                match table.get_mut(raw) {
                    Some(known) => *known = widen_known(*known, *kind),
                    None => {
                        table.insert(raw.clone(), *kind);
                    }
                }
            }
        }
    }

    /// `(table key, raw column, kind)` for every column seen with a non-NULL value.
    pub fn observed(&self) -> impl Iterator<Item = (&str, &str, ColumnKind)> {
        self.tables.iter().flat_map(|(key, columns)| {
            columns
                .iter()
                .filter_map(move |(raw, kind)| Some((key.as_str(), raw.as_str(), (*kind)?)))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::ColumnKind::{Boolean, Decimal, Integer, Json, Text, Timestamp};
    use super::*;
    use crate::export::Schema;

    fn all(values: &[&str], kind: ColumnKind) {
        for v in values {
            assert_eq!(classify(v), kind, "{v:?}");
        }
    }

    #[test]
    fn integers_are_canonical_and_fit_in_64_bits() {
        all(
            &[
                "0",
                "7",
                "-12",
                "42",
                "9223372036854775807",
                "-9223372036854775808",
            ],
            Integer,
        );
        // Leading zeros and a plus sign are identifiers (codes, phone numbers), not numbers.
        all(&["007", "-01", "00", "+5", "-0", "+919876543210"], Text);
        all(&["9223372036854775808", "-9223372036854775809"], Text);
        let sixty_four_digits = "1234567890".repeat(6) + "1234";
        assert_eq!(sixty_four_digits.len(), 64);
        assert_eq!(classify(&sixty_four_digits), Text);
        all(&["1 ", " 1", "1_000", "1,000", "12abc", "-", "0x1F"], Text);
    }

    #[test]
    fn decimals_follow_the_json_number_grammar_with_exponents() {
        all(
            &[
                "1.5", "-0.25", "0.0", "-0.0", "1e+30", "1E5", "2.5e-7", "1e-400",
            ],
            Decimal,
        );
        all(
            &[
                ".5", "5.", "01.5", "1e", "1e+", "1.5.2", "NaN", "inf", "-inf",
            ],
            Text,
        );
        // Beyond f64: text rather than an infinity.
        all(&["1e400", "-1e400"], Text);
        let long = format!("{}.5", "9".repeat(308));
        assert_eq!(classify(&long), Decimal);
        assert_eq!(
            classify(&format!("9{long}")),
            Text,
            "309 digits overflow f64"
        );
    }

    #[test]
    fn booleans_are_exactly_true_or_false() {
        all(&["true", "false"], Boolean);
        all(&["True", "FALSE", "t", "yes", "1 ", "truex"], Text);
        assert_eq!(classify("1"), Integer);
    }

    #[test]
    fn timestamps_are_real_iso_instants_or_clevertap_dates() {
        all(
            &[
                "2022-09-21",
                "2022-09-21T04:39:25Z",
                "2022-09-21 04:39:25",
                "2024-02-29T00:00:00.123456789+05:30",
                "2022-09-21T04:39:25-08:00",
                "$D_1663735165",
                "$D_-86400",
                "$D_0",
            ],
            Timestamp,
        );
        all(
            &[
                "2022-02-30T00:00:00Z",
                "2023-02-29",
                "2022-13-01",
                "0000-01-01",
                "2022-09-21T24:00:00Z",
                "2022-09-21T04:60:00Z",
                "2022-09-21T04:39:60Z",
                "2022-09-21T04:39",
                "2022-09-21T04:39:25.Z",
                "2022-09-21T04:39:25.1234567890Z",
                "2022-09-21T04:39:25+0530",
                "2022-09-21T04:39:25 UTC",
                "2022-9-21",
                "$D_",
                "$D_12x",
                "$D_9999999999999",
                "$D_253402300800",
                "$d_1663735165",
            ],
            Text,
        );
    }

    #[test]
    fn json_is_an_array_or_object_that_parses() {
        all(&["[]", "[1,2]", "{\"a\":{\"b\":[true]}}", "{}"], Json);
        all(&["[1,", "{a:1}", "[1] x", "\"quoted\"", "null"], Text);
    }

    #[test]
    fn everything_else_is_text() {
        all(&["", "hello", "Mumbai", "-x", "😀", "\u{0}"], Text);
    }

    #[test]
    fn kinds_widen_and_never_narrow() {
        assert_eq!(widen(Integer, Integer), Integer);
        assert_eq!(widen(Integer, Decimal), Decimal);
        assert_eq!(widen(Decimal, Integer), Decimal);
        for k in [Integer, Decimal, Boolean, Timestamp, Json] {
            assert_eq!(widen(k, Text), Text);
            assert_eq!(widen(Text, k), Text);
        }
        // A boolean column that later holds `1` is text: `1` is no boolean.
        assert_eq!(widen(Boolean, classify("1")), Text);
        assert_eq!(widen(Timestamp, Integer), Text);
        assert_eq!(widen(Json, Boolean), Text);
        assert_eq!(widen_known(None, Some(Integer)), Some(Integer));
        assert_eq!(widen_known(Some(Decimal), None), Some(Decimal));
        assert_eq!(widen_known(None, None), None);
        for k in [Integer, Decimal, Boolean, Timestamp, Json, Text] {
            assert_eq!(ColumnKind::parse(k.as_str()), k);
        }
        assert_eq!(ColumnKind::parse("money"), Text);
    }

    fn batch(rows: &[(&str, [Option<&str>; 3])]) -> RowBatch {
        let schema = Schema::new(vec!["ts".into(), "eventName".into(), "amount".into()]);
        let mut b = RowBatch::new(Arc::new(schema), 1);
        for (i, (event, [ts, _, amount])) in rows.iter().enumerate() {
            b.start_row(i as u64 + 2, 0);
            b.push_field(*ts);
            b.push_field(Some(event));
            b.push_field(*amount);
        }
        b
    }

    fn kinds(t: &ColumnKindTracker) -> Vec<(String, String, ColumnKind)> {
        let mut v: Vec<_> = t
            .observed()
            .map(|(k, r, kind)| (k.to_string(), r.to_string(), kind))
            .collect();
        v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        v
    }

    #[test]
    fn the_tracker_widens_per_table_and_column_across_batches() {
        let mut t = ColumnKindTracker::default();
        // Mixed types in one file: the Charged amounts are numbers, one Viewed amount is text.
        t.observe(&batch(&[
            ("Charged", [None, None, Some("12")]),
            ("Charged", [None, None, Some("12.5")]),
            ("Viewed", [None, None, None]),
            ("Charged", [None, None, None]),
            ("Viewed", [None, None, Some("7")]),
            ("Viewed", [None, None, Some("seven")]),
        ]));
        let text = |e: &str, r: &str, k| (e.to_string(), r.to_string(), k);
        assert_eq!(
            kinds(&t),
            vec![
                text("Charged", "amount", Decimal),
                text("Charged", "eventName", Text),
                text("Charged", "ts", Timestamp),
                text("Viewed", "amount", Text),
                text("Viewed", "eventName", Text),
                text("Viewed", "ts", Timestamp),
            ]
        );
        t.observe(&batch(&[("Charged", [None, None, Some("n/a")])]));
        assert_eq!(kinds(&t)[0], text("Charged", "amount", Text));
    }

    #[test]
    fn a_column_of_nulls_has_no_kind_and_a_disabled_tracker_sees_nothing() {
        let mut t = ColumnKindTracker::default();
        t.observe(&batch(&[("A", [None, None, None])]));
        assert!(kinds(&t).iter().all(|(_, raw, _)| raw != "amount"));
        let mut off = ColumnKindTracker::disabled();
        off.observe(&batch(&[("A", [None, None, Some("1")])]));
        assert_eq!(off.observed().count(), 0);
    }
}
