//! One page of Get Events or Get Profiles records into the warehouse, through the same JSON
//! parser as JSON exports: the API's records are reshaped to the export's JSON (events:
//! `event_props` → `eventProps`, `session_props` → `sessionProps`; profiles: the Export Center
//! profile shape) and handed to the export parser's per-record body as values (no text in
//! between), so both paths fill the same columns (`profile.identity`, `eventProps.Amount`;
//! a profile's `Email`, `Blood Group`, …).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};
use tracing::info;

use super::PullError;
use crate::export::json_value_text::json_line_bytes;
use crate::export::parse::{DEFAULT_BATCH_ROWS, DEFAULT_MAX_RECORD_BYTES, ParseOptions};
use crate::export::profile_rows::CLEVERTAP_ID_COLUMN;
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

/// Get Profiles record keys.
const PROFILE_DATA_KEY: &str = "profileData";
const PLATFORM_INFO_KEY: &str = "platformInfo";

/// A Get Profiles record in the shape of an Export Center profile JSON record: its top-level
/// keys as given (`identity`, …), each `profileData` entry as a top-level property (one whose
/// name is taken already as `profileData.<name>`), `platformInfo` kept whole as JSON text, and
/// the devices' `objectId`s (CleverTap IDs) as `clevertapIds`, the first as `clevertapId`, so a
/// profile without an identity is keyed by its CleverTap ID as in an export. Anything but an
/// object is left for the parser to reject.
pub fn profile_record_as_export(record: Value) -> Value {
    let Value::Object(mut map) = record else {
        return record;
    };
    let profile_data = map.remove(PROFILE_DATA_KEY);
    let platform_info = map.remove(PLATFORM_INFO_KEY);
    let mut out: Map<String, Value> = map;
    match profile_data {
        Some(Value::Object(data)) => {
            for (key, value) in data {
                let key = if out.contains_key(&key) {
                    format!("{PROFILE_DATA_KEY}.{key}")
                } else {
                    key
                };
                out.insert(key, value);
            }
        }
        Some(other) => {
            out.insert(PROFILE_DATA_KEY.to_string(), other);
        }
        None => {}
    }
    if let Some(info) = platform_info {
        let object_ids: Vec<Value> = info
            .as_array()
            .map(|devices| {
                devices
                    .iter()
                    .filter_map(|d| d.get("objectId").filter(|id| !id.is_null()).cloned())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(first) = object_ids.first()
            && !out.contains_key(CLEVERTAP_ID_COLUMN)
            && !out.contains_key("clevertapIds")
        {
            out.insert(CLEVERTAP_ID_COLUMN.to_string(), first.clone());
            out.insert("clevertapIds".to_string(), Value::Array(object_ids));
        }
        out.insert(
            PLATFORM_INFO_KEY.to_string(),
            Value::String(info.to_string()),
        );
    }
    Value::Object(out)
}

/// Parse options for one page of Get Profiles records: snapshot rows at `snapshot_micros`
/// (the pull's start, epoch microseconds).
pub fn profile_parse_options(snapshot_micros: i64, max_columns: usize) -> ParseOptions {
    ParseOptions {
        kind: ExportKind::Profiles,
        // Profile rows take `ts` from `snapshot_micros`, not from a field.
        ts: TsParser::new(&jiff::tz::TimeZone::UTC, None),
        event_name_fallback: None,
        max_columns,
        batch_rows: DEFAULT_BATCH_ROWS,
        max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        limits: crate::export::ExportLimits::default(),
        snapshot_micros: Some(snapshot_micros),
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
    let reshape = |record| event_record_as_export(record, event);
    let load = PageLoad {
        warehouse,
        object,
        opts,
        max_reject_ratio,
        checkpoint,
    };
    load.run(records, reshape).await
}

/// Loads one page of Get Profiles records as profile snapshot rows (`opts` from
/// [`profile_parse_options`]), each reshaped by [`profile_record_as_export`]: the same
/// exactly-once load, checkpoint and quarantine rules as [`load_event_page`].
pub async fn load_profile_page(
    warehouse: &dyn Warehouse,
    object: &SourceObject,
    records: Vec<Value>,
    opts: ParseOptions,
    max_reject_ratio: f64,
    checkpoint: Option<StateAtCommit>,
) -> Result<PageCounts, PullError> {
    let load = PageLoad {
        warehouse,
        object,
        opts,
        max_reject_ratio,
        checkpoint,
    };
    load.run(records, profile_record_as_export).await
}

/// One page's load, whatever its records are.
struct PageLoad<'a> {
    warehouse: &'a dyn Warehouse,
    object: &'a SourceObject,
    opts: ParseOptions,
    max_reject_ratio: f64,
    checkpoint: Option<StateAtCommit>,
}

impl PageLoad<'_> {
    /// Begins the page's load, reshapes its records (only once the ledger says to load) and
    /// runs them through the parser as values.
    async fn run(
        self,
        records: Vec<Value>,
        reshape: impl Fn(Value) -> Value,
    ) -> Result<PageCounts, PullError> {
        let Self {
            warehouse,
            object,
            opts,
            max_reject_ratio,
            checkpoint,
        } = self;
        let load = match BatchLoad::begin(warehouse, object, false, max_reject_ratio).await {
            Ok(load) => load,
            Err(outcome) => return page_result(object, outcome),
        };
        let records: Vec<Value> = records.into_iter().map(reshape).collect();
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

    #[test]
    fn profile_records_take_the_export_center_shape() {
        // The documented Get Profiles record, with a profileData key that meets a top-level one.
        let record = json!({"identity": "5555555555",
            "profileData": {"favoriteFood": "pizza", "Blood Group": "O+", "identity": "x"},
            "platformInfo": [{"platform": "iOS", "push_token": "95f9", "objectId": "-1a06"},
                {"platform": "Web", "objectId": "a8ffcbc9"}]});
        let info = record["platformInfo"].to_string();
        assert_eq!(
            profile_record_as_export(record),
            json!({"identity": "5555555555", "favoriteFood": "pizza", "Blood Group": "O+",
                "profileData.identity": "x", "clevertapId": "-1a06",
                "clevertapIds": ["-1a06", "a8ffcbc9"], "platformInfo": info})
        );
        assert_eq!(
            profile_record_as_export(json!({"profileData": {"a": 1}})),
            json!({"a": 1})
        );
        assert_eq!(profile_record_as_export(json!("x")), json!("x"));
    }
}
