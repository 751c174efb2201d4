//! Legacy JSON exports and API pages: one object per record, nested objects flattened to the
//! dotted names the CSV header uses (`profile.identity`, `eventProps.Amount`), so both formats
//! fill the same columns. Lines of text and records already held as values go through one
//! per-record body (`JsonRecords::record`), for event rows or profile snapshot rows
//! (`ParseOptions::kind`; see `profile_rows`); a line is flattened as it is read
//! (`json_line_flatten`); a line that is no object within the flatten bounds goes through a
//! `Value`, whose reject is the reference.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::batcher::{BatchSink, Batcher, ParseSummary};
use super::decode::DecompressionLimit;
use super::json_line_flatten::{Field, FlattenBounds, LineFlattener};
use super::json_value_text::{json_line_bytes, json_text_start};
use super::limits::name_preview;
use super::object_name::ExportKind;
use super::parse_error::{FileProblem, ParseError, RecordTooLargeError, io_to_parse_error};
use super::parse_options::ParseOptions;
use super::profile_rows::{
    CLEVERTAP_ID_COLUMN, IDENTITY_COLUMN, SNAPSHOT_COLUMNS, list_property_text, profile_hash,
    property_column, snapshot_key,
};
use super::row_checks::{CheckFailure, RowChecks};
use super::rows::{Reject, RowBatch, Schema};
use super::{EVENT_NAME_COLUMN, TS_COLUMN};

/// Parses a decoded JSON-lines export. Columns appear as keys are first seen; a row without a
/// key has NULL there.
pub(crate) fn parse_json_lines(
    input: Box<dyn Read + Send>,
    opts: &ParseOptions,
    sink: &mut BatchSink<'_>,
) -> Result<ParseSummary, ParseError> {
    parse_json_lines_by(input, opts, sink, LineFlatten::Streaming)
}

/// How [`parse_json_lines_by`] turns a line into fields; both give the same rows and rejects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFlatten {
    /// Flattened as it is read ([`LineFlattener`]); a line that is rejected goes through a
    /// `Value`, whose reject reasons are the reference.
    Streaming,
    /// Every line parsed into a `serde_json::Value`, then flattened: the parser before
    /// issue 21, kept as the reference the streaming one is tested against.
    ThroughValue,
}

/// [`parse_json_lines`] with the line flattening chosen (`how`), for the differential tests.
pub(crate) fn parse_json_lines_by(
    input: Box<dyn Read + Send>,
    opts: &ParseOptions,
    sink: &mut BatchSink<'_>,
    how: LineFlatten,
) -> Result<ParseSummary, ParseError> {
    let mut reader = BufReader::with_capacity(64 * 1024, input);
    let mut records = JsonRecords::new(opts, sink);
    let mut flattener = LineFlattener::default();
    let mut line_buf = Vec::new();
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
        // Profile files have no event name line: their first line is a record.
        if std::mem::take(&mut first_record)
            && opts.kind == ExportKind::Events
            && let Some(name) = first_line_name(trimmed, opts.limits.max_column_name_bytes)
        {
            header_name = Some(name);
            continue;
        }
        let raw = RawRecord::Line(&line_buf);
        if how == LineFlatten::Streaming && flattener.flatten_line(trimmed, &records.bounds).is_ok()
        {
            records.streamed(line_no, &flattener, raw, header_name.as_deref())?;
            continue;
        }
        match serde_json::from_slice::<Value>(trimmed) {
            Ok(value) => records.record(line_no, &value, raw, header_name.as_deref())?,
            Err(e) => reject(
                &mut records.batcher,
                line_no,
                None,
                format!("invalid JSON: {e}"),
                raw,
            )?,
        }
    }
    records.finish(decoded)
}

/// Parses records already held as JSON values (an API page) exactly as [`parse_json_lines`]
/// parses the same records written one per line with `serde_json::to_writer`, without writing
/// them: record `n` (from 1) is line `n`, its size is its line's size (counted, not written;
/// [`json_line_bytes`]) and is held to `max_record_bytes` with its newline, the page to
/// `limits.max_decompressed_bytes`, and only a rejected record is written, as far as its
/// reject keeps. There is no first-line event name: a first record that is not an object is
/// rejected like any other. No records is a summary of nothing, not an empty file.
pub(crate) fn parse_json_values<'r>(
    values: impl IntoIterator<Item = &'r Value>,
    opts: &ParseOptions,
    sink: &mut BatchSink<'_>,
) -> Result<ParseSummary, ParseError> {
    let mut records = JsonRecords::new(opts, sink);
    let page_limit = opts.limits.max_decompressed_bytes;
    let mut decoded = 0u64;
    for (value, line) in values.into_iter().zip(1u64..) {
        let bytes = json_line_bytes(value);
        decoded += bytes;
        if page_limit > 0 && decoded > page_limit {
            return Err(FileProblem::Decompression(DecompressionLimit::Bytes {
                limit: page_limit,
            })
            .into());
        }
        if bytes > opts.max_record_bytes as u64 {
            return Err(FileProblem::RecordTooLarge {
                line,
                limit: opts.max_record_bytes,
            }
            .into());
        }
        records.record(line, value, RawRecord::Value(value), None)?;
    }
    records.finish(decoded)
}

/// Where a record came from, for the raw text its reject keeps.
#[derive(Clone, Copy)]
pub(crate) enum RawRecord<'a> {
    /// The line as read from the export.
    Line(&'a [u8]),
    /// A record handed over as a value: written out only if it is rejected.
    Value(&'a Value),
}

/// Hands the record at `line` to the rejects with its raw text.
pub(crate) fn reject(
    batcher: &mut Batcher<'_, '_>,
    line: u64,
    column: Option<&str>,
    reason: String,
    raw: RawRecord<'_>,
) -> Result<(), ParseError> {
    let column = column.map(str::to_string);
    let reject = match raw {
        RawRecord::Line(bytes) => Reject::new(line, column, reason, bytes),
        RawRecord::Value(value) => Reject::new(line, column, reason, &json_text_start(value)),
    };
    batcher.reject(reject)
}

/// One JSON parse in progress, fed a record at a time by both entries: the one copy of
/// flattening, the name rules, the row checks, the column limit and reject handling.
pub(crate) struct JsonRecords<'p, 's, 'o> {
    opts: &'p ParseOptions,
    checks: RowChecks<'p>,
    bounds: FlattenBounds,
    columns: Columns,
    pub(crate) batcher: Batcher<'s, 'o>,
    /// Per column of the row being built, the position of its field in the flattened record.
    slots: Vec<Option<usize>>,
    /// The allocation of a streamed line's fields, kept empty between lines.
    spare_fields: Vec<Field<'static>>,
}

impl<'p, 's, 'o> JsonRecords<'p, 's, 'o> {
    pub(crate) fn new(opts: &'p ParseOptions, sink: &'s mut BatchSink<'o>) -> Self {
        let columns = Columns::new(opts.kind);
        let batcher = Batcher::new(columns.new_batch(), sink, opts.batch_rows);
        Self {
            opts,
            checks: RowChecks::new(opts),
            bounds: FlattenBounds {
                max_name_bytes: opts.limits.max_column_name_bytes,
                max_keys: opts.max_columns,
            },
            columns,
            batcher,
            slots: Vec::new(),
            spare_fields: Vec::new(),
        }
    }

    /// Turns the record at `line` into a row, or into a reject carrying `raw`. `header_name`
    /// names the event of a record without its own name, before the file name's copy does.
    pub(crate) fn record(
        &mut self,
        line: u64,
        value: &Value,
        raw: RawRecord<'_>,
        header_name: Option<&str>,
    ) -> Result<(), ParseError> {
        let object = match value {
            Value::Object(map) => map,
            other => {
                let kind = json_kind(other);
                let reason = format!("expected a JSON object, found {kind}");
                return reject(&mut self.batcher, line, None, reason, raw);
            }
        };
        let mut flat = Vec::new();
        if let Err(problem) = flatten("", object, &self.bounds, &mut flat) {
            return reject(&mut self.batcher, line, None, problem.to_string(), raw);
        }
        self.flattened(line, &mut flat, true, raw, header_name, || {
            value.to_string()
        })
    }

    /// [`record`](Self::record) for a line the [`LineFlattener`] flattened within the bounds.
    fn streamed(
        &mut self,
        line: u64,
        flattener: &LineFlattener,
        raw: RawRecord<'_>,
        header_name: Option<&str>,
    ) -> Result<(), ParseError> {
        let mut flat = reuse_fields(&mut self.spare_fields);
        flat.extend(flattener.fields());
        let repeats = flattener.may_repeat_names();
        let done = self.flattened(line, &mut flat, repeats, raw, header_name, || {
            flattener.record_text()
        });
        self.spare_fields = reuse_fields(&mut flat);
        done
    }

    /// The rest of a record once flattened within the bounds: unique names (checked when
    /// `may_repeat`), the row checks, the columns and the row. `record_text` is the record's
    /// compact JSON, for a profile row.
    fn flattened(
        &mut self,
        line: u64,
        flat: &mut [Field<'_>],
        may_repeat: bool,
        raw: RawRecord<'_>,
        header_name: Option<&str>,
        record_text: impl FnOnce() -> String,
    ) -> Result<(), ParseError> {
        let Self {
            opts,
            checks,
            columns,
            batcher,
            slots,
            ..
        } = self;
        if may_repeat && let Err(FlattenProblem::Duplicate(name)) = check_unique(flat) {
            let reason = FlattenProblem::Duplicate(name.clone()).to_string();
            return reject(batcher, line, Some(&name), reason, raw);
        }
        if let Some((column, reason)) = check_nul(flat, checks) {
            return reject(batcher, line, column, reason, raw);
        }
        let head = match opts.kind {
            ExportKind::Events => event_head(flat, checks, header_name),
            ExportKind::Profiles => profile_head(flat, checks, record_text),
        };
        let (ts, head) = match head {
            Ok(head) => head,
            Err((column, reason)) => return reject(batcher, line, column, reason, raw),
        };
        // A renamed profile property (`ts` → `ts (property)`) may meet a key of that name.
        if opts.kind == ExportKind::Profiles
            && let Err(FlattenProblem::Duplicate(name)) = check_unique(flat)
        {
            let reason = FlattenProblem::Duplicate(name.clone()).to_string();
            return reject(batcher, line, Some(&name), reason, raw);
        }
        // One lookup per field when every key is a column already (nearly every row).
        if !columns.fill_slots(flat, slots) {
            match columns.grow(flat, opts.max_columns) {
                Growth::Known => {}
                Growth::Grew => batcher.flush(Some(columns.new_batch()))?,
                Growth::PastLimit => {
                    let reason = format!(
                        "new keys would take the table past the warehouse's {} columns",
                        opts.max_columns
                    );
                    return reject(batcher, line, None, reason, raw);
                }
            }
            columns.fill_slots(flat, slots);
        }
        let batch = &mut batcher.batch;
        batch.start_row(line, ts);
        for (column, slot) in slots.iter().enumerate() {
            let value = if column == columns.ts {
                // `ts` travels as the integer given to `start_row`.
                None
            } else if let Some(fixed) = head.value(column) {
                Some(fixed)
            } else {
                slot.and_then(|i| flat[i].1.as_deref())
            };
            batch.push_field(value);
        }
        batcher.row_done()
    }

    /// Hands over the last batch; `decoded` is the text's size.
    pub(crate) fn finish(self, decoded: u64) -> Result<ParseSummary, ParseError> {
        self.batcher.finish(decoded)
    }
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

/// The values a row takes from its checks rather than from its fields.
enum RowHead<'v> {
    /// An event row: its resolved event name, in [`EVENT_NAME_SLOT`].
    Event(&'v str),
    /// A profile snapshot row: its key, hash and record text, in the first snapshot columns.
    Profile {
        key: String,
        hash: String,
        record: String,
    },
}

/// Where `eventName` sits in an event file's columns (after `ts`).
const EVENT_NAME_SLOT: usize = 1;

impl RowHead<'_> {
    /// The value this head gives column `column`, if it gives one.
    fn value(&self, column: usize) -> Option<&str> {
        match self {
            RowHead::Event(name) => (column == EVENT_NAME_SLOT).then_some(*name),
            RowHead::Profile { key, hash, record } => match column {
                0 => Some(key),
                2 => Some(hash),
                3 => Some(record),
                _ => None,
            },
        }
    }
}

/// An event record's `ts` and event name (its own, else the header's, else the file name's).
fn event_head<'v, 'p: 'v>(
    flat: &'v [Field<'_>],
    checks: &'v RowChecks<'p>,
    header_name: Option<&'v str>,
) -> Result<(i64, RowHead<'v>), CheckFailure> {
    let ts = checks.ts(field(flat, TS_COLUMN))?;
    let name = field(flat, EVENT_NAME_COLUMN)
        .filter(|n| !n.is_empty())
        .or(header_name);
    Ok((ts, RowHead::Event(checks.event_name(name)?)))
}

/// A profile record's snapshot `ts`, key, hash and record text; its list properties take
/// their one stored form and reserved names are renamed (see [`super::profile_rows`]).
fn profile_head(
    flat: &mut [Field<'_>],
    checks: &RowChecks<'_>,
    record_text: impl FnOnce() -> String,
) -> Result<(i64, RowHead<'static>), CheckFailure> {
    let ts = checks.snapshot_ts()?;
    let key = snapshot_key(
        field(flat, IDENTITY_COLUMN),
        field(flat, CLEVERTAP_ID_COLUMN),
    )?
    .to_string();
    for (name, text) in flat.iter_mut() {
        if let Some(list) = text.as_deref().and_then(|t| list_property_text(name, t)) {
            *text = Some(Cow::Owned(list));
        }
    }
    let hash = profile_hash(
        flat.iter()
            .filter_map(|(name, text)| Some((name.as_ref(), text.as_deref()?))),
    );
    for (name, _) in flat.iter_mut() {
        if let Cow::Owned(renamed) = property_column(name) {
            *name = Cow::Owned(renamed);
        }
    }
    let head = RowHead::Profile {
        key,
        hash,
        record: record_text(),
    };
    Ok((ts, head))
}

/// `fields` emptied, as a vector of fields of any lifetime in the same allocation (collecting
/// a vector's own items in place keeps its buffer): a streamed line's fields cost no allocation.
fn reuse_fields<'to>(fields: &mut Vec<Field<'_>>) -> Vec<Field<'to>> {
    fields.clear();
    std::mem::take(fields)
        .into_iter()
        .map(|_| -> Field<'to> { unreachable!("the vector is empty") })
        .collect()
}

/// The text of the field named `name`.
fn field<'f>(flat: &'f [Field<'_>], name: &str) -> Option<&'f str> {
    flat.iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
}

fn check_nul(flat: &[Field<'_>], checks: &RowChecks<'_>) -> Option<(Option<&'static str>, String)> {
    flat.iter()
        .filter_map(|(_, v)| v.as_deref())
        .find_map(|v| checks.no_nul(v).err())
}

/// Hashes column names: foldhash's seeded hasher, several times faster than the default
/// SipHash on short names and still keyed per process, so names chosen in a hostile file cannot
/// be made to collide (and the names are at most `max_columns`, at most 1,024 bytes each).
type NameHasher = foldhash::fast::RandomState;

/// The growing column set of one JSON file.
struct Columns {
    names: Vec<String>,
    index: HashMap<String, usize, NameHasher>,
    ts: usize,
    /// Events or profile snapshots: which leading columns, and which batches.
    kind: ExportKind,
}

impl Columns {
    /// The leading columns of `kind`: `ts`, `eventName` for events ([`EVENT_NAME_SLOT`]),
    /// [`SNAPSHOT_COLUMNS`] for profiles.
    fn new(kind: ExportKind) -> Self {
        let names: Vec<String> = match kind {
            ExportKind::Events => vec![TS_COLUMN.to_string(), EVENT_NAME_COLUMN.to_string()],
            ExportKind::Profiles => SNAPSHOT_COLUMNS.iter().map(|c| c.to_string()).collect(),
        };
        let index: HashMap<String, usize, NameHasher> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        Self {
            ts: index[TS_COLUMN],
            names,
            index,
            kind,
        }
    }

    /// Sets `slots` (one per column) to the position in `flat` of each column's field; `false`
    /// if a field is no column yet (then `slots` is to be filled again once they grew).
    fn fill_slots(&self, flat: &[Field<'_>], slots: &mut Vec<Option<usize>>) -> bool {
        slots.clear();
        slots.resize(self.names.len(), None);
        for (i, (key, _)) in flat.iter().enumerate() {
            match self.index.get(key.as_ref()) {
                Some(&column) => slots[column] = Some(i),
                None => return false,
            }
        }
        true
    }

    /// Adds a record's unseen keys, unless they would take the columns past `max_columns`
    /// (then nothing is added). A record whose keys are all known always fits.
    fn grow(&mut self, flat: &[Field<'_>], max_columns: usize) -> Growth {
        let new: Vec<&str> = flat
            .iter()
            .map(|(k, _)| k.as_ref())
            .filter(|k| !self.index.contains_key(*k))
            .collect();
        if new.is_empty() {
            return Growth::Known;
        }
        if self.names.len() + new.len() > max_columns {
            return Growth::PastLimit;
        }
        for key in new {
            self.index.insert(key.to_string(), self.names.len());
            self.names.push(key.to_string());
        }
        Growth::Grew
    }

    fn new_batch(&self) -> RowBatch {
        let schema = Arc::new(Schema::new(self.names.clone()));
        match self.kind {
            ExportKind::Events => RowBatch::new(schema, EVENT_NAME_SLOT),
            ExportKind::Profiles => RowBatch::for_profiles(schema),
        }
    }
}

/// What a record's keys did to the columns.
enum Growth {
    /// Every key was a column already.
    Known,
    /// New keys became columns: the batch's schema changed.
    Grew,
    /// The new keys would take the columns past the limit: the record is refused.
    PastLimit,
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
    let _ = flatten("", &object, &unbounded, &mut out);
    out.into_iter()
        .map(|(name, text)| (name.into_owned(), text.map(Cow::into_owned)))
        .collect()
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
/// as text too); `null` is NULL. Top-level names and string values are borrowed from the
/// record: the row copies them once, into its batch.
fn flatten<'v>(
    prefix: &str,
    object: &'v Map<String, Value>,
    bounds: &FlattenBounds,
    out: &mut Vec<Field<'v>>,
) -> Result<(), FlattenProblem> {
    for (key, value) in object {
        let bytes = if prefix.is_empty() {
            key.len()
        } else {
            prefix.len() + 1 + key.len()
        };
        if bytes > bounds.max_name_bytes {
            let shown = if prefix.is_empty() {
                Cow::Borrowed(key.as_str())
            } else {
                Cow::Owned(format!("{prefix}.{key}"))
            };
            return Err(FlattenProblem::NameTooLong {
                bytes,
                limit: bounds.max_name_bytes,
                preview: name_preview(&shown),
            });
        }
        let name = if prefix.is_empty() {
            Cow::Borrowed(key.as_str())
        } else {
            Cow::Owned(format!("{prefix}.{key}"))
        };
        match value {
            Value::Object(inner) if !inner.is_empty() => flatten(&name, inner, bounds, out)?,
            Value::Object(_) | Value::Null => out.push((name, None)),
            Value::String(s) => out.push((name, Some(Cow::Borrowed(s.as_str())))),
            Value::Bool(b) => {
                out.push((name, Some(Cow::Borrowed(if *b { "true" } else { "false" }))))
            }
            Value::Number(n) => out.push((name, Some(Cow::Owned(n.to_string())))),
            array @ Value::Array(_) => out.push((name, Some(Cow::Owned(array.to_string())))),
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
fn check_unique(flat: &[Field<'_>]) -> Result<(), FlattenProblem> {
    let mut seen = HashSet::with_capacity_and_hasher(flat.len(), NameHasher::default());
    match flat.iter().find(|(name, _)| !seen.insert(name.as_ref())) {
        Some((name, _)) => Err(FlattenProblem::Duplicate(name.to_string())),
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
pub(crate) mod tests {
    use super::*;
    use crate::export::object_name::{DataFormat, ExportKind};
    use crate::export::parse::{FileProblem, parse_export};
    use crate::export::rows::MAX_RAW_LINE_BYTES;
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
            snapshot_micros: None,
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
            snapshot_micros: None,
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

    #[test]
    fn records_of_known_keys_load_at_the_column_limit() {
        use serde_json::json;
        // ts, eventName, a, b, c, d: six columns, the limit.
        let full = |n: u64| {
            json!({"ts": 20220921000000u64 + n, "eventName": "A",
            "a": n, "b": n, "c": n, "d": n})
        };
        let records = vec![
            full(1),
            full(2),
            json!({"ts": 20220921000003u64, "eventName": "A", "a": 3, "e": 3}),
            full(4),
            json!({"ts": 20220921000005u64, "eventName": "A", "b": 5}),
        ];
        let opts = day_opts(None, 6, 100);
        for parsed in [text_run(&records, &opts), values_run(&records, &opts)] {
            let rows: Vec<u64> = parsed
                .batches
                .iter()
                .flat_map(|b| b.rows.iter().map(|r| r.0))
                .collect();
            assert_eq!(rows, vec![1, 2, 4, 5], "{parsed:?}");
            let rejects: Vec<(u64, &str)> = parsed
                .batches
                .iter()
                .flat_map(|b| b.rejects.iter().map(|r| (r.line, r.reason.as_str())))
                .collect();
            assert_eq!(
                rejects,
                vec![(
                    3,
                    "new keys would take the table past the warehouse's 6 columns"
                )]
            );
        }
    }

    /// What a parse handed over and how it ended, for comparing the text and values entries.
    #[derive(Debug, PartialEq)]
    pub(crate) struct Run {
        pub(crate) batches: Vec<HandedBatch>,
        end: Result<ParseSummary, String>,
    }

    #[derive(Debug, PartialEq)]
    pub(crate) struct HandedBatch {
        columns: Vec<String>,
        /// Each row's line, `ts` and fields.
        pub(crate) rows: Vec<(u64, i64, Vec<Option<String>>)>,
        pub(crate) rejects: Vec<Reject>,
    }

    pub(crate) fn run(
        parse: impl FnOnce(&mut BatchSink<'_>) -> Result<ParseSummary, ParseError>,
    ) -> Run {
        let mut batches = Vec::new();
        let end = parse(&mut |b: RowBatch| {
            let columns = b.schema().columns().to_vec();
            let rows = b
                .rows()
                .map(|r| {
                    let fields = (0..columns.len())
                        .map(|i| r.value(i).map(str::to_string))
                        .collect();
                    (r.line, r.ts_micros(), fields)
                })
                .collect();
            batches.push(HandedBatch {
                columns,
                rows,
                rejects: b.rejects,
            });
            true
        });
        Run {
            batches,
            end: end.map_err(|e| match e {
                ParseError::Problem(problem) => format!("{problem:?}"),
                other => format!("{other}"),
            }),
        }
    }

    /// The records as JSON lines, as the API puller wrote them before it handed over values.
    fn as_lines(records: &[Value]) -> Vec<u8> {
        let mut lines = Vec::new();
        for record in records {
            serde_json::to_writer(&mut lines, record).unwrap();
            lines.push(b'\n');
        }
        lines
    }

    fn text_run(records: &[Value], opts: &ParseOptions) -> Run {
        let lines = as_lines(records);
        run(|sink| parse_export(io::Cursor::new(lines), DataFormat::Json, opts, sink))
    }

    fn values_run(records: &[Value], opts: &ParseOptions) -> Run {
        run(|sink| crate::export::parse::parse_json_values(records, opts, sink))
    }

    fn day_opts(fallback: Option<&str>, max_columns: usize, batch_rows: usize) -> ParseOptions {
        ParseOptions {
            kind: ExportKind::Events,
            ts: TsParser::new(&TimeZone::UTC, Some(jiff::civil::date(2022, 9, 21))),
            event_name_fallback: fallback.map(str::to_string),
            max_columns,
            batch_rows,
            max_record_bytes: 64 * 1024,
            limits: Default::default(),
            snapshot_micros: None,
        }
    }

    /// Records that exercise every rule of the per-record body. The first is an object: a
    /// first line that is a bare value is an export's event name (see
    /// `a_scalar_first_record_is_rejected_not_taken_for_an_event_name`).
    fn tricky_records() -> Vec<Value> {
        use serde_json::json;
        let long_text = "é".repeat(3000);
        let many_keys: Map<String, Value> = (0..40).map(|i| (format!("k{i}"), json!(i))).collect();
        vec![
            json!({"ts": 20220921000000u64, "eventName": "Charged",
                "profile": {"identity": "a", "all_identities": ["a", "b"], "objectId": "x"},
                "eventProps": {"Amount": 5.25, "nested": {"deep": {"er": true}}, "empty": {},
                    "none": null, "list": [{"x": 1}, [], "ü"]}}),
            json!({"ts": 1663718401, "eventName": "Café ☕",
                "eventProps": {"名前": "値 \u{1F600}", "rtl": "שלום", "combining": "e\u{301}"}}),
            json!({"ts": "20220921000002", "eventName": "A", "key with space": 1,
                "dotted.key": {"x": 2}, "": "an empty key", "esc": "\n\t\"\\/\u{1}"}),
            json!({"ts": 20220921000003u64, "eventName": "A", "a.b": 1, "a": {"b": 2}}),
            json!({"ts": "yesterday", "eventName": "A"}),
            json!({"eventName": "A", "x": 1}),
            json!({"ts": 20200101000000u64, "eventName": "A"}),
            json!({"ts": 20220921000004u64, "eventName": "A", "x": "a\u{0}b"}),
            json!([1, 2]),
            json!("Charged"),
            json!(42),
            json!(null),
            json!(true),
            json!({}),
            json!({"ts": 20220921000005u64, "big": long_text}),
            json!({"ts": 20220921000006u64, "eventName": "A", "p": many_keys}),
            json!({"ts": 20220921000007u64, "eventName": "A", "L".repeat(2000): 1}),
            json!({"ts": 20220921000008u64, "eventName": 7, "n": {"max": u64::MAX,
                "min": i64::MIN, "e": 1e300, "neg0": -0.0, "small": -2.5e-8}}),
            json!({"ts": 20220921000009u64, "eventName": ""}),
            json!({"ts": 20220921000010u64, "eventName": "A", "y1": 1, "y2": 2, "y3": 3,
                "y4": 4, "y5": 5, "y6": 6, "y7": 7, "y8": 8, "y9": 9, "y10": 10}),
            json!({"ts": 20220921000011u64, "eventName": "A", "x": "after the wide one"}),
        ]
    }

    #[test]
    fn values_and_lines_give_the_same_rows_rejects_and_summary() {
        let records = tricky_records();
        for opts in [
            day_opts(None, 2000, 100),
            day_opts(Some("Fallback"), 2000, 3),
            // Past 30 columns the wide records are rejected for the table, not for the row.
            day_opts(Some("Fallback"), 30, 2),
        ] {
            let text = text_run(&records, &opts);
            let values = values_run(&records, &opts);
            assert_eq!(values, text, "max_columns {}", opts.max_columns);
            let summary = values.end.as_ref().unwrap();
            assert!(summary.rows >= 4 && summary.rejected >= 12, "{summary:?}");
            assert_eq!(summary.decoded_bytes, as_lines(&records).len() as u64);
        }
    }

    #[test]
    fn profile_values_and_lines_give_the_same_snapshot_rows_and_rejects() {
        // The tricky records as profiles: every other object keyed, so both the key rules and
        // the flattening rules meet them.
        let records: Vec<Value> = tricky_records()
            .into_iter()
            .enumerate()
            .map(|(i, mut record)| {
                if let Value::Object(map) = &mut record
                    && i % 2 == 0
                {
                    map.insert("identity".into(), Value::String(format!("u{i}")));
                }
                record
            })
            .collect();
        for max_columns in [2000, 30] {
            let mut opts = day_opts(None, max_columns, 3);
            opts.kind = ExportKind::Profiles;
            opts.snapshot_micros = Some(1_663_785_000_000_000);
            let text = text_run(&records, &opts);
            assert_eq!(
                values_run(&records, &opts),
                text,
                "max_columns {max_columns}"
            );
            let summary = text.end.as_ref().unwrap();
            assert!(summary.rows >= 5 && summary.rejected >= 8, "{summary:?}");
            assert!(
                text.batches
                    .iter()
                    .flat_map(|b| &b.rows)
                    .all(|(_, ts, _)| *ts == 1_663_785_000_000_000)
            );
        }
    }

    #[test]
    fn a_rejected_record_keeps_its_json_text_cut_like_a_line() {
        let records = tricky_records();
        let values = values_run(&records, &day_opts(None, 2000, 100));
        let rejects: Vec<&Reject> = values.batches.iter().flat_map(|b| &b.rejects).collect();
        let raw = |line: u64| &rejects.iter().find(|r| r.line == line).unwrap().raw;
        assert_eq!(raw(9), "[1,2]");
        assert_eq!(raw(10), "\"Charged\"");
        assert_eq!(
            raw(8),
            r#"{"eventName":"A","ts":20220921000004,"x":"a\u0000b"}"#
        );
        // 3,000 two-byte characters: cut at 4,096 bytes.
        assert!(raw(15).starts_with(r#"{"big":"éé"#));
        assert_eq!(raw(15).len(), MAX_RAW_LINE_BYTES);
    }

    #[test]
    fn a_record_past_the_size_limit_stops_both_entries_at_its_line() {
        let tricky = tricky_records();
        let records = [tricky[2].clone(), tricky[3].clone(), tricky[14].clone()];
        let line = |i: usize| serde_json::to_vec(&records[i]).unwrap().len();
        let mut opts = day_opts(Some("Fallback"), 2000, 1);
        // The limit counts a record's newline, as the line reader does.
        opts.max_record_bytes = line(0).max(line(1)) + 1;
        assert!(line(2) >= opts.max_record_bytes);
        let text = text_run(&records, &opts);
        assert_eq!(values_run(&records, &opts), text);
        assert_eq!(
            text.end,
            Err(format!(
                "{:?}",
                FileProblem::RecordTooLarge {
                    line: 3,
                    limit: opts.max_record_bytes
                }
            ))
        );
        // The row before it was handed over (batches of one) and the reject too, as with lines.
        assert_eq!(text.batches.len(), 2);
        opts.max_record_bytes = line(2) + 1;
        let values = values_run(&records, &opts);
        assert_eq!(values, text_run(&records, &opts));
        assert!(values.end.is_ok());
    }

    #[test]
    fn a_page_past_the_decoded_bytes_limit_is_refused_like_a_file() {
        let records = tricky_records();
        let mut opts = day_opts(None, 2000, 100);
        opts.limits.max_decompressed_bytes = 1000;
        let (text, values) = (text_run(&records, &opts), values_run(&records, &opts));
        // Lines are refused at a read past the limit, values at the record that passes it, so
        // what was handed over before differs; neither loads.
        assert_eq!(values.end, text.end);
        assert_eq!(
            values.end,
            Err(format!(
                "{:?}",
                FileProblem::Decompression(DecompressionLimit::Bytes { limit: 1000 })
            ))
        );
    }

    /// A random value of up to `depth` more levels, its keys drawn from `KEYS`.
    fn random_value(next: &mut dyn FnMut(u64) -> u64, depth: u32) -> Value {
        use serde_json::json;
        const KEYS: [&str; 8] = ["eventName", "a", "a.b", "b c", "ü", "x.y.z", "", "deep"];
        const TEXTS: [&str; 6] = ["", "x", "é\u{0}", "\u{1F600}", "20220921000000", "a\"b\\"];
        match next(if depth == 0 { 7 } else { 9 }) {
            0 => Value::Null,
            1 => Value::Bool(next(2) == 0),
            2 => json!(next(u64::MAX) as i64),
            3 => json!(next(1000) as f64 / 8.0),
            4 => Value::String(TEXTS[next(TEXTS.len() as u64) as usize].into()),
            5 => json!(1_663_718_400 + next(86_400)),
            6 => json!([next(3), "t", {"k": null}]),
            _ => Value::Object(
                (0..next(4))
                    .map(|_| {
                        let key = KEYS[next(KEYS.len() as u64) as usize].to_string();
                        (key, random_value(next, depth - 1))
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn random_records_give_the_same_result_both_ways() {
        // A fixed xorshift: the same records every run.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        let records: Vec<Value> = (0..2000)
            .map(|i| {
                // One record in ten is any value at all; the first is an object (see
                // `a_scalar_first_record_is_rejected_not_taken_for_an_event_name`).
                if i > 0 && next(10) == 0 {
                    return random_value(&mut next, 2);
                }
                let mut map = Map::new();
                // Epoch seconds, mostly in the day, some a day or more outside it.
                let ts = 1_663_718_400 - 2 * 86_400 + next(5 * 86_400);
                map.insert("ts".into(), serde_json::json!(ts));
                for _ in 0..next(5) {
                    if let Value::Object(more) = random_value(&mut next, 2) {
                        map.extend(more);
                    }
                }
                Value::Object(map)
            })
            .collect();
        for opts in [day_opts(Some("E"), 2000, 64), day_opts(Some("E"), 12, 7)] {
            let values = values_run(&records, &opts);
            assert_eq!(values, text_run(&records, &opts));
            let summary = values.end.unwrap();
            assert_eq!(summary.total(), 2000);
            assert!(summary.rows > 20 && summary.rejected > 100, "{summary:?}");
        }
    }

    #[test]
    fn a_scalar_first_record_is_rejected_not_taken_for_an_event_name() {
        let records = [
            serde_json::json!("Charged"),
            serde_json::json!({"ts": 20220921000000u64}),
        ];
        let opts = day_opts(None, 2000, 100);
        let values = values_run(&records, &opts);
        let rejects: Vec<_> = values
            .batches
            .iter()
            .flat_map(|b| &b.rejects)
            .map(|r| (r.line, r.reason.as_str(), r.raw.as_str()))
            .collect();
        assert_eq!(
            rejects,
            [
                (1, "expected a JSON object, found a string", "\"Charged\""),
                (
                    2,
                    "eventName is empty and the file name carries none",
                    r#"{"ts":20220921000000}"#
                ),
            ]
        );
        assert_eq!(values.end.unwrap().total(), 2);
        // As lines, the same first record is an export's event name: no row and no reject.
        let text = text_run(&records, &opts);
        assert_eq!(text.end.unwrap().total(), 1);
    }

    #[test]
    fn no_values_is_no_records_not_an_empty_file() {
        let run = values_run(&[], &day_opts(None, 2000, 100));
        assert_eq!(run.end, Ok(ParseSummary::default()));
        assert!(run.batches.is_empty());
    }
}
