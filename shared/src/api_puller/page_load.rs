//! One page of Get Events records into the warehouse, through the same JSON parser as JSON
//! exports: the API's nested records are reshaped to the export's JSON (`event_props` →
//! `eventProps`, `session_props` → `sessionProps`) and handed to the export parser's per-record
//! body as values (no text in between), so both paths fill the same columns
//! (`profile.identity`, `eventProps.Amount`, …).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tracing::info;

use super::PullError;
use crate::export::json_value_text::json_line_bytes;
use crate::export::parse::{DEFAULT_BATCH_ROWS, DEFAULT_MAX_RECORD_BYTES, ParseOptions};
use crate::export::{EVENT_NAME_COLUMN, ExportKind, parse_json_values};
use crate::export_loader::batch_load::{BatchLoad, FileOutcome, Parse, StateAtCommit};
use crate::time::TsParser;
use crate::warehouse::{LoadRecord, SourceObject, Warehouse};

/// API record keys and the export names of the same data.
const API_TO_EXPORT_KEYS: [(&str, &str); 2] = [
    ("event_props", "eventProps"),
    ("session_props", "sessionProps"),
];

/// What one page came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageCounts {
    /// Rows loaded.
    pub rows: u64,
    /// Rows rejected (in `_tapline_rejects` with their reasons).
    pub rejected: u64,
    /// The ledger had this page of this pull already (a resumed run, or a concurrent pull that
    /// committed it first): nothing was written.
    pub already_loaded: bool,
}

/// A Get Events record in the shape of a JSON export record, carrying the event name (the API
/// does not repeat it per record). Anything but an object is left for the parser to reject.
pub fn event_record_as_export(record: Value, event: &str) -> Value {
    match record {
        Value::Object(mut map) => {
            for (api, export) in API_TO_EXPORT_KEYS {
                if let Some(value) = map.remove(api) {
                    map.insert(export.to_string(), value);
                }
            }
            map.insert(
                EVENT_NAME_COLUMN.to_string(),
                Value::String(event.to_string()),
            );
            Value::Object(map)
        }
        other => other,
    }
}

/// Parse options for one day of one event's API records.
pub fn event_parse_options(
    event: &str,
    timezone: &jiff::tz::TimeZone,
    day: jiff::civil::Date,
    max_columns: usize,
) -> ParseOptions {
    ParseOptions {
        kind: ExportKind::Events,
        ts: TsParser::new(timezone, Some(day)),
        event_name_fallback: Some(event.to_string()),
        max_columns,
        batch_rows: DEFAULT_BATCH_ROWS,
        max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        limits: crate::export::ExportLimits::default(),
        snapshot_micros: None,
    }
}

/// Loads one page as the source object `object` exactly once, through the export loader's
/// batch-load path: a page the ledger already has (same uri, same pull) is skipped; an empty
/// page still commits, so it replaces the rows an earlier pull had under the same uri.
/// `checkpoint`, when given, is the slice's checkpoint past this page, written in the page's
/// own transaction when the page commits as loaded: rows and checkpoint cannot part. A page
/// it does not write (already loaded, or committed by another loader first) comes back with
/// `already_loaded`; its checkpoint is the caller's to save.
///
/// The records go to the parser as values; the page's size in the ledger is its records' size
/// as JSON lines, counted rather than written ([`json_line_bytes`]), as is each record's size
/// held to the record limit. A page is judged like an export file: its first
/// [`crate::warehouse::MAX_STORED_REJECTS`] rejects are stored; a page whose reject share is
/// above `max_reject_ratio` (or that cannot be parsed as a whole) is quarantined, with no rows,
/// and ends in [`PullError::Quarantined`], so the slice stops there and its checkpoint does not
/// move past it (a later run meets the quarantined ledger row and stops again rather than
/// skipping the page's records); a failed load is recorded in the ledger as failed and ends in
/// [`PullError::Load`].
pub async fn load_event_page(
    warehouse: &dyn Warehouse,
    object: &SourceObject,
    event: &str,
    records: Vec<Value>,
    opts: ParseOptions,
    max_reject_ratio: f64,
    checkpoint: Option<StateAtCommit>,
) -> Result<PageCounts, PullError> {
    let load = match BatchLoad::begin(warehouse, object, false, max_reject_ratio).await {
        Ok(load) => load,
        Err(outcome) => return page_result(object, outcome),
    };
    let records: Vec<Value> = records
        .into_iter()
        .map(|record| event_record_as_export(record, event))
        .collect();
    let bytes = Arc::new(AtomicU64::new(0));
    let page_bytes = bytes.clone();
    // An empty page parses to an empty summary: a page with no records, not an empty
    // (quarantined) export.
    let parse: Parse = Box::new(move |sink| {
        let parsed = parse_json_values(&records, &opts, sink);
        // The whole page's size, also when a record stopped the parse part way.
        let size = match &parsed {
            Ok(summary) => summary.decoded_bytes,
            Err(_) => records.iter().map(json_line_bytes).sum(),
        };
        page_bytes.store(size, Ordering::Relaxed);
        parsed
    });
    let (outcome, _) = load.run(parse, bytes, checkpoint).await;
    page_result(object, outcome)
}

/// A page's load outcome as the pull sees it.
fn page_result(object: &SourceObject, outcome: FileOutcome) -> Result<PageCounts, PullError> {
    let counts = |record: LoadRecord, already_loaded| PageCounts {
        rows: record.rows_loaded,
        rejected: record.rows_rejected,
        already_loaded,
    };
    match outcome {
        FileOutcome::Loaded(record) => {
            info!(uri = %record.uri, rows = record.rows_loaded, rejected = record.rows_rejected, "API page loaded.");
            Ok(counts(record, false))
        }
        FileOutcome::AlreadyLoaded(record) => Ok(counts(record, true)),
        FileOutcome::Quarantined(record) => Err(PullError::Quarantined {
            uri: object.uri.clone(),
            reason: record.error.unwrap_or_default(),
        }),
        FileOutcome::Failed { error, retryable } => Err(PullError::Load {
            uri: object.uri.clone(),
            error,
            retryable,
        }),
        // Only an export's recognition skips; a page is never skipped.
        FileOutcome::Skipped { reason } => Err(PullError::Load {
            uri: object.uri.clone(),
            error: reason,
            retryable: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_records_take_the_export_names() {
        let record = json!({
            "profile": {"objectId": "a8ff", "identity": "5555", "profileData": {"favoriteColor": "blue"}},
            "ts": 20151023140416u64,
            "event_props": {"value": "pizza"},
            "session_props": {"utm_source": "Foo"}
        });
        let line = event_record_as_export(record, "Charged");
        assert_eq!(
            line,
            json!({
                "profile": {"objectId": "a8ff", "identity": "5555", "profileData": {"favoriteColor": "blue"}},
                "ts": 20151023140416u64,
                "eventProps": {"value": "pizza"},
                "sessionProps": {"utm_source": "Foo"},
                "eventName": "Charged"
            })
        );
        assert_eq!(event_record_as_export(json!([1]), "Charged"), json!([1]));
    }
}
