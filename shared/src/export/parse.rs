//! From a decoded export, or from records already held as JSON values (an API page), to
//! validated row batches: the part of the loader that knows what a good CleverTap row is. Pure
//! and synchronous; the caller decides where batches go.

use std::io::Read;

use serde_json::Value;

use super::decode;
use super::object_name::DataFormat;
use super::{csv_rows, json_rows};

use super::parse_error::io_to_parse_error;

// What `parse_export` takes and returns, so that callers name one module.
pub use super::batcher::{BatchSink, ParseSummary};
pub use super::parse_error::{FileProblem, ParseError};
pub use super::parse_options::{DEFAULT_BATCH_ROWS, DEFAULT_MAX_RECORD_BYTES, ParseOptions};

/// Decodes, parses and validates an export, handing batches of rows and rejects to `sink`:
/// event rows, or profile snapshot rows ([`RowBatch::for_profiles`](super::RowBatch)) when
/// `opts.kind` is profiles (CSV, JSON lines or Parquet).
/// The reject ratio is not judged here: the caller compares the summary with its threshold.
pub fn parse_export<R: Read + Send + 'static>(
    source: R,
    format: DataFormat,
    opts: &ParseOptions,
    sink: &mut BatchSink<'_>,
) -> Result<ParseSummary, ParseError> {
    let decoded = match decode::decode_limited(source, &opts.limits) {
        Ok(Some(d)) => d,
        Ok(None) => return Err(FileProblem::Empty.into()),
        Err(e) => return Err(io_to_parse_error(e, 1, opts)),
    };
    match format {
        DataFormat::Csv => csv_rows::parse_csv(decoded.reader, opts, sink),
        DataFormat::Json => json_rows::parse_json_lines(decoded.reader, opts, sink),
        #[cfg(feature = "parquet")]
        DataFormat::Parquet => super::parquet_rows::parse_parquet(decoded.reader, opts, sink),
        #[cfg(not(feature = "parquet"))]
        DataFormat::Parquet => Err(FileProblem::Unsupported(
            "this build reads no Parquet exports (cargo feature `parquet`)".to_string(),
        )
        .into()),
    }
}

/// Parses and validates records already held as JSON values (an API page's records, in the
/// export's shape) through the JSON export parser's per-record body, with no text in between:
/// the same rows, column names, rejects (a rejected record's raw text is its compact JSON) and
/// limits as [`parse_export`] gives for the records written one per line, record `n` being
/// line `n`; a record's size is counted, not written. Unlike a file's first line, a first
/// record that is a bare string or number is rejected, not read as the event's name. No
/// records is an empty summary, not an empty file. With `opts.kind` profiles the records are
/// profiles in the Export Center JSON shape and become snapshot rows.
pub fn parse_json_values<'r>(
    records: impl IntoIterator<Item = &'r Value>,
    opts: &ParseOptions,
    sink: &mut BatchSink<'_>,
) -> Result<ParseSummary, ParseError> {
    json_rows::parse_json_values(records, opts, sink)
}
