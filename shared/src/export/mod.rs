//! CleverTap export files: recognising names, decoding bytes, parsing rows and validating them.
//!
//! Everything here is synchronous over `impl Read`: the async edges (S3, GCS, a warehouse) only
//! move bytes and batches, so memory stays flat however large an export is.

pub mod csv_rows;
pub mod decode;
pub mod json_rows;
pub mod object_name;
pub mod parse;
pub mod rows;

pub use object_name::{DataFormat, ExportKind, ExportObject, Recognition, SkipReason, recognise};
pub use parse::{FileProblem, ParseOptions, ParseSummary, parse_export};
pub use rows::{Reject, Row, RowBatch, Schema};

/// The raw CleverTap name of the event time column.
pub const TS_COLUMN: &str = "ts";
/// The raw CleverTap name of the event name column.
pub const EVENT_NAME_COLUMN: &str = "eventName";
