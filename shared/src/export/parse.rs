//! From a decoded export to validated row batches: the part of the loader that knows what a
//! good CleverTap row is. Pure and synchronous; the caller decides where batches go.

use std::io::{self, Read};

use super::decode::{self, DecompressionLimit, is_source_error};
use super::limits::{ExportLimits, MAX_STORED_REJECTS};
use super::object_name::{DataFormat, ExportKind};
use super::rows::{Reject, RowBatch};
use crate::time::{TsError, TsParser, write_utc};

/// Rows per batch handed to the warehouse: large enough to amortise a transaction round trip,
/// small enough that memory stays flat.
pub const DEFAULT_BATCH_ROWS: usize = 4096;
/// Text per batch above which it is handed over early (wide rows, huge fields).
pub const MAX_BATCH_TEXT_BYTES: usize = 4 * 1024 * 1024;
/// Longest record accepted; a longer one (an unterminated quote swallowing the rest of a file)
/// quarantines the file instead of exhausting memory.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// What the parser needs to know about the file and the project.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    /// Events or profiles.
    pub kind: ExportKind,
    /// Parses `ts` in the project time zone, bounded by the file's data date.
    pub ts: TsParser,
    /// The event name from the object name, used when a row carries none.
    pub event_name_fallback: Option<String>,
    /// Most columns the target warehouse takes in one table.
    pub max_columns: usize,
    /// Rows per batch.
    pub batch_rows: usize,
    /// Longest record accepted.
    pub max_record_bytes: usize,
    /// Bounds on decoded size and column names (`ExportLimits::default()` in most callers).
    pub limits: ExportLimits,
}

/// Why a whole file cannot be loaded. Recorded in the ledger as the quarantine reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FileProblem {
    /// The object has no bytes.
    #[error("empty object (0 bytes)")]
    Empty,
    /// The text has no header row.
    #[error("no header row: the object decodes to nothing")]
    NoHeader,
    /// The compressed stream is damaged or cut short.
    #[error("corrupt or truncated data: {0}")]
    Corrupt(String),
    /// The header is not UTF-8.
    #[error("the header row is not valid UTF-8")]
    HeaderNotUtf8,
    /// A required column is missing from the header.
    #[error("required column {0:?} is missing from the header")]
    MissingColumn(String),
    /// A header name appears twice, so columns cannot be mapped by name.
    #[error("column {0:?} appears more than once in the header")]
    DuplicateColumn(String),
    /// A header name is longer than the column name limit.
    #[error(
        "header column {position} is {bytes} bytes long, above the {limit}-byte limit for a column name: {preview:?}"
    )]
    ColumnNameTooLong {
        /// 1-based position in the header.
        position: usize,
        /// Length of the name.
        bytes: usize,
        /// The limit.
        limit: usize,
        /// The start of the name.
        preview: String,
    },
    /// The decoded text grew past a per-object limit (a decompression bomb, most likely).
    #[error(transparent)]
    Decompression(#[from] DecompressionLimit),
    /// More columns than the warehouse takes in one table.
    #[error("{count} columns is more than the warehouse allows in one table ({limit})")]
    TooManyColumns {
        /// Columns in the file.
        count: usize,
        /// The warehouse's limit.
        limit: usize,
    },
    /// One record is larger than the limit (often an unterminated quote).
    #[error("the record at line {line} is larger than {limit} bytes (an unterminated quote?)")]
    RecordTooLarge {
        /// Where the record starts.
        line: u64,
        /// The limit.
        limit: usize,
    },
    /// Too many rows were rejected for the file to be trusted.
    #[error(
        "{rejected} of {total} rows rejected ({:.2} %), above the {:.2} % limit",
        *rejected as f64 * 100.0 / (*total).max(1) as f64,
        threshold * 100.0
    )]
    TooManyRejects {
        /// Rejected rows.
        rejected: u64,
        /// Data rows in the file.
        total: u64,
        /// The configured ratio.
        threshold: f64,
    },
    /// The format is recognised but not loaded by this build.
    #[error("{0}")]
    Unsupported(String),
}

/// Why parsing stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The file is bad as a whole: quarantine it.
    #[error(transparent)]
    Problem(#[from] FileProblem),
    /// Reading the source failed: retry later.
    #[error("reading the source failed")]
    Source(#[source] io::Error),
    /// The receiver of batches went away (the warehouse failed); its error is the one to report.
    #[error("the batch receiver stopped")]
    Stopped,
}

/// Counts of one parsed file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseSummary {
    /// Rows that passed validation.
    pub rows: u64,
    /// Rows rejected.
    pub rejected: u64,
    /// Bytes of decoded text.
    pub decoded_bytes: u64,
}

impl ParseSummary {
    /// Data rows seen, good and bad.
    pub fn total(&self) -> u64 {
        self.rows + self.rejected
    }
}

/// Receives each batch; returns `false` to stop the parser.
pub type BatchSink<'a> = dyn FnMut(RowBatch) -> bool + 'a;

/// Decodes, parses and validates an export, handing batches of rows and rejects to `sink`.
/// The reject ratio is not judged here: the caller compares the summary with its threshold.
pub fn parse_export<R: Read + Send + 'static>(
    source: R,
    format: DataFormat,
    opts: &ParseOptions,
    sink: &mut BatchSink<'_>,
) -> Result<ParseSummary, ParseError> {
    if opts.kind == ExportKind::Profiles {
        return Err(FileProblem::Unsupported(
            "profile exports are recognised but not loaded yet".to_string(),
        )
        .into());
    }
    let decoded = match decode::decode_limited(source, &opts.limits) {
        Ok(Some(d)) => d,
        Ok(None) => return Err(FileProblem::Empty.into()),
        Err(e) => return Err(io_to_parse_error(e, 1, opts)),
    };
    match format {
        DataFormat::Csv => super::csv_rows::parse_csv(decoded.reader, opts, sink),
        DataFormat::Json => super::json_rows::parse_json_lines(decoded.reader, opts, sink),
    }
}

/// Marks an I/O error raised when a record grows past the limit.
#[derive(Debug, thiserror::Error)]
#[error("record larger than the limit")]
pub(crate) struct RecordTooLargeError;

/// Sorts an I/O error met while parsing into source failure or data problem.
pub(crate) fn io_to_parse_error(err: io::Error, line: u64, opts: &ParseOptions) -> ParseError {
    if is_source_error(&err) {
        return ParseError::Source(decode::into_source_error(err));
    }
    if let Some(limit) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<DecompressionLimit>())
    {
        return FileProblem::Decompression(limit.clone()).into();
    }
    if err.get_ref().is_some_and(|e| e.is::<RecordTooLargeError>()) {
        return FileProblem::RecordTooLarge {
            line,
            limit: opts.max_record_bytes,
        }
        .into();
    }
    FileProblem::Corrupt(err.to_string()).into()
}

/// The row checks shared by the CSV and JSON parsers.
pub(crate) struct RowChecks<'a> {
    opts: &'a ParseOptions,
}

/// A failed check: the column at fault and why.
pub(crate) type CheckFailure = (Option<&'static str>, String);

impl<'a> RowChecks<'a> {
    pub(crate) fn new(opts: &'a ParseOptions) -> Self {
        Self { opts }
    }

    /// Parses `ts` into UTC text.
    pub(crate) fn ts(&self, raw: Option<&str>, out: &mut [u8; 20]) -> Result<(), CheckFailure> {
        let raw = match raw {
            Some(r) if !r.is_empty() => r,
            _ => return Err((Some(super::TS_COLUMN), "ts is empty".to_string())),
        };
        let seconds = self
            .opts
            .ts
            .parse(raw)
            .map_err(|e: TsError| (Some(super::TS_COLUMN), e.to_string()))?;
        write_utc(seconds, out);
        Ok(())
    }

    /// The event name of a row: its own value, else the one from the object name.
    pub(crate) fn event_name<'v>(&'v self, raw: Option<&'v str>) -> Result<&'v str, CheckFailure>
    where
        'a: 'v,
    {
        match raw {
            Some(name) if !name.is_empty() => Ok(name),
            _ => self.opts.event_name_fallback.as_deref().ok_or((
                Some(super::EVENT_NAME_COLUMN),
                "eventName is empty and the file name carries none".to_string(),
            )),
        }
    }

    /// Text with a NUL byte is refused: PostgreSQL cannot store it and BI tools cut at it.
    pub(crate) fn no_nul(&self, text: &str) -> Result<(), CheckFailure> {
        if text.as_bytes().contains(&0) {
            return Err((None, "NUL byte in a field".to_string()));
        }
        Ok(())
    }
}

/// Accumulates batches and hands them over when full. Rejects count towards fullness too, and
/// only the first [`MAX_STORED_REJECTS`] of a file are kept at all: a file of bad rows costs no
/// more memory than a file of good ones.
pub(crate) struct Batcher<'s, 'o> {
    pub(crate) batch: RowBatch,
    pub(crate) summary: ParseSummary,
    sink: &'s mut BatchSink<'o>,
    batch_rows: usize,
    /// Rejects handed over or held so far in this file.
    stored_rejects: usize,
    /// Text held by the current batch's rejects.
    reject_bytes: usize,
}

impl<'s, 'o> Batcher<'s, 'o> {
    pub(crate) fn new(batch: RowBatch, sink: &'s mut BatchSink<'o>, batch_rows: usize) -> Self {
        Self {
            batch,
            summary: ParseSummary::default(),
            sink,
            batch_rows,
            stored_rejects: 0,
            reject_bytes: 0,
        }
    }

    /// Counts a reject; keeps it while the file's stored-reject cap allows, and hands the batch
    /// over when its rejects fill it (a file of bad rows has no good row to do that).
    pub(crate) fn reject(&mut self, reject: Reject) -> Result<(), ParseError> {
        self.summary.rejected += 1;
        if self.stored_rejects >= MAX_STORED_REJECTS {
            return Ok(());
        }
        self.stored_rejects += 1;
        self.reject_bytes += reject.raw.len() + reject.reason.len();
        self.batch.rejects.push(reject);
        if self.batch.rejects.len() >= self.batch_rows || self.reject_bytes >= MAX_BATCH_TEXT_BYTES
        {
            self.flush(None)?;
        }
        Ok(())
    }

    pub(crate) fn row_done(&mut self) -> Result<(), ParseError> {
        self.summary.rows += 1;
        if self.batch.row_count() >= self.batch_rows
            || self.batch.text_bytes() >= MAX_BATCH_TEXT_BYTES
        {
            self.flush(None)?;
        }
        Ok(())
    }

    /// Hands the current batch over, continuing with `next` (a new schema) or an empty copy.
    pub(crate) fn flush(&mut self, next: Option<RowBatch>) -> Result<(), ParseError> {
        let fresh = next.unwrap_or_else(|| self.batch.empty_like());
        let full = std::mem::replace(&mut self.batch, fresh);
        self.reject_bytes = 0;
        if !full.is_empty() && !(self.sink)(full) {
            return Err(ParseError::Stopped);
        }
        Ok(())
    }

    pub(crate) fn finish(mut self, decoded_bytes: u64) -> Result<ParseSummary, ParseError> {
        self.flush(None)?;
        self.summary.decoded_bytes = decoded_bytes;
        Ok(self.summary)
    }
}
