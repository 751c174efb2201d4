//! One page of Get Events records into the warehouse, through the same JSON parser as JSON
//! exports: the API's nested records are reshaped to the export's JSON (`event_props` →
//! `eventProps`, `session_props` → `sessionProps`) and flattened by the export code path, so
//! both paths fill the same columns (`profile.identity`, `eventProps.Amount`, …).

use std::io::Cursor;

use serde_json::Value;
use tracing::info;

use super::PullError;
use crate::export::parse::{
    DEFAULT_BATCH_ROWS, DEFAULT_MAX_RECORD_BYTES, ParseError, ParseOptions,
};
use crate::export::{DataFormat, EVENT_NAME_COLUMN, ExportKind, RowBatch, parse_export};
use crate::time::TsParser;
use crate::warehouse::{Begin, Committed, Outcome, SourceObject, Warehouse};

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

/// A Get Events record in the shape of a JSON export line, carrying the event name (the API
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
    }
}

/// Loads one page as the source object `object` exactly once: a page the ledger already has
/// (same uri, same pull) is skipped; an empty page still commits, so it replaces the rows an
/// earlier pull had under the same uri.
pub async fn load_event_page(
    warehouse: &dyn Warehouse,
    object: &SourceObject,
    event: &str,
    records: Vec<Value>,
    opts: ParseOptions,
) -> Result<PageCounts, PullError> {
    let mut txn = match warehouse.begin_load(object, false).await? {
        Begin::Done(record) => {
            return Ok(PageCounts {
                rows: record.rows_loaded,
                rejected: record.rows_rejected,
                already_loaded: true,
            });
        }
        Begin::Started(txn) => txn,
    };
    let mut lines = Vec::new();
    for record in records {
        let line = event_record_as_export(record, event);
        serde_json::to_writer(&mut lines, &line).expect("a JSON value serialises");
        lines.push(b'\n');
    }
    let bytes = lines.len() as u64;
    let (batches, parsed) = if lines.is_empty() {
        (Vec::new(), Ok(Default::default()))
    } else {
        // Parsing is synchronous; a page is at most a few MB, so it is parsed whole.
        tokio::task::spawn_blocking(move || {
            let mut batches: Vec<RowBatch> = Vec::new();
            let parsed = parse_export(Cursor::new(lines), DataFormat::Json, &opts, &mut |b| {
                batches.push(b);
                true
            });
            (batches, parsed)
        })
        .await
        .map_err(|e| PullError::Quarantined {
            uri: object.uri.clone(),
            reason: format!("the parser stopped unexpectedly: {e}"),
        })?
    };
    let summary = match parsed {
        Ok(summary) => summary,
        Err(ParseError::Problem(problem)) => {
            let reason = problem.to_string();
            txn.commit(
                Outcome::Quarantined {
                    reason: reason.clone(),
                    bytes,
                    rows: 0,
                    rejected: 0,
                },
                Vec::new(),
            )
            .await?;
            return Err(PullError::Quarantined {
                uri: object.uri.clone(),
                reason,
            });
        }
        Err(e) => {
            return Err(PullError::Quarantined {
                uri: object.uri.clone(),
                reason: e.to_string(),
            });
        }
    };
    let mut rejects = Vec::new();
    for mut batch in batches {
        rejects.append(&mut batch.rejects);
        if batch.row_count() > 0 {
            txn.append(batch).await?;
        }
    }
    let committed = txn
        .commit(
            Outcome::Loaded {
                bytes,
                rows: summary.rows,
                rejected: summary.rejected,
            },
            rejects,
        )
        .await?;
    let already_loaded = matches!(committed, Committed::Theirs(_));
    let record = committed.into_record();
    info!(uri = %record.uri, rows = record.rows_loaded, rejected = record.rows_rejected, already_loaded, "API page loaded.");
    Ok(PageCounts {
        rows: record.rows_loaded,
        rejected: record.rows_rejected,
        already_loaded,
    })
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
