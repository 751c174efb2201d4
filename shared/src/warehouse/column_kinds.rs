//! What a data column holds, inferred from its values while a file loads: the kind the typed
//! views (`bi_*`) cast it to. Raw tables stay text; a kind only decides how a view reads them.
//! Kinds widen (integer → decimal → text; boolean, timestamp and JSON only to text) and are never
//! narrowed, so a value that once fitted its column's kind always does.

use std::collections::HashMap;

use crate::export::RowBatch;
pub use crate::export::column_kind::{ColumnKind, classify, widen, widen_known};

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

    /// Widens the kinds with every row of `batch`: with the kinds the parser classified on its
    /// own thread ([`RowBatch::classify_columns`]), else classified here.
    pub fn observe(&mut self, batch: &RowBatch) {
        if self.off {
            return;
        }
        let classified;
        let runs = match batch.kind_runs() {
            Some(runs) => runs,
            None => {
                classified = batch.column_kind_runs();
                &classified
            }
        };
        let columns = batch.schema().columns();
        for run in runs {
            let key = batch.row(run.first_row).event_name();
            let table = self.tables.entry(key.to_string()).or_default();
            for (raw, kind) in columns.iter().zip(&run.kinds) {
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
    fn kinds_the_parser_classified_are_those_the_tracker_would_find() {
        let rows = [
            ("Charged", [None, None, Some("12")]),
            ("Viewed", [None, None, Some("seven")]),
            ("Charged", [None, None, Some("12.5")]),
            ("Charged", [None, None, None]),
        ];
        let mut classified = batch(&rows);
        classified.classify_columns();
        let runs = classified.kind_runs().expect("classified");
        assert_eq!(
            runs.iter()
                .map(|r| (r.first_row, r.kinds[2]))
                .collect::<Vec<_>>(),
            vec![(0, Some(Integer)), (1, Some(Text)), (2, Some(Decimal))]
        );
        let (mut parsed, mut here) = (ColumnKindTracker::default(), ColumnKindTracker::default());
        parsed.observe(&classified);
        here.observe(&batch(&rows));
        assert_eq!(kinds(&parsed), kinds(&here));
        // A row added after classifying clears the kinds: they would not cover it.
        classified.start_row(9, 0);
        assert!(classified.kind_runs().is_none());
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
