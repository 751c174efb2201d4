//! What makes a profile record (an Export Center CSV row or JSON line, or an API record already
//! reshaped to that JSON) a profile snapshot row: its key, its hash, its leading columns and
//! the names of its property columns. The CSV and JSON parsers read the records and call these,
//! so both formats give the same key, hash and columns for the same profile.

use std::borrow::Cow;

use serde_json::Value;

use super::TS_COLUMN;
use super::row_checks::CheckFailure;
// The snapshot's own columns, named once in `export` (the warehouse's views read them too):
// the key (`identity`, else the `clevertapId`), [`profile_hash`] of the properties, and the
// whole record as compact JSON.
pub use super::{
    PROFILE_HASH_COLUMN, PROFILE_IDENTITY_COLUMN as IDENTITY_COLUMN,
    PROFILE_RECORD_COLUMN as RECORD_COLUMN,
};

/// The CleverTap ID a profile without an identity is keyed by.
pub const CLEVERTAP_ID_COLUMN: &str = "clevertapId";
/// The leading columns of every snapshot row, in order; the properties follow.
pub const SNAPSHOT_COLUMNS: [&str; 4] = [
    IDENTITY_COLUMN,
    TS_COLUMN,
    PROFILE_HASH_COLUMN,
    RECORD_COLUMN,
];
/// The reject reason of a profile with neither key.
pub const NO_KEY_REASON: &str = "a profile needs an identity or a clevertapId";
/// Appended to a property whose raw name is one of ours (`ts`, `_profile_hash`, `_record`):
/// `ts` becomes `ts (property)` (column `ts_property`), so its value is kept, not refused.
pub const RENAMED_PROPERTY_SUFFIX: &str = " (property)";
/// Properties CleverTap writes as a list, in one documented revision as a JSON array and in
/// another as the text `"[a, b]"`: both are stored as the same JSON array text.
pub const LIST_PROPERTIES: [&str; 2] = ["all_identities", "clevertapIds"];

/// The raw column name of a property: its own, unless it is one of [`SNAPSHOT_COLUMNS`] other
/// than `identity` (which is the key column itself); then [`RENAMED_PROPERTY_SUFFIX`] is added.
pub fn property_column(raw: &str) -> Cow<'_, str> {
    if raw != IDENTITY_COLUMN && SNAPSHOT_COLUMNS.contains(&raw) {
        Cow::Owned(format!("{raw}{RENAMED_PROPERTY_SUFFIX}"))
    } else {
        Cow::Borrowed(raw)
    }
}

/// The stored text of a [`LIST_PROPERTIES`] value, `None` for any other property. A JSON array
/// (`["a","b"]`, or `[1,2]`) and the bracketed text CleverTap also writes (`[a, b]`, or a bare
/// `a, b`) both become a compact JSON array of strings: `["a","b"]`.
pub fn list_property_text(raw: &str, text: &str) -> Option<String> {
    if !LIST_PROPERTIES.contains(&raw) {
        return None;
    }
    let items: Vec<Value> = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .filter(|item| !item.is_null())
            .map(|item| match item {
                Value::String(s) => Value::String(s),
                other => Value::String(other.to_string()),
            })
            .collect(),
        _ => {
            let trimmed = text.trim();
            let inner = trimmed
                .strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .unwrap_or(trimmed);
            inner
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_string()))
                .collect()
        }
    };
    Some(Value::Array(items).to_string())
}

/// The snapshot key of a profile: its `identity`, else its `clevertapId` (blank counts as
/// absent); neither is a row reject with [`NO_KEY_REASON`].
pub fn snapshot_key<'t>(
    identity: Option<&'t str>,
    clevertap_id: Option<&'t str>,
) -> Result<&'t str, CheckFailure> {
    let present = |text: &&str| !text.trim().is_empty();
    identity
        .filter(present)
        .or(clevertap_id.filter(present))
        .ok_or((Some(IDENTITY_COLUMN), NO_KEY_REASON.to_string()))
}

/// `_profile_hash`: 16 lowercase hex digits of FNV-1a 64 over a profile's properties, so a
/// profile that did not change has the same hash in every snapshot, from CSV, JSON or the API.
///
/// The input is every field of the record whose value is not NULL (absent, JSON `null`, or
/// empty text), `identity` included, as `(raw name, value text)`: the raw name as the source
/// gives it (nested JSON objects as dotted names, before any [`property_column`] rename), the
/// value text as the row stores it (JSON strings unquoted, numbers and booleans as JSON writes
/// them, arrays as compact JSON, [`LIST_PROPERTIES`] as [`list_property_text`]). The pairs are
/// sorted by name bytes, then value bytes, and each pair is fed as, in this order:
/// the name's byte length as 8 bytes little-endian, the name's UTF-8 bytes, the value's byte
/// length as 8 bytes little-endian, the value's UTF-8 bytes. FNV-1a 64 starts from the offset
/// basis `0xcbf29ce484222325` and, per byte, XORs it in and multiplies by the prime
/// `0x100000001b3` (wrapping). The hash is written with `{:016x}`. This layout is stored in
/// every warehouse: changing it makes every profile look changed once.
pub fn profile_hash<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut pairs: Vec<(&str, &str)> = pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    pairs.sort_unstable();
    let mut hash = OFFSET_BASIS;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for (name, value) in pairs {
        for part in [name, value] {
            feed(&(part.len() as u64).to_le_bytes());
            feed(part.as_bytes());
        }
    }
    format!("{hash:016x}")
}

/// `_record` of a CSV row: a JSON object of its non-empty fields, by header name, as written.
pub fn csv_record_text<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let object: serde_json::Map<String, Value> = fields
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    Value::Object(object).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_properties_take_one_form() {
        for text in [
            r#"["a","b"]"#,
            "[a, b]",
            "a,b",
            " [ a ,b ] ",
            r#"["a", "b", null]"#,
        ] {
            assert_eq!(
                list_property_text("all_identities", text).as_deref(),
                Some(r#"["a","b"]"#),
                "{text}"
            );
        }
        assert_eq!(
            list_property_text("clevertapIds", "[1, 2]").as_deref(),
            Some(r#"["1","2"]"#)
        );
        assert_eq!(
            list_property_text("clevertapIds", "[]").as_deref(),
            Some("[]")
        );
        assert_eq!(list_property_text("Email", "[a, b]"), None);
    }

    #[test]
    fn the_key_is_the_identity_else_the_clevertap_id() {
        assert_eq!(snapshot_key(Some("u1"), Some("__g1")), Ok("u1"));
        assert_eq!(snapshot_key(Some(" "), Some("__g1")), Ok("__g1"));
        assert_eq!(snapshot_key(None, Some("__g1")), Ok("__g1"));
        assert_eq!(
            snapshot_key(Some(""), None),
            Err((
                Some("identity"),
                "a profile needs an identity or a clevertapId".to_string()
            ))
        );
    }

    #[test]
    fn reserved_names_are_renamed_and_identity_is_the_key() {
        assert_eq!(property_column("ts"), "ts (property)");
        assert_eq!(property_column("_record"), "_record (property)");
        assert_eq!(property_column("_profile_hash"), "_profile_hash (property)");
        assert_eq!(property_column("identity"), "identity");
        assert_eq!(property_column("Blood Group"), "Blood Group");
    }

    #[test]
    fn the_hash_layout_is_stable() {
        // Pinned: these values are stored in warehouses; a change here changes every profile.
        assert_eq!(profile_hash([]), "cbf29ce484222325");
        let hash = profile_hash([("identity", "u1"), ("Email", "a@b.c")]);
        assert_eq!(hash, profile_hash([("Email", "a@b.c"), ("identity", "u1")]));
        assert_eq!(
            hash,
            profile_hash([("Email", "a@b.c"), ("identity", "u1"), ("x", "")])
        );
        assert_eq!(hash, "4b40df640c862d5f", "computed independently (Python)");
        // Lengths keep the parts apart: moving a byte between name and value changes it.
        assert_ne!(profile_hash([("ab", "c")]), profile_hash([("a", "bc")]));
    }

    use std::collections::BTreeMap;
    use std::io;

    use serde_json::json;

    use crate::export::limits::ExportLimits;
    use crate::export::object_name::{DataFormat, ExportKind};
    use crate::export::parse::{FileProblem, ParseError, ParseOptions, ParseSummary};
    use crate::export::rows::{Reject, RowBatch};
    use crate::export::{parse_export, parse_json_values};
    use crate::time::TsParser;

    /// 2025-10-28T11:42:01Z, the run time of CleverTap's sample name `…-1761651721-…`.
    const RUN_MICROS: i64 = 1_761_651_721_000_000;

    fn opts() -> ParseOptions {
        ParseOptions {
            kind: ExportKind::Profiles,
            ts: TsParser::new(&jiff::tz::TimeZone::UTC, None),
            event_name_fallback: None,
            max_columns: 2000,
            batch_rows: 100,
            max_record_bytes: 1 << 20,
            limits: ExportLimits::default(),
            snapshot_micros: Some(RUN_MICROS),
        }
    }

    /// One parsed row: its line, `ts` and non-NULL fields by raw column name.
    #[derive(Debug, PartialEq)]
    struct Snapshot {
        line: u64,
        ts: i64,
        fields: BTreeMap<String, String>,
    }

    #[derive(Debug)]
    struct Parsed {
        /// Each batch's columns, in order.
        columns: Vec<Vec<String>>,
        rows: Vec<Snapshot>,
        rejects: Vec<Reject>,
        end: Result<ParseSummary, ParseError>,
    }

    fn collect(
        parse: impl FnOnce(&mut crate::export::parse::BatchSink<'_>) -> Result<ParseSummary, ParseError>,
    ) -> Parsed {
        let (mut columns, mut rows, mut rejects) = (Vec::new(), Vec::new(), Vec::new());
        let end = parse(&mut |b: RowBatch| {
            assert!(b.is_profiles(), "profile rows route to profile_snapshots");
            let names = b.schema().columns().to_vec();
            for r in b.rows() {
                assert_eq!(r.event_name(), crate::export::PROFILE_SNAPSHOTS_KEY);
                let fields = names
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| Some((n.clone(), r.value(i)?.to_string())))
                    .collect();
                rows.push(Snapshot {
                    line: r.line,
                    ts: r.ts_micros(),
                    fields,
                });
            }
            rejects.extend(b.rejects);
            columns.push(names);
            true
        });
        Parsed {
            columns,
            rows,
            rejects,
            end,
        }
    }

    fn parse(format: DataFormat, text: &str, opts: &ParseOptions) -> Parsed {
        let bytes = text.as_bytes().to_vec();
        collect(|sink| parse_export(io::Cursor::new(bytes), format, opts, sink))
    }

    fn values(records: &[serde_json::Value], opts: &ParseOptions) -> Parsed {
        collect(|sink| parse_json_values(records, opts, sink))
    }

    /// CleverTap's documented profile JSON sample (`shared/reference/clevertap.md`), with
    /// `all_identities` in the revision's form given.
    fn documented(all_identities: serde_json::Value) -> serde_json::Value {
        json!({
            "identity": "5555555555",
            "all_identities": all_identities,
            "clevertapId": "__g5555",
            "clevertapIds": ["__g5555", "__g6666"],
            "token": "tok-1",
            "subscriptionGroups": {"group1": "Subscribed", "group2": "Unsubscribed"},
            "MSG-webpush": true,
            "MSG-push": true,
            "MSG-email": false,
            "MSG-sms": true,
            "MSG-whatsapp": true,
            "Email": "jack@example.com",
            "Phone": 919876543210u64,
            "Name": "Jack Montana",
            "Gender": "M",
            "DOB": "1990-02-03",
            "Photo": "https://example.com/jack.jpg",
            "Blood Group": "O+"
        })
    }

    fn lines(records: &[serde_json::Value]) -> String {
        records.iter().map(|r| format!("{r}\n")).collect()
    }

    #[test]
    fn the_documented_json_sample_is_one_snapshot_row_in_both_revisions() {
        let revisions = [
            documented(json!("[5555555555, jack@example.com]")),
            documented(json!(["5555555555", "jack@example.com"])),
        ];
        let parsed = parse(DataFormat::Json, &lines(&revisions), &opts());
        assert!(parsed.rejects.is_empty(), "{:?}", parsed.rejects);
        assert_eq!(parsed.end.unwrap().rows, 2);
        let (a, b) = (&parsed.rows[0], &parsed.rows[1]);
        assert_eq!((a.line, a.ts), (1, RUN_MICROS));
        assert_eq!(a.fields["identity"], "5555555555");
        assert_eq!(
            a.fields["all_identities"], r#"["5555555555","jack@example.com"]"#,
            "the string form is stored as the array"
        );
        assert_eq!(a.fields["all_identities"], b.fields["all_identities"]);
        assert_eq!(a.fields["_profile_hash"], b.fields["_profile_hash"]);
        assert_eq!(a.fields["_profile_hash"].len(), 16);
        assert_eq!(a.fields["clevertapIds"], r#"["__g5555","__g6666"]"#);
        assert_eq!(a.fields["subscriptionGroups.group1"], "Subscribed");
        assert_eq!(a.fields["MSG-push"], "true");
        assert_eq!(a.fields["MSG-email"], "false");
        assert_eq!(a.fields["Phone"], "919876543210");
        assert_eq!(a.fields["Blood Group"], "O+");
        // `_record` is the record as given: the two revisions differ there, and only there.
        let record: serde_json::Value = serde_json::from_str(&a.fields["_record"]).unwrap();
        assert_eq!(record, revisions[0]);
        assert_ne!(a.fields["_record"], b.fields["_record"]);
        let columns = &parsed.columns[0];
        assert_eq!(columns[..4], ["identity", "ts", "_profile_hash", "_record"]);
        assert!(!columns[4..].contains(&"identity".to_string()));
        // A changed property changes the hash.
        let mut moved = revisions[1].clone();
        moved["Blood Group"] = json!("A-");
        let changed = values(&[moved], &opts());
        assert_ne!(
            changed.rows[0].fields["_profile_hash"],
            a.fields["_profile_hash"]
        );
    }

    #[test]
    fn a_csv_with_renamed_and_reordered_columns_keeps_them_in_header_order() {
        let csv = "Email,Blood Group,clevertapId,identity,all_identities,ts,Loyalty Tier\n\
                   a@example.com,O+,__g1,u1,\"[u1, a@example.com]\",1700000000,gold\n\
                   b@example.com,,__g2,u2,,,\n";
        let parsed = parse(DataFormat::Csv, csv, &opts());
        assert!(parsed.rejects.is_empty(), "{:?}", parsed.rejects);
        assert_eq!(
            parsed.columns[0],
            [
                "identity",
                "ts",
                "_profile_hash",
                "_record",
                "Email",
                "Blood Group",
                "clevertapId",
                "all_identities",
                "ts (property)",
                "Loyalty Tier"
            ]
        );
        let first = &parsed.rows[0];
        assert_eq!((first.line, first.ts), (2, RUN_MICROS));
        assert_eq!(first.fields["identity"], "u1");
        assert_eq!(first.fields["Blood Group"], "O+");
        assert_eq!(first.fields["all_identities"], r#"["u1","a@example.com"]"#);
        assert_eq!(
            first.fields["ts (property)"], "1700000000",
            "a property named ts is renamed, not lost"
        );
        assert_eq!(
            first.fields["_record"],
            r#"{"Blood Group":"O+","Email":"a@example.com","Loyalty Tier":"gold","all_identities":"[u1, a@example.com]","clevertapId":"__g1","identity":"u1","ts":"1700000000"}"#
        );
        let second = &parsed.rows[1];
        assert_eq!(second.line, 3);
        assert!(!second.fields.contains_key("Blood Group"), "empty is NULL");
    }

    #[test]
    fn without_an_identity_the_clevertap_id_keys_the_row_and_without_both_it_is_rejected() {
        let csv =
            "identity,clevertapId,Email\n,__g7,a@example.com\n,,b@example.com\nu3,,c@example.com\n";
        let parsed = parse(DataFormat::Csv, csv, &opts());
        let keys: Vec<_> = parsed
            .rows
            .iter()
            .map(|r| (r.line, r.fields["identity"].as_str()))
            .collect();
        assert_eq!(keys, [(2, "__g7"), (4, "u3")]);
        assert_eq!(
            parsed
                .rejects
                .iter()
                .map(|r| (
                    r.line,
                    r.column.as_deref(),
                    r.reason.as_str(),
                    r.raw.as_str()
                ))
                .collect::<Vec<_>>(),
            [(
                3,
                Some("identity"),
                "a profile needs an identity or a clevertapId",
                ",,b@example.com"
            )]
        );
        let records = [
            json!({"clevertapId": "__g7", "Email": "a@example.com"}),
            json!({"identity": "", "Email": "b@example.com"}),
        ];
        let parsed = values(&records, &opts());
        assert_eq!(parsed.rows.len(), 1);
        assert_eq!(parsed.rows[0].fields["identity"], "__g7");
        assert_eq!(parsed.rejects.len(), 1);
        assert_eq!(
            (parsed.rejects[0].line, parsed.rejects[0].reason.as_str()),
            (2, "a profile needs an identity or a clevertapId")
        );
    }

    #[test]
    fn the_same_profile_as_csv_and_as_json_has_the_same_hash_and_columns() {
        let csv = "identity,all_identities,clevertapId,clevertapIds,subscriptionGroups.group1,MSG-push,Email,Phone,Blood Group,Score\n\
                   u1,\"[u1, a@example.com]\",__g1,\"[__g1]\",Subscribed,true,a@example.com,919876543210,O+,4.5\n";
        let json = json!({"identity": "u1", "all_identities": ["u1", "a@example.com"],
            "clevertapId": "__g1", "clevertapIds": ["__g1"],
            "subscriptionGroups": {"group1": "Subscribed"}, "MSG-push": true,
            "Email": "a@example.com", "Phone": 919876543210u64, "Blood Group": "O+",
            "Score": 4.5, "Nothing": null, "Empty": ""});
        let from_csv = parse(DataFormat::Csv, csv, &opts());
        let from_json = parse(
            DataFormat::Json,
            &lines(std::slice::from_ref(&json)),
            &opts(),
        );
        let from_values = values(&[json], &opts());
        let (c, j) = (&from_csv.rows[0], &from_json.rows[0]);
        assert_eq!(c.fields["_profile_hash"], j.fields["_profile_hash"]);
        let without_record = |s: &Snapshot| {
            let mut f = s.fields.clone();
            f.remove("_record");
            f
        };
        assert_eq!(
            without_record(c),
            without_record(j),
            "the same values in the same columns"
        );
        let sorted = |cols: &[String]| {
            let mut cols = cols.to_vec();
            cols.sort();
            cols
        };
        let json_columns: Vec<String> = from_json.columns[0]
            .iter()
            .filter(|c| *c != "Nothing" && *c != "Empty")
            .cloned()
            .collect();
        assert_eq!(sorted(&from_csv.columns[0]), sorted(&json_columns));
        assert_eq!(from_values.rows, from_json.rows, "values parse as lines do");
    }

    #[test]
    fn a_profile_record_over_the_size_limit_stops_the_file() {
        let mut o = opts();
        o.max_record_bytes = 4096;
        // The CSV reader holds its read-ahead (128 KiB) beyond the limit before it refuses.
        let big = "x".repeat(300 * 1024);
        let json = format!("{{\"identity\":\"u1\"}}\n{{\"identity\":\"u2\",\"Bio\":\"{big}\"}}\n");
        let csv = format!("identity,Bio\nu1,short\nu2,\"{big}\"\n");
        for (format, text, line) in [(DataFormat::Json, json, 2), (DataFormat::Csv, csv, 3)] {
            match parse(format, &text, &o).end {
                Err(ParseError::Problem(FileProblem::RecordTooLarge {
                    line: at,
                    limit: 4096,
                })) => {
                    assert_eq!(at, line, "{format:?}")
                }
                other => panic!("{format:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn profile_json_has_no_event_name_line_and_reserved_keys_are_renamed() {
        let text = "Charged\n{\"identity\":\"u1\",\"ts\":5,\"_record\":\"mine\"}\n{\"identity\":\"u2\",\"ts\":6,\"ts (property)\":7}\n";
        let parsed = parse(DataFormat::Json, text, &opts());
        assert_eq!(parsed.rows.len(), 1);
        let row = &parsed.rows[0];
        assert_eq!(row.ts, RUN_MICROS);
        assert_eq!(row.fields["ts (property)"], "5");
        assert_eq!(row.fields["_record (property)"], "mine");
        let rejects: Vec<_> = parsed
            .rejects
            .iter()
            .map(|r| (r.line, r.reason.as_str()))
            .collect();
        assert_eq!(rejects[0].0, 1);
        assert!(rejects[0].1.starts_with("invalid JSON"), "{rejects:?}");
        assert_eq!(
            rejects[1],
            (
                3,
                "the name \"ts (property)\" appears twice in the record once nested keys are flattened"
            )
        );
    }

    #[test]
    fn a_nul_byte_and_the_column_limit_hold_for_profiles_too() {
        let parsed = values(&[json!({"identity": "u1", "x": "a\u{0}b"})], &opts());
        assert_eq!(parsed.rejects[0].reason, "NUL byte in a field");
        let mut o = opts();
        o.max_columns = 5;
        match parse(DataFormat::Csv, "identity,a,b\nu1,1,2\n", &o).end {
            Err(ParseError::Problem(FileProblem::TooManyColumns { count: 6, limit: 5 })) => {}
            other => panic!("{other:?}"),
        }
        let parsed = values(
            &[
                json!({"identity": "u1", "a": 1}),
                json!({"identity": "u2", "a": 1, "b": 2}),
            ],
            &o,
        );
        assert_eq!(parsed.rows.len(), 1);
        assert_eq!(
            parsed.rejects[0].reason,
            "new keys would take the table past the warehouse's 5 columns"
        );
    }
}
