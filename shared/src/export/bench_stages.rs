//! `make bench`'s stage breakdown: the loader's own decode and CSV reader run alone, so the
//! bench shows where a load's time goes. Each stage calls the code the loader runs (no copy
//! that could drift); only what happens after the stage is left out.

use std::io::{self, Read};

use super::decode;
use super::json_rows::{LineFlatten, parse_json_lines_by};
use super::parse::{BatchSink, FileProblem, ParseError, ParseOptions, ParseSummary};
use super::parse_error::io_to_parse_error;

/// Bytes read per call: what the csv reader asks of the decoder (its 64 KiB buffer).
const READ_BYTES: usize = 64 * 1024;

/// Inflate only: decodes `source` as a load does (magic bytes, multi-member gzip, limits, BOM)
/// and drops the text. Returns the decoded bytes.
pub fn inflate_only<R: Read + Send + 'static>(
    source: R,
    opts: &ParseOptions,
) -> Result<u64, ParseError> {
    let mut reader = decoded(source, opts)?;
    let mut buf = vec![0u8; READ_BYTES];
    let mut total = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_to_parse_error(e, 1, opts)),
        }
    }
}

/// Inflate and tokenise: the decoded text read record by record with the CSV parser's reader,
/// nothing checked. Returns the records read, the header included.
pub fn tokenise_only<R: Read + Send + 'static>(
    source: R,
    opts: &ParseOptions,
) -> Result<u64, ParseError> {
    super::csv_rows::tokenise_only(decoded(source, opts)?, opts)
}

/// A JSON-lines export parsed as `parse_export` parses it, each line flattened as `how` says:
/// [`LineFlatten::ThroughValue`] is the parser before issue 21 (a `serde_json::Value` per
/// line), the reference the streaming flatten is tested, fuzzed and benched against.
pub fn parse_json_lines_flattened<R: Read + Send + 'static>(
    source: R,
    opts: &ParseOptions,
    sink: &mut BatchSink<'_>,
    how: LineFlatten,
) -> Result<ParseSummary, ParseError> {
    parse_json_lines_by(decoded(source, opts)?, opts, sink, how)
}

fn decoded<R: Read + Send + 'static>(
    source: R,
    opts: &ParseOptions,
) -> Result<Box<dyn Read + Send>, ParseError> {
    match decode::decode_limited(source, &opts.limits) {
        Ok(Some(d)) => Ok(d.reader),
        Ok(None) => Err(FileProblem::Empty.into()),
        Err(e) => Err(io_to_parse_error(e, 1, opts)),
    }
}
