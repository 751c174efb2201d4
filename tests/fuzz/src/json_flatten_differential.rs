//! The JSON-lines differential check: a case's bytes parsed with the streaming flatten and
//! with the `serde_json::Value` one (the parser before issue 21) must hand over the same
//! batches and end the same way, as events and as profiles. A difference is a finding.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use jiff::tz::TimeZone;
use tapline::export::bench_stages::parse_json_lines_flattened;
use tapline::export::json_rows::LineFlatten;
use tapline::export::parse::{ParseError, ParseOptions};
use tapline::export::{ExportKind, RowBatch};
use tapline::time::TsParser;

/// Decoded text each way may reach: both refuse the same byte, so a bomb costs little.
const MAX_DECODED_BYTES: u64 = 4 << 20;

/// Where the two flattenings of `bytes` part, if they do.
pub fn json_flatten_difference(bytes: &[u8]) -> Option<String> {
    for kind in [ExportKind::Events, ExportKind::Profiles] {
        let mut opts = ParseOptions {
            kind,
            ts: TsParser::new(&TimeZone::UTC, Some(jiff::civil::date(2022, 9, 21))),
            event_name_fallback: Some("Fallback".into()),
            max_columns: 64,
            batch_rows: 100,
            max_record_bytes: 1 << 20,
            limits: Default::default(),
            snapshot_micros: Some(1_663_785_000_000_000),
        };
        opts.limits.max_decompressed_bytes = MAX_DECODED_BYTES;
        let streamed = digest(bytes, &opts, LineFlatten::Streaming);
        let through_value = digest(bytes, &opts, LineFlatten::ThroughValue);
        if streamed != through_value {
            return Some(format!(
                "the streaming JSON flatten differs from the Value one ({kind:?}): {:?} vs {:?}",
                streamed.1, through_value.1
            ));
        }
    }
    None
}

/// A hash of every batch handed over (columns, rows, rejects) and how the parse ended.
fn digest(bytes: &[u8], opts: &ParseOptions, how: LineFlatten) -> (u64, String) {
    let mut hasher = DefaultHasher::new();
    let mut batches = 0u64;
    let end = parse_json_lines_flattened(
        std::io::Cursor::new(bytes.to_vec()),
        opts,
        &mut |b: RowBatch| {
            batches += 1;
            let columns = b.schema().columns();
            columns.hash(&mut hasher);
            for row in b.rows() {
                (row.line, row.ts_micros()).hash(&mut hasher);
                for i in 0..columns.len() {
                    row.value(i).hash(&mut hasher);
                }
            }
            for reject in &b.rejects {
                (reject.line, &reject.column, &reject.reason, &reject.raw).hash(&mut hasher);
            }
            true
        },
        how,
    );
    let end = match end {
        Ok(summary) => format!("{summary:?} in {batches} batches"),
        Err(ParseError::Problem(problem)) => format!("{problem:?}"),
        Err(other) => format!("{other}"),
    };
    (hasher.finish(), end)
}
