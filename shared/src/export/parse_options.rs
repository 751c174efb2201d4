//! What the CSV and JSON parsers need to know about a file and the project, and the defaults
//! every caller starts from.

use super::limits::ExportLimits;
use super::object_name::ExportKind;
use crate::time::TsParser;

/// Rows per batch handed to the warehouse: large enough to amortise a transaction round trip,
/// small enough that memory stays flat.
pub const DEFAULT_BATCH_ROWS: usize = 4096;
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
    /// Profiles: the snapshot instant every row gets as `ts` (epoch microseconds): the export
    /// run's time from the object name, else the load's start; the pull's start for API pages.
    /// `None` for events (their `ts` is each row's own).
    pub snapshot_micros: Option<i64>,
}
