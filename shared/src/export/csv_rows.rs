//! CSV exports (RFC 4180: quoted commas and newlines, doubled quotes, CRLF or LF), columns
//! mapped by header name because CleverTap's property columns vary per file.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::io::{self, Read};
use std::rc::Rc;
use std::sync::Arc;

use super::batcher::{BatchSink, Batcher, ParseSummary};
use super::limits::name_preview;
use super::object_name::ExportKind;
use super::parse_error::{FileProblem, ParseError, RecordTooLargeError, io_to_parse_error};
use super::parse_options::ParseOptions;
use super::profile_rows::{
    CLEVERTAP_ID_COLUMN, IDENTITY_COLUMN, SNAPSHOT_COLUMNS, csv_record_text, list_property_text,
    profile_hash, property_column, snapshot_key,
};
use super::row_checks::{CheckFailure, RowChecks};
use super::rows::{Reject, RowBatch, Schema};
use super::{EVENT_NAME_COLUMN, TS_COLUMN};

/// Parses a decoded CSV export: event rows, or profile snapshot rows when `opts.kind` says
/// profiles (the same reader, header checks, record checks and rejects; only the row differs).
pub(crate) fn parse_csv(
    input: Box<dyn Read + Send>,
    opts: &ParseOptions,
    sink: &mut BatchSink<'_>,
) -> Result<ParseSummary, ParseError> {
    let (mut reader, taped) = open_reader(input, opts.max_record_bytes);
    let mut record = csv::ByteRecord::new();

    let header_read = reader
        .read_byte_record(&mut record)
        .map_err(|e| csv_to_parse_error(e, 1, opts))?;
    if !header_read {
        return Err(FileProblem::NoHeader.into());
    }
    let header = Header::parse(&record, opts)?;
    taped.borrow_mut().release(reader.position().byte());

    let schema = Arc::new(Schema::new(header.schema_columns.clone()));
    let first = match &header.shape {
        Shape::Events {
            event_name_slot, ..
        } => RowBatch::new(schema, *event_name_slot),
        Shape::Profiles(_) => RowBatch::for_profiles(schema),
    };
    let mut batcher = Batcher::new(first, sink, opts.batch_rows);
    let checks = RowChecks::new(opts);

    loop {
        let more = reader.read_byte_record(&mut record).map_err(|e| {
            let next_line = taped.borrow().next_line();
            csv_to_parse_error(e, next_line, opts)
        })?;
        if !more {
            break;
        }
        let start = record.position().map(|p| p.byte()).unwrap_or(0);
        let end = reader.position().byte();
        // Counted here rather than taken from the csv reader, which counts a CRLF record's
        // line one short.
        let line = taped.borrow().line_of(start, end);
        let pushed = check_text(&record, &header, &checks, &taped, start, end).and_then(|text| {
            let batch = &mut batcher.batch;
            match &header.shape {
                Shape::Events {
                    ts,
                    event_name,
                    event_name_slot: _,
                } => push_event_row(&record, text, *ts, *event_name, &checks, line, batch),
                Shape::Profiles(layout) => {
                    let ts = checks.snapshot_ts()?;
                    layout.push_row(&header.names, &record, text, line, ts, batch)
                }
            }
        });
        match pushed {
            Ok(()) => batcher.row_done()?,
            Err((column, reason)) => {
                let state = taped.borrow();
                batcher.reject(Reject::new(
                    line,
                    column.map(str::to_string),
                    reason,
                    state.slice(start, end),
                ))?;
            }
        }
        taped.borrow_mut().release(end);
    }
    let decoded = taped.borrow().total;
    batcher.finish(decoded)
}

/// The csv reader every CSV export is read with, over a [`Tap`] that keeps the record being
/// parsed (whose state the caller reads for raw rejects and line numbers).
fn open_reader(
    input: Box<dyn Read + Send>,
    max_record_bytes: usize,
) -> (csv::Reader<Tap>, Rc<RefCell<TapState>>) {
    let tap = Tap::new(input, max_record_bytes);
    let taped = tap.state.clone();
    let reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(64 * 1024)
        .from_reader(tap);
    (reader, taped)
}

/// `make bench`'s tokenise stage: reads every record of decoded CSV text with the parser's own
/// reader and tap, releasing each as [`parse_csv`] does, and checks nothing. Returns the
/// records read, the header included.
pub(crate) fn tokenise_only(
    input: Box<dyn Read + Send>,
    opts: &ParseOptions,
) -> Result<u64, ParseError> {
    let (mut reader, taped) = open_reader(input, opts.max_record_bytes);
    let mut record = csv::ByteRecord::new();
    let mut records = 0;
    while reader
        .read_byte_record(&mut record)
        .map_err(|e| csv_to_parse_error(e, records + 1, opts))?
    {
        records += 1;
        taped.borrow_mut().release(reader.position().byte());
    }
    Ok(records)
}

/// Checks an event record's `ts` and event name, then pushes it as a row.
fn push_event_row(
    record: &csv::ByteRecord,
    text: &str,
    ts_index: usize,
    event_name: Option<usize>,
    checks: &RowChecks<'_>,
    line: u64,
    batch: &mut RowBatch,
) -> Result<(), CheckFailure> {
    let field = |i: usize| record.range(i).map(|r| &text[r]);
    let ts = checks.ts(field(ts_index))?;
    let name = checks.event_name(event_name.and_then(field))?;
    batch.start_row(line, ts);
    // The record's text is copied once; its fields are ranges of that copy.
    let base = batch.push_row_text(text);
    for i in 0..record.len() {
        if i == ts_index {
            batch.push_field(None);
        } else if Some(i) == event_name {
            batch.push_field(Some(name));
        } else {
            batch.push_field_in(base, record.range(i).unwrap_or_default());
        }
    }
    if event_name.is_none() {
        batch.push_field(Some(name));
    }
    Ok(())
}

/// Checks what every record needs (complete quoting, the header's field count, UTF-8, no NUL)
/// and returns the record's text (all fields, contiguous).
fn check_text<'r>(
    record: &'r csv::ByteRecord,
    header: &Header,
    checks: &RowChecks<'_>,
    taped: &Rc<RefCell<TapState>>,
    start: u64,
    end: u64,
) -> Result<&'r str, CheckFailure> {
    // An open quote at the end of the stream makes the csv reader end the record silently;
    // only the final record can be affected, so only it is re-read.
    {
        let state = taped.borrow();
        if state.eof && end == state.total && ends_inside_quotes(state.slice(start, end)) {
            return Err((None, "unterminated quoted field at end of file".to_string()));
        }
    }
    if record.len() != header.names.len() {
        return Err((
            None,
            format!(
                "expected {} fields, found {}",
                header.names.len(),
                record.len()
            ),
        ));
    }
    let invalid = |field: usize| {
        (
            None,
            format!(
                "invalid UTF-8 in column {:?}",
                header.names.get(field).map(String::as_str).unwrap_or("?")
            ),
        )
    };
    let text = std::str::from_utf8(record.as_slice()).map_err(|e| {
        let bad_at = e.valid_up_to();
        invalid(
            (0..record.len())
                .find(|&i| record.range(i).is_some_and(|r| r.end > bad_at))
                .unwrap_or(0),
        )
    })?;
    // The fields end to end can be valid where a field is not: a character's first bytes
    // ending one field and its last bytes starting the next (`x\xe2,\x82\xac`), whose ranges
    // would cut the text inside a character.
    if let Some(field) = (0..record.len()).find(|&i| {
        record
            .range(i)
            .is_some_and(|r| !text.is_char_boundary(r.start) || !text.is_char_boundary(r.end))
    }) {
        return Err(invalid(field));
    }
    checks.no_nul(text)?;
    Ok(text)
}

/// Replays RFC 4180 quoting over one raw record: does it end inside a quoted field?
fn ends_inside_quotes(raw: &[u8]) -> bool {
    #[derive(PartialEq)]
    enum S {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut s = S::FieldStart;
    for &b in raw {
        s = match (s, b) {
            (S::FieldStart, b'"') => S::Quoted,
            (S::FieldStart | S::Unquoted | S::QuoteInQuoted, b',' | b'\n' | b'\r') => S::FieldStart,
            (S::FieldStart | S::Unquoted, _) => S::Unquoted,
            (S::Quoted, b'"') => S::QuoteInQuoted,
            (S::Quoted, _) => S::Quoted,
            (S::QuoteInQuoted, b'"') => S::Quoted,
            (S::QuoteInQuoted, _) => S::Unquoted,
        };
    }
    s == S::Quoted
}

fn csv_to_parse_error(err: csv::Error, line: u64, opts: &ParseOptions) -> ParseError {
    match err.into_kind() {
        csv::ErrorKind::Io(e) => io_to_parse_error(e, line, opts),
        other => FileProblem::Corrupt(format!("{other:?}")).into(),
    }
}

/// The header row, checked, with the positions the parser needs.
struct Header {
    names: Vec<String>,
    /// Raw names handed to the warehouse (see [`Shape`]).
    schema_columns: Vec<String>,
    shape: Shape,
}

/// What the rows of a file are.
enum Shape {
    /// Event rows: the header, plus `eventName` when the file has none.
    Events {
        ts: usize,
        event_name: Option<usize>,
        event_name_slot: usize,
    },
    /// Profile snapshot rows: the snapshot columns, then the header's properties.
    Profiles(ProfileLayout),
}

impl Header {
    fn parse(record: &csv::ByteRecord, opts: &ParseOptions) -> Result<Self, FileProblem> {
        let mut names = Vec::with_capacity(record.len());
        let mut seen = HashSet::with_capacity(record.len());
        let limit = opts.limits.max_column_name_bytes;
        for (i, field) in record.iter().enumerate() {
            let name = std::str::from_utf8(field).map_err(|_| FileProblem::HeaderNotUtf8)?;
            if name.len() > limit {
                return Err(FileProblem::ColumnNameTooLong {
                    position: i + 1,
                    bytes: name.len(),
                    limit,
                    preview: name_preview(name),
                });
            }
            if !seen.insert(name) {
                return Err(FileProblem::DuplicateColumn(name.to_string()));
            }
            names.push(name.to_string());
        }
        let (schema_columns, shape) = match opts.kind {
            ExportKind::Events => event_shape(&names, opts)?,
            ExportKind::Profiles => {
                let layout = ProfileLayout::new(&names)?;
                (layout.schema_columns(&names), Shape::Profiles(layout))
            }
        };
        if schema_columns.len() > opts.max_columns {
            return Err(FileProblem::TooManyColumns {
                count: schema_columns.len(),
                limit: opts.max_columns,
            });
        }
        Ok(Self {
            names,
            schema_columns,
            shape,
        })
    }
}

fn event_shape(names: &[String], opts: &ParseOptions) -> Result<(Vec<String>, Shape), FileProblem> {
    let ts = names
        .iter()
        .position(|n| n == TS_COLUMN)
        .ok_or_else(|| FileProblem::MissingColumn(TS_COLUMN.to_string()))?;
    let event_name = names.iter().position(|n| n == EVENT_NAME_COLUMN);
    if event_name.is_none() && opts.event_name_fallback.is_none() {
        return Err(FileProblem::MissingColumn(EVENT_NAME_COLUMN.to_string()));
    }
    let mut schema_columns = names.to_vec();
    let event_name_slot = match event_name {
        Some(i) => i,
        None => {
            schema_columns.push(EVENT_NAME_COLUMN.to_string());
            schema_columns.len() - 1
        }
    };
    let shape = Shape::Events {
        ts,
        event_name,
        event_name_slot,
    };
    Ok((schema_columns, shape))
}

/// Where a profile CSV's key columns are; every other column is a property.
struct ProfileLayout {
    identity: Option<usize>,
    clevertap_id: Option<usize>,
}

impl ProfileLayout {
    fn new(names: &[String]) -> Result<Self, FileProblem> {
        let layout = Self {
            identity: names.iter().position(|n| n == IDENTITY_COLUMN),
            clevertap_id: names.iter().position(|n| n == CLEVERTAP_ID_COLUMN),
        };
        // A renamed property (`ts` → `ts (property)`) must not meet a column of that name.
        let mut seen: HashSet<Cow<'_, str>> = HashSet::with_capacity(names.len());
        for name in names {
            let column = property_column(name);
            if !seen.insert(column.clone()) {
                return Err(FileProblem::DuplicateColumn(column.into_owned()));
            }
        }
        Ok(layout)
    }

    /// The snapshot columns, then each header column but `identity` (renamed if reserved).
    fn schema_columns(&self, names: &[String]) -> Vec<String> {
        let mut columns: Vec<String> = SNAPSHOT_COLUMNS.iter().map(|c| c.to_string()).collect();
        columns.extend(
            names
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != self.identity)
                .map(|(_, n)| property_column(n).into_owned()),
        );
        columns
    }

    /// Pushes one checked record as a snapshot row at `ts`, or refuses it without a key.
    fn push_row(
        &self,
        names: &[String],
        record: &csv::ByteRecord,
        text: &str,
        line: u64,
        ts: i64,
        batch: &mut RowBatch,
    ) -> Result<(), CheckFailure> {
        let field = |i: usize| record.range(i).map(|r| &text[r]).unwrap_or("");
        let key = snapshot_key(self.identity.map(field), self.clevertap_id.map(field))?;
        let lists: Vec<Option<String>> = names
            .iter()
            .enumerate()
            .map(|(i, name)| list_property_text(name, field(i)).filter(|_| !field(i).is_empty()))
            .collect();
        let stored = |i: usize| lists[i].as_deref().unwrap_or_else(|| field(i));
        let hash = profile_hash(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), stored(i))),
        );
        let record_text = csv_record_text(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), field(i))),
        );
        batch.start_row(line, ts);
        batch.push_field(Some(key));
        batch.push_field(None);
        batch.push_field(Some(&hash));
        batch.push_field(Some(&record_text));
        for i in (0..names.len()).filter(|i| Some(*i) != self.identity) {
            batch.push_field(Some(stored(i)));
        }
        Ok(())
    }
}

/// Keeps the bytes of the record being parsed, so a rejected row is stored as it was written
/// (the csv reader only hands out unquoted fields) and an open quote at the end can be seen.
struct Tap {
    inner: Box<dyn Read + Send>,
    state: Rc<RefCell<TapState>>,
}

struct TapState {
    /// Stream offset of `bytes[0]`.
    base: u64,
    bytes: Vec<u8>,
    /// Bytes read so far.
    total: u64,
    /// Stream offset where the record being parsed starts: nothing before it is needed.
    keep_from: u64,
    /// Line feeds before `keep_from`.
    newlines: u64,
    eof: bool,
    max_record_bytes: usize,
}

/// Dead bytes tolerated before they are dropped: compaction moves only the live tail, so its
/// cost stays a small fraction of the bytes read.
const COMPACT_AFTER_BYTES: u64 = 256 * 1024;
/// At least the csv reader's buffer: what it reads ahead is not part of the current record.
const READ_AHEAD_SLACK: usize = 128 * 1024;

impl Tap {
    fn new(inner: Box<dyn Read + Send>, max_record_bytes: usize) -> Self {
        Self {
            inner,
            state: Rc::new(RefCell::new(TapState {
                base: 0,
                bytes: Vec::with_capacity(2 * COMPACT_AFTER_BYTES as usize),
                total: 0,
                keep_from: 0,
                newlines: 0,
                eof: false,
                max_record_bytes,
            })),
        }
    }
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut s = self.state.borrow_mut();
        if n == 0 {
            s.eof = true;
            return Ok(0);
        }
        if s.keep_from - s.base >= COMPACT_AFTER_BYTES {
            let dead = (s.keep_from - s.base) as usize;
            s.bytes.drain(..dead);
            s.base = s.keep_from;
        }
        // Bytes held past the record start include the csv reader's read-ahead; allow for it.
        if (s.total + n as u64 - s.keep_from) as usize > s.max_record_bytes + READ_AHEAD_SLACK {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                RecordTooLargeError,
            ));
        }
        s.bytes.extend_from_slice(&buf[..n]);
        s.total += n as u64;
        Ok(n)
    }
}

impl TapState {
    fn release(&mut self, upto: u64) {
        let done = self.slice(self.keep_from, upto);
        self.newlines += count_newlines(done);
        self.keep_from = upto;
    }

    /// 1-based line of the next record, before it is read.
    fn next_line(&self) -> u64 {
        self.newlines + 1
    }

    /// 1-based line where the record in `start..end` begins: blank lines and the LF of a
    /// previous CRLF may precede its first byte.
    fn line_of(&self, start: u64, end: u64) -> u64 {
        let leading = self
            .slice(start, end)
            .iter()
            .take_while(|&&b| b == b'\n' || b == b'\r')
            .filter(|&&b| b == b'\n')
            .count() as u64;
        self.newlines + 1 + leading
    }

    fn slice(&self, start: u64, end: u64) -> &[u8] {
        let from = start.saturating_sub(self.base) as usize;
        let to = (end.saturating_sub(self.base) as usize).min(self.bytes.len());
        &self.bytes[from.min(to)..to]
    }
}

/// Line feeds in `bytes`, counted in 8-bit lanes over chunks short enough not to overflow them:
/// the compiler vectorises this 16 or 32 bytes at a time, where counting into a `u64` per byte
/// took 4 (it runs over every byte of a file).
fn count_newlines(bytes: &[u8]) -> u64 {
    bytes
        .chunks(255)
        .map(|chunk| u64::from(chunk.iter().fold(0u8, |n, &b| n + u8::from(b == b'\n'))))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::object_name::{DataFormat, ExportKind};
    use crate::export::parse::parse_export;
    use crate::time::TsParser;
    use jiff::tz::TimeZone;

    fn opts() -> ParseOptions {
        ParseOptions {
            kind: ExportKind::Events,
            ts: TsParser::new(&TimeZone::UTC, None),
            event_name_fallback: None,
            max_columns: 2000,
            batch_rows: 2,
            max_record_bytes: 1024 * 1024 * 4,
            limits: Default::default(),
            snapshot_micros: None,
        }
    }

    type Parsed = (
        Vec<Vec<(u64, Vec<Option<String>>)>>,
        Vec<Reject>,
        ParseSummary,
    );

    fn parse_with(bytes: &[u8], opts: &ParseOptions) -> Result<Parsed, ParseError> {
        let mut batches = Vec::new();
        let mut rejects = Vec::new();
        let summary = parse_export(
            io::Cursor::new(bytes.to_vec()),
            DataFormat::Csv,
            opts,
            &mut |b: RowBatch| {
                let n = b.schema().len();
                batches.push(
                    b.rows()
                        .map(|r| {
                            (
                                r.line,
                                (0..n)
                                    .map(|i| r.text(i, &mut [0; 20]).map(str::to_string))
                                    .collect(),
                            )
                        })
                        .collect(),
                );
                rejects.extend(b.rejects);
                true
            },
        )?;
        Ok((batches, rejects, summary))
    }

    fn parse(bytes: &[u8]) -> Result<Parsed, ParseError> {
        parse_with(bytes, &opts())
    }

    fn rows(bytes: &[u8]) -> Vec<(u64, Vec<Option<String>>)> {
        parse(bytes).unwrap().0.into_iter().flatten().collect()
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn quoted_commas_newlines_and_doubled_quotes() {
        let got = rows(
            b"ts,eventName,eventProps.Product Name\n\
              20220921043925,Charged,\"Shoes, \"\"red\"\"\"\n\
              20220921043926,Charged,\"two\nlines\"\n\
              20220921043927,Charged,\n",
        );
        assert_eq!(
            got,
            vec![
                (
                    2,
                    vec![s("2022-09-21T04:39:25Z"), s("Charged"), s("Shoes, \"red\"")]
                ),
                (
                    3,
                    vec![s("2022-09-21T04:39:26Z"), s("Charged"), s("two\nlines")]
                ),
                (5, vec![s("2022-09-21T04:39:27Z"), s("Charged"), None]),
            ]
        );
    }

    #[test]
    fn crlf_bom_and_columns_by_name() {
        let got = rows(b"\xef\xbb\xbfeventProps.a,eventName,ts\r\nx,Charged,20220921043925\r\n");
        assert_eq!(
            got,
            vec![(2, vec![s("x"), s("Charged"), s("2022-09-21T04:39:25Z")])]
        );
    }

    #[test]
    fn newlines_are_counted_across_chunks() {
        let mut bytes = b"a\n".repeat(600);
        bytes.extend_from_slice(&[b'\n'; 300]);
        bytes.extend_from_slice(b"\r\nx");
        assert_eq!(count_newlines(&bytes), 901);
        assert_eq!(count_newlines(b""), 0);
        assert_eq!(count_newlines(b"no line feed"), 0);
    }

    #[test]
    fn header_only_file_has_no_rows() {
        let (batches, rejects, summary) = parse(b"ts,eventName\n").unwrap();
        assert!(batches.is_empty() && rejects.is_empty());
        assert_eq!(summary.total(), 0);
    }

    #[test]
    fn file_problems_are_exact() {
        let problem = |bytes: &[u8]| match parse(bytes) {
            Err(ParseError::Problem(p)) => p,
            other => panic!("expected a file problem, got {other:?}"),
        };
        assert_eq!(problem(b""), FileProblem::Empty);
        assert_eq!(
            problem(b"eventName,x\nA,1\n"),
            FileProblem::MissingColumn("ts".into())
        );
        assert_eq!(
            problem(b"ts,x\n1,1\n"),
            FileProblem::MissingColumn("eventName".into())
        );
        assert_eq!(
            problem(b"ts,eventName,a,a\n"),
            FileProblem::DuplicateColumn("a".into())
        );
        assert_eq!(problem(b"ts,eventName,\xff\n"), FileProblem::HeaderNotUtf8);
        let mut wide = b"ts,eventName".to_vec();
        for i in 0..5000 {
            wide.extend(format!(",eventProps.p{i}").as_bytes());
        }
        assert_eq!(
            problem(&wide),
            FileProblem::TooManyColumns {
                count: 5002,
                limit: 2000
            }
        );
    }

    #[test]
    fn bad_rows_are_rejected_with_reason_and_raw_line() {
        let (batches, rejects, summary) = parse(
            b"ts,eventName,a\n\
              20220921043925,Charged,ok\n\
              20220921043925,Charged\n\
              notatime,Charged,x\n\
              20220921043925,Charged,\xff\xfe\n\
              20220921043925,Charged,a\0b\n\
              20220921043925,,x\n",
        )
        .unwrap();
        assert_eq!(batches.concat().len(), 1);
        assert_eq!(
            summary,
            ParseSummary {
                rows: 1,
                rejected: 5,
                decoded_bytes: summary.decoded_bytes
            }
        );
        let got: Vec<_> = rejects
            .iter()
            .map(|r| {
                (
                    r.line,
                    r.column.as_deref(),
                    r.reason.as_str(),
                    r.raw.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    3,
                    None,
                    "expected 3 fields, found 2",
                    "20220921043925,Charged"
                ),
                (
                    4,
                    Some("ts"),
                    "ts \"notatime\" is neither yyyyMMddHHmmss nor epoch seconds",
                    "notatime,Charged,x"
                ),
                (
                    5,
                    None,
                    "invalid UTF-8 in column \"a\"",
                    "20220921043925,Charged,\u{fffd}\u{fffd}"
                ),
                (
                    6,
                    None,
                    "NUL byte in a field",
                    "20220921043925,Charged,a\\0b"
                ),
                (
                    7,
                    Some("eventName"),
                    "eventName is empty and the file name carries none",
                    "20220921043925,,x"
                ),
            ]
        );
    }

    #[test]
    fn a_character_split_by_a_separator_is_invalid_utf8() {
        let (batches, rejects, _) =
            parse(b"ts,eventName,a,b\n20220921043925,Charged,x\xe2,\x82\xacy\n").unwrap();
        assert!(batches.concat().is_empty());
        assert_eq!(rejects[0].reason, "invalid UTF-8 in column \"a\"");
    }

    #[test]
    fn raw_line_keeps_original_quoting() {
        let (_, rejects, _) = parse(b"ts,eventName,a\n\"bad\",\"Char\"\"ged\",\"x,y\"\n").unwrap();
        assert_eq!(rejects[0].raw, "\"bad\",\"Char\"\"ged\",\"x,y\"");
    }

    #[test]
    fn unterminated_quote_at_end_is_rejected() {
        let (batches, rejects, _) =
            parse(b"ts,eventName,a\n20220921043925,Charged,ok\n20220921043925,Charged,\"open\n")
                .unwrap();
        assert_eq!(batches.concat().len(), 1);
        assert_eq!(rejects.len(), 1);
        assert_eq!(
            rejects[0].reason,
            "unterminated quoted field at end of file"
        );
        assert_eq!(rejects[0].line, 3);
        // A closed quote on the last line, with or without a final newline, is fine.
        assert_eq!(
            rows(b"ts,eventName,a\n20220921043925,Charged,\"x\"").len(),
            1
        );
        assert_eq!(
            rows(b"ts,eventName,a\n20220921043925,Charged,\"x\"\"\"\n").len(),
            1
        );
    }

    #[test]
    fn record_larger_than_limit_is_a_file_problem() {
        let mut o = opts();
        o.max_record_bytes = 64 * 1024;
        let mut data = b"ts,eventName,a\n20220921043925,Charged,\"".to_vec();
        data.extend(vec![b'x'; 400 * 1024]);
        match parse_with(&data, &o) {
            Err(ParseError::Problem(FileProblem::RecordTooLarge {
                line: 2,
                limit: 65536,
            })) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_one_mebibyte_field_loads() {
        let mut data = b"ts,eventName,a\n20220921043925,Charged,".to_vec();
        data.extend(vec![b'x'; 1024 * 1024]);
        data.push(b'\n');
        let got = rows(&data);
        assert_eq!(got[0].1[2].as_ref().map(String::len), Some(1024 * 1024));
    }

    #[test]
    fn missing_event_name_column_uses_the_file_name() {
        let mut o = opts();
        o.event_name_fallback = Some("Order-Placed".into());
        let (batches, _, _) = parse_with(b"ts,a\n20220921043925,x\n", &o).unwrap();
        assert_eq!(
            batches.concat(),
            vec![(
                2,
                vec![s("2022-09-21T04:39:25Z"), s("x"), s("Order-Placed")]
            )]
        );
    }

    #[test]
    fn an_overlong_header_name_is_a_file_problem() {
        let mut header = b"ts,eventName,".to_vec();
        header.extend(vec![b'n'; 1025]);
        header.push(b'\n');
        match parse(&header) {
            Err(ParseError::Problem(p)) => assert_eq!(
                p.to_string(),
                format!(
                    "header column 3 is 1025 bytes long, above the 1024-byte limit for a column name: \"{}…\"",
                    "n".repeat(40)
                )
            ),
            other => panic!("expected a file problem, got {other:?}"),
        }
        header.truncate(header.len() - 2);
        header.push(b'\n');
        assert!(parse(&header).is_ok(), "1024 bytes is within the limit");
    }

    #[test]
    fn rejects_are_handed_over_without_good_rows_and_capped_per_file() {
        use crate::export::limits::MAX_STORED_REJECTS;
        let mut data = b"ts,eventName,a\n".to_vec();
        for _ in 0..25_000 {
            data.extend_from_slice(b"notatime,Charged,x\n");
        }
        let mut o = opts();
        o.batch_rows = 1000;
        let mut batches = 0;
        let mut most_held = 0;
        let mut stored = 0;
        let summary = parse_export(
            io::Cursor::new(data),
            DataFormat::Csv,
            &o,
            &mut |b: RowBatch| {
                batches += 1;
                most_held = most_held.max(b.rejects.len());
                stored += b.rejects.len();
                true
            },
        )
        .unwrap();
        assert_eq!((summary.rows, summary.rejected), (0, 25_000));
        assert_eq!(stored, MAX_STORED_REJECTS, "the rest are counted only");
        assert_eq!(
            most_held, 1000,
            "a batch of rejects is handed over when full"
        );
        assert_eq!(batches, MAX_STORED_REJECTS / 1000);
    }

    #[test]
    fn quote_replay_matches_rfc4180() {
        assert!(ends_inside_quotes(b"a,\"open"));
        assert!(ends_inside_quotes(b"a,\"x\"\"y\n"));
        assert!(!ends_inside_quotes(b"a,\"x\"\"y\"\n"));
        assert!(!ends_inside_quotes(b"a,b\"c\n"));
        assert!(!ends_inside_quotes(b"\"a\",\"b\"\r\n"));
    }
}
