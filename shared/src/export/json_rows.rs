//! Legacy JSON exports: one object per line, nested objects flattened to the dotted names the
//! CSV header uses (`profile.identity`, `eventProps.Amount`), so both formats fill the same
//! columns.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::batcher::{BatchSink, Batcher, ParseSummary};
use super::limits::name_preview;
use super::parse_error::{ParseError, RecordTooLargeError, io_to_parse_error};
use super::parse_options::ParseOptions;
use super::row_checks::RowChecks;
use super::rows::{Reject, RowBatch, Schema};
use super::{EVENT_NAME_COLUMN, TS_COLUMN};

/// Parses a decoded JSON-lines export. Columns appear as keys are first seen; a row without a
/// key has NULL there.
pub(crate) fn parse_json_lines(
    input: Box<dyn Read + Send>,
    opts: &ParseOptions,
    sink: &mut BatchSink<'_>,
) -> Result<ParseSummary, ParseError> {
    let mut reader = BufReader::with_capacity(64 * 1024, input);
    let mut columns = Columns::new();
    let mut batcher = Batcher::new(columns.new_batch(), sink, opts.batch_rows);
    let checks = RowChecks::new(opts);
    let mut line_buf = Vec::new();
    let mut flat: Vec<(String, Option<String>)> = Vec::new();
    let mut values: Vec<Option<String>> = Vec::new();
    let bounds = FlattenBounds {
        max_name_bytes: opts.limits.max_column_name_bytes,
        max_keys: opts.max_columns,
    };
    let mut line_no = 0u64;
    let mut decoded = 0u64;
    // The event name some exports write alone on their first line (see [`first_line_name`]).
    let mut header_name: Option<String> = None;
    let mut first_record = true;

    loop {
        line_buf.clear();
        let n = read_line_limited(&mut reader, &mut line_buf, opts.max_record_bytes)
            .map_err(|e| io_to_parse_error(e, line_no + 1, opts))?;
        if n == 0 {
            break;
        }
        decoded += n as u64;
        line_no += 1;
        let trimmed = line_buf.trim_ascii();
        if trimmed.is_empty() {
            continue;
        }
        if std::mem::take(&mut first_record)
            && let Some(name) = first_line_name(trimmed, opts.limits.max_column_name_bytes)
        {
            header_name = Some(name);
            continue;
        }
        let reject = |column: Option<&str>, reason: String| {
            Reject::new(line_no, column.map(str::to_string), reason, &line_buf)
        };
        let object = match serde_json::from_slice::<Value>(trimmed) {
            Ok(Value::Object(map)) => map,
            Ok(other) => {
                let kind = json_kind(&other);
                batcher.reject(reject(
                    None,
                    format!("expected a JSON object, found {kind}"),
                ))?;
                continue;
            }
            Err(e) => {
                batcher.reject(reject(None, format!("invalid JSON: {e}")))?;
                continue;
            }
        };
        flat.clear();
        if let Err(problem) =
            flatten("", object, &bounds, &mut flat).and_then(|()| check_unique(&flat))
        {
            let column = match &problem {
                FlattenProblem::Duplicate(name) => Some(name.as_str()),
                _ => None,
            };
            batcher.reject(reject(column, problem.to_string()))?;
            continue;
        }
        if let Some((column, reason)) = check_nul(&flat, &checks) {
            batcher.reject(reject(column, reason))?;
            continue;
        }
        let ts = flat
            .iter()
            .find(|(k, _)| k == TS_COLUMN)
            .and_then(|(_, v)| v.as_deref());
        let ts = match checks.ts(ts) {
            Ok(ts) => ts,
            Err((column, reason)) => {
                batcher.reject(reject(column, reason))?;
                continue;
            }
        };
        let name = flat
            .iter()
            .find(|(k, _)| k == EVENT_NAME_COLUMN)
            .and_then(|(_, v)| v.as_deref())
            .filter(|n| !n.is_empty())
            .or(header_name.as_deref());
        let event_name = match checks.event_name(name) {
            Ok(n) => n.to_string(),
            Err((column, reason)) => {
                batcher.reject(reject(column, reason))?;
                continue;
            }
        };
        if columns.grow(&flat, opts.max_columns) {
            batcher.flush(Some(columns.new_batch()))?;
        } else if columns.len() + flat.len() > opts.max_columns {
            batcher.reject(reject(
                None,
                format!(
                    "new keys would take the table past the warehouse's {} columns",
                    opts.max_columns
                ),
            ))?;
            continue;
        }
        values.clear();
        values.resize(columns.len(), None);
        for (key, value) in flat.drain(..) {
            let i = columns.index[&key];
            values[i] = value;
        }
        values[columns.ts] = None;
        values[columns.event_name] = Some(event_name);
        let batch = &mut batcher.batch;
        batch.start_row(line_no, ts);
        for v in &values {
            batch.push_field(v.as_deref());
        }
        batcher.row_done()?;
    }
    batcher.finish(decoded)
}

/// The event name on a JSON export's first line, if that line is one. One CleverTap docs page says
/// "The first line of the file contains the event name. After the first line, each line in JSON
/// describes the timestamp, object id, and event properties" (`../shared/reference/clevertap.md`),
/// while the others show objects from the first line: both are accepted. A name is a bare line
/// (`Charged`) or a JSON string (`"Charged"`) of printable text, at most `max_bytes` long; anything
/// else on the first line is parsed as a record (and rejected as one if it is not an object). The
/// name fills `eventName` for records without one: it is the event's real name, where the object
/// name's copy is lossy (spaces and slashes become `-`).
fn first_line_name(line: &[u8], max_bytes: usize) -> Option<String> {
    let text = std::str::from_utf8(line).ok()?;
    let name = match text.as_bytes().first()? {
        b'{' | b'[' => return None,
        b'"' => match serde_json::from_str::<Value>(text).ok()? {
            Value::String(name) => name,
            _ => return None,
        },
        _ => text.to_string(),
    };
    let printable = !name.is_empty()
        && name.len() <= max_bytes
        && name.trim() == name
        && !name.chars().any(char::is_control);
    printable.then_some(name)
}

fn check_nul(
    flat: &[(String, Option<String>)],
    checks: &RowChecks<'_>,
) -> Option<(Option<&'static str>, String)> {
    flat.iter()
        .filter_map(|(_, v)| v.as_deref())
        .find_map(|v| checks.no_nul(v).err())
}

/// The growing column set of one JSON file.
struct Columns {
    names: Vec<String>,
    index: HashMap<String, usize>,
    ts: usize,
    event_name: usize,
}

impl Columns {
    fn new() -> Self {
        let names = vec![TS_COLUMN.to_string(), EVENT_NAME_COLUMN.to_string()];
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        Self {
            names,
            index,
            ts: 0,
            event_name: 1,
        }
    }

    fn len(&self) -> usize {
        self.names.len()
    }

    /// Adds unseen keys; true when the schema changed. Refuses (false, nothing added) when the
    /// new keys would pass `max_columns`.
    fn grow(&mut self, flat: &[(String, Option<String>)], max_columns: usize) -> bool {
        let new: Vec<&String> = flat
            .iter()
            .map(|(k, _)| k)
            .filter(|k| !self.index.contains_key(*k))
            .collect();
        if new.is_empty() || self.names.len() + new.len() > max_columns {
            return false;
        }
        for key in new {
            self.index.insert(key.clone(), self.names.len());
            self.names.push(key.clone());
        }
        true
    }

    fn new_batch(&self) -> RowBatch {
        RowBatch::new(Arc::new(Schema::new(self.names.clone())), self.event_name)
    }
}

/// One JSON record's fields by the rule below, as `(dotted name, text)` in record order.
/// Unbounded: for records already held whole (API pages), not for export lines.
pub fn flatten_record(object: Map<String, Value>) -> Vec<(String, Option<String>)> {
    let unbounded = FlattenBounds {
        max_name_bytes: usize::MAX,
        max_keys: usize::MAX,
    };
    let mut out = Vec::new();
    // Without bounds nothing can fail.
    let _ = flatten("", object, &unbounded, &mut out);
    out
}

/// How far one record may flatten: names are built only while both bounds hold, so a short
/// line cannot make the loader build gigabytes of dotted names.
struct FlattenBounds {
    max_name_bytes: usize,
    max_keys: usize,
}

/// Why a record's keys cannot become columns; the row is rejected with this reason.
#[derive(Debug, thiserror::Error)]
enum FlattenProblem {
    #[error(
        "a key flattens to a {bytes}-byte name, above the {limit}-byte limit for a column name: {preview:?}"
    )]
    NameTooLong {
        bytes: usize,
        limit: usize,
        preview: String,
    },
    #[error("more than {limit} keys: the warehouse allows {limit} columns in one table")]
    TooManyKeys { limit: usize },
    #[error("the name {0:?} appears twice in the record once nested keys are flattened")]
    Duplicate(String),
}

/// Nested objects become dotted names; arrays stay JSON text (CSV exports write multi-values
/// as text too); `null` is NULL.
fn flatten(
    prefix: &str,
    object: Map<String, Value>,
    bounds: &FlattenBounds,
    out: &mut Vec<(String, Option<String>)>,
) -> Result<(), FlattenProblem> {
    for (key, value) in object {
        let bytes = if prefix.is_empty() {
            key.len()
        } else {
            prefix.len() + 1 + key.len()
        };
        if bytes > bounds.max_name_bytes {
            let shown = if prefix.is_empty() {
                key
            } else {
                format!("{prefix}.{key}")
            };
            return Err(FlattenProblem::NameTooLong {
                bytes,
                limit: bounds.max_name_bytes,
                preview: name_preview(&shown),
            });
        }
        let name = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) if !inner.is_empty() => flatten(&name, inner, bounds, out)?,
            Value::Object(_) | Value::Null => out.push((name, None)),
            Value::String(s) => out.push((name, Some(s))),
            Value::Bool(b) => out.push((name, Some(b.to_string()))),
            Value::Number(n) => out.push((name, Some(n.to_string()))),
            array @ Value::Array(_) => out.push((name, Some(array.to_string()))),
        }
        if out.len() > bounds.max_keys {
            return Err(FlattenProblem::TooManyKeys {
                limit: bounds.max_keys,
            });
        }
    }
    Ok(())
}

/// `{"a.b":1,"a":{"b":2}}` flattens to `a.b` twice: one row cannot fill one column twice.
fn check_unique(flat: &[(String, Option<String>)]) -> Result<(), FlattenProblem> {
    let mut seen = HashSet::with_capacity(flat.len());
    match flat.iter().find(|(name, _)| !seen.insert(name.as_str())) {
        Some((name, _)) => Err(FlattenProblem::Duplicate(name.clone())),
        None => Ok(()),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `read_until(b'\n')` that refuses lines longer than `limit` instead of growing without bound.
fn read_line_limited<R: BufRead>(r: &mut R, out: &mut Vec<u8>, limit: usize) -> io::Result<usize> {
    let mut read = 0;
    loop {
        let (done, used) = {
            let available = match r.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok(read);
            }
            match available.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    out.extend_from_slice(&available[..=i]);
                    (true, i + 1)
                }
                None => {
                    out.extend_from_slice(available);
                    (false, available.len())
                }
            }
        };
        r.consume(used);
        read += used;
        if out.len() > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                RecordTooLargeError,
            ));
        }
        if done {
            return Ok(read);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::object_name::{DataFormat, ExportKind};
    use crate::export::parse::{FileProblem, parse_export};
    use crate::time::TsParser;
    use jiff::tz::TimeZone;

    type Batches = Vec<(Vec<String>, Vec<Vec<Option<String>>>)>;

    fn parse(bytes: &[u8], fallback: Option<&str>) -> (Batches, Vec<Reject>) {
        let opts = ParseOptions {
            kind: ExportKind::Events,
            ts: TsParser::new(&TimeZone::UTC, None),
            event_name_fallback: fallback.map(str::to_string),
            max_columns: 2000,
            batch_rows: 100,
            max_record_bytes: 1 << 20,
            limits: Default::default(),
        };
        let mut out = Vec::new();
        let mut rejects = Vec::new();
        parse_export(
            io::Cursor::new(bytes.to_vec()),
            DataFormat::Json,
            &opts,
            &mut |b: RowBatch| {
                let cols = b.schema().columns().to_vec();
                let rows = b
                    .rows()
                    .map(|r| {
                        (0..cols.len())
                            .map(|i| r.text(i, &mut [0; 20]).map(str::to_string))
                            .collect()
                    })
                    .collect();
                rejects.extend(b.rejects);
                out.push((cols, rows));
                true
            },
        )
        .unwrap();
        (out, rejects)
    }

    #[test]
    fn a_bare_event_name_on_the_first_line_names_the_records_and_is_no_row() {
        let rec = br#"{"ts":20171109000015,"eventProps":{"Amount":5}}"#;
        let named = br#"{"ts":20171109000016,"eventName":"Own Name"}"#;
        for first in [&b"Order Placed/Web"[..], br#""Order Placed/Web""#] {
            let file = [first, b"\n", rec, b"\n", named, b"\n"].concat();
            let (batches, rejects) = parse(&file, Some("Order-Placed-Web"));
            assert!(rejects.is_empty(), "{rejects:?}");
            let names: Vec<_> = batches
                .iter()
                .flat_map(|(cols, rows)| {
                    let i = cols.iter().position(|c| c == "eventName").unwrap();
                    rows.iter().map(move |r| r[i].clone())
                })
                .collect();
            // The header's real name beats the object name's lossy copy; a record's own wins.
            assert_eq!(
                names,
                [Some("Order Placed/Web".into()), Some("Own Name".into())]
            );
        }
    }

    #[test]
    fn text_lines_other_than_a_first_line_name_are_rejected() {
        let rec = br#"{"ts":20171109000015}"#;
        // A name past the first line, a first line with a control character, a first-line array.
        for (file, line) in [
            ([&rec[..], b"\nCharged\n"].concat(), 2),
            ([&b"Char\x07ged\n"[..], rec].concat(), 1),
            ([&b"[1,2]\n"[..], rec].concat(), 1),
        ] {
            let (batches, rejects) = parse(&file, Some("Charged"));
            let rows: usize = batches.iter().map(|(_, r)| r.len()).sum();
            assert_eq!(rows, 1, "{file:?}");
            assert_eq!(rejects.len(), 1, "{file:?}");
            assert_eq!(rejects[0].line, line, "{file:?}");
        }
    }

    #[test]
    fn nested_objects_become_dotted_columns() {
        let (batches, rejects) = parse(
            br#"{"profile":{"identity":"dqsndckfk234","all_identities":["a","b"]},"ts":20171109000015,"eventProps":{"ct_sdk_version":30107,"ok":true,"none":null}}"#,
            Some("App-Launched"),
        );
        assert!(rejects.is_empty());
        let (cols, rows) = &batches[0];
        let row: HashMap<_, _> = cols.iter().cloned().zip(rows[0].clone()).collect();
        assert_eq!(row["ts"].as_deref(), Some("2017-11-09T00:00:15Z"));
        assert_eq!(row["eventName"].as_deref(), Some("App-Launched"));
        assert_eq!(row["profile.identity"].as_deref(), Some("dqsndckfk234"));
        assert_eq!(
            row["profile.all_identities"].as_deref(),
            Some(r#"["a","b"]"#)
        );
        assert_eq!(row["eventProps.ct_sdk_version"].as_deref(), Some("30107"));
        assert_eq!(row["eventProps.ok"].as_deref(), Some("true"));
        assert_eq!(row["eventProps.none"], None);
    }

    #[test]
    fn new_keys_start_a_new_schema_and_old_rows_keep_theirs() {
        let (batches, _) = parse(
            b"{\"ts\":20220921000000,\"eventName\":\"A\",\"x\":1}\n\n{\"ts\":20220921000001,\"eventName\":\"A\",\"y\":2}\r\n",
            None,
        );
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].0, vec!["ts", "eventName", "x"]);
        assert_eq!(batches[1].0, vec!["ts", "eventName", "x", "y"]);
        assert_eq!(
            batches[1].1[0],
            vec![
                Some("2022-09-21T00:00:01Z".into()),
                Some("A".into()),
                None,
                Some("2".into())
            ]
        );
    }

    #[test]
    fn bad_lines_are_rejected_with_line_numbers() {
        let (_, rejects) = parse(
            b"{\"ts\":20220921000000}\n[1]\n{oops\n{\"eventName\":\"A\"}\n{\"ts\":\"x\",\"eventName\":\"A\"}\n",
            None,
        );
        let got: Vec<_> = rejects
            .iter()
            .map(|r| (r.line, r.reason.as_str()))
            .collect();
        assert_eq!(
            got[0],
            (1, "eventName is empty and the file name carries none")
        );
        assert_eq!(got[1], (2, "expected a JSON object, found an array"));
        assert_eq!(got[2].0, 3);
        assert!(got[2].1.starts_with("invalid JSON: "), "{}", got[2].1);
        assert_eq!(got[3], (4, "ts is empty"));
        assert_eq!(
            got[4],
            (5, "ts \"x\" is neither yyyyMMddHHmmss nor epoch seconds")
        );
    }

    #[test]
    fn an_overlong_line_is_a_file_problem() {
        let opts = ParseOptions {
            kind: ExportKind::Events,
            ts: TsParser::new(&TimeZone::UTC, None),
            event_name_fallback: None,
            max_columns: 10,
            batch_rows: 100,
            max_record_bytes: 1000,
            limits: Default::default(),
        };
        let line = format!("{{\"ts\":1,\"a\":\"{}\"}}\n", "x".repeat(5000));
        let err = parse_export(
            io::Cursor::new(line.into_bytes()),
            DataFormat::Json,
            &opts,
            &mut |_| true,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            ParseError::Problem(FileProblem::RecordTooLarge {
                line: 1,
                limit: 1000
            })
        ));
    }

    #[test]
    fn the_same_flattened_name_twice_rejects_the_row_alone() {
        let (batches, rejects) = parse(
            b"{\"ts\":20220921000000,\"eventName\":\"A\",\"a.b\":1,\"a\":{\"b\":2}}\n{\"ts\":20220921000001,\"eventName\":\"A\",\"a\":{\"b\":3}}\n",
            None,
        );
        let got: Vec<_> = rejects
            .iter()
            .map(|r| (r.line, r.column.as_deref(), r.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![(
                1,
                Some("a.b"),
                "the name \"a.b\" appears twice in the record once nested keys are flattened"
            )]
        );
        let rows: Vec<_> = batches.iter().flat_map(|(_, rows)| rows).collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(batches.last().unwrap().0, vec!["ts", "eventName", "a.b"]);
    }

    #[test]
    fn a_long_key_wrapping_many_leaves_is_rejected_before_names_are_built() {
        let leaves: Vec<String> = (0..1500).map(|i| format!("\"k{i}\":{i}")).collect();
        let line = format!(
            "{{\"ts\":20220921000000,\"eventName\":\"A\",\"{}\":{{{}}}}}\n",
            "L".repeat(100_000),
            leaves.join(",")
        );
        let (batches, rejects) = parse(line.as_bytes(), None);
        assert!(batches.iter().all(|(_, rows)| rows.is_empty()));
        assert_eq!(rejects.len(), 1);
        assert_eq!(rejects[0].column, None);
        assert_eq!(
            rejects[0].reason,
            format!(
                "a key flattens to a 100000-byte name, above the 1024-byte limit for a column name: \"{}…\"",
                "L".repeat(40)
            )
        );
    }

    #[test]
    fn flattening_stops_past_the_column_limit() {
        let keys: Vec<String> = (0..3000).map(|i| format!("\"k{i}\":{i}")).collect();
        let line = format!(
            "{{\"ts\":20220921000000,\"eventName\":\"A\",\"p\":{{{}}}}}\n",
            keys.join(",")
        );
        let (_, rejects) = parse(line.as_bytes(), None);
        assert_eq!(
            rejects[0].reason,
            "more than 2000 keys: the warehouse allows 2000 columns in one table"
        );
    }
}
