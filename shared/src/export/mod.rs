//! CleverTap export files: recognising names, decoding bytes, parsing rows and validating them.
//!
//! Everything here is synchronous over `impl Read` (or over JSON values already in memory, for
//! API pages): the async edges (S3, GCS, a warehouse) only move bytes and batches, so memory
//! stays flat however large an export is.

pub mod batcher;
#[doc(hidden)]
pub mod bench_stages;
pub mod column_kind;
pub mod csv_rows;
pub mod decode;
mod json_line_flatten;
pub mod json_rows;
pub mod json_value_text;
pub mod limits;
pub mod object_name;
#[cfg(feature = "parquet")]
pub(crate) mod parquet_checks;
#[cfg(feature = "parquet")]
pub mod parquet_rows;
pub mod parse;
pub mod parse_error;
pub mod parse_options;
pub mod profile_rows;
pub(crate) mod row_checks;
pub mod rows;

pub use limits::ExportLimits;
pub use object_name::{DataFormat, ExportKind, ExportObject, Recognition, SkipReason, recognise};
pub use parse::{FileProblem, ParseOptions, ParseSummary, parse_export, parse_json_values};
pub use rows::{KindRun, Reject, Row, RowBatch, Schema};

/// The raw CleverTap name of the event time column.
pub const TS_COLUMN: &str = "ts";
/// The raw CleverTap name of the event name column.
pub const EVENT_NAME_COLUMN: &str = "eventName";

/// The key profile snapshot rows are routed by, in the place of an event name (the warehouse
/// catalog files their table, `profile_snapshots`, under it). CleverTap allows no `$` in event
/// names, and the row checks refuse an event of this name, so no event file can reach that
/// table.
pub const PROFILE_SNAPSHOTS_KEY: &str = "$profiles";
/// Raw name of a profile snapshot's key column: the identity, else the CleverTap id.
pub const PROFILE_IDENTITY_COLUMN: &str = "identity";
/// Raw name of a profile snapshot's attribute hash (16 hex digits): equal hashes, same attributes.
pub const PROFILE_HASH_COLUMN: &str = "_profile_hash";
/// Raw name of a profile snapshot's whole record, as compact JSON.
pub const PROFILE_RECORD_COLUMN: &str = "_record";

/// The 21 fixed leading columns of CleverTap's legacy event CSV export, as documented; event
/// and session property columns follow them and vary per file.
pub const FIXED_EVENT_COLUMNS: [&str; 21] = [
    "ts",
    "eventName",
    "profile.identity",
    "profile.objectId",
    "profile.all_identities",
    "profile.platform",
    "profile.phone",
    "profile.name",
    "profile.email",
    "profile.push_token",
    "deviceInfo.make",
    "deviceInfo.model",
    "deviceInfo.appVersion",
    "deviceInfo.sdkVersion",
    "deviceInfo.osVersion",
    "deviceInfo.browser",
    "deviceInfo.dpi",
    "deviceInfo.dimensions.width",
    "deviceInfo.dimensions.height",
    "deviceInfo.dimensions.unit",
    "controlGroupName",
];
