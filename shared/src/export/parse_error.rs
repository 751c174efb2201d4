//! Why parsing a file stopped: a problem with the file as a whole (quarantine it) or with its
//! source (retry later), and how an I/O error met while parsing is sorted into one of the two.

use std::io;

use super::decode::{self, DecompressionLimit, is_source_error};
use super::parse_options::ParseOptions;

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
