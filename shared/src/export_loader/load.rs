//! The export loader, written once for every source and warehouse: recognise an object, check
//! the ledger, stream it through the parser on a blocking thread while the warehouse appends the
//! batches, then commit the rows and the ledger row together, or quarantine, or fail.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use tracing::info;

use super::batch_load::BatchLoad;
pub use super::batch_load::FileOutcome;
use crate::config::LoadConfig;
use crate::error::chain::error_chain;
use crate::export::decode::SourceReader;
use crate::export::parse::{DEFAULT_BATCH_ROWS, DEFAULT_MAX_RECORD_BYTES};
use crate::export::{ExportKind, ExportObject, ParseOptions, Recognition, parse_export, recognise};
use crate::storage::{ObjectEntry, ObjectSource};
use crate::time::{MICROS_PER_SECOND, TsParser};
use crate::warehouse::SourceObject;
use crate::warehouse::Warehouse;

/// Rejects carried to the warehouse per file; more are counted, not stored.
pub const MAX_REJECTS_PER_FILE: usize = crate::export::limits::MAX_STORED_REJECTS;

/// One object's result, with what the summary needs.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// The object.
    pub entry: ObjectEntry,
    /// How it ended.
    pub outcome: FileOutcome,
    /// Bytes of decoded text parsed (0 when nothing was parsed).
    pub decoded_bytes: u64,
    /// Wall time spent on it.
    pub elapsed: Duration,
}

/// Loads one object exactly once. `read_bytes` counts bytes read from the source as it goes
/// (a progress bar may watch it). Never panics on bad data: every path ends in an outcome.
pub async fn load_object(
    source: &dyn ObjectSource,
    warehouse: &dyn Warehouse,
    entry: &ObjectEntry,
    config: &LoadConfig,
    read_bytes: Arc<AtomicU64>,
) -> FileReport {
    let started = Instant::now();
    let mut decoded_bytes = 0;
    let outcome = match recognise(&entry.key) {
        Recognition::Skip(reason) => {
            info!(uri = %entry.uri, %reason, "Object skipped.");
            FileOutcome::Skipped {
                reason: reason.to_string(),
            }
        }
        Recognition::Export(export) => {
            let snapshot = snapshot_micros(&export, jiff::Timestamp::now());
            let run = load_export(
                source, warehouse, entry, &export, config, read_bytes, snapshot,
            )
            .await;
            decoded_bytes = run.1;
            run.0
        }
    };
    FileReport {
        entry: entry.clone(),
        outcome,
        decoded_bytes,
        elapsed: started.elapsed(),
    }
}

async fn load_export(
    source: &dyn ObjectSource,
    warehouse: &dyn Warehouse,
    entry: &ObjectEntry,
    export: &ExportObject,
    config: &LoadConfig,
    read_bytes: Arc<AtomicU64>,
    snapshot_micros: Option<i64>,
) -> (FileOutcome, u64) {
    let object = SourceObject {
        uri: entry.uri.clone(),
        version: entry.version.clone(),
        bytes: entry.size,
    };
    let mut load = match BatchLoad::begin(
        warehouse,
        &object,
        config.retry_quarantined,
        config.max_reject_ratio,
    )
    .await
    {
        Ok(load) => load,
        Err(outcome) => return (outcome, 0),
    };
    load.record_object_created_at(
        entry
            .plausible_created_at(jiff::Timestamp::now())
            .map(|t| crate::time::format_utc(t.as_second())),
    );
    let reader = match source.open(entry).await {
        Ok(r) => r,
        Err(e) => return (load.fail(error_chain(&e), e.is_retryable()).await, 0),
    };

    let opts = parse_options(export, config, warehouse.max_columns(), snapshot_micros);
    let format = export.format;
    let counter = read_bytes.clone();
    load.run(
        Box::new(move |sink| parse_export(SourceReader::new(reader, counter), format, &opts, sink)),
        read_bytes,
        None,
    )
    .await
}

/// How the loader parses `export` (also what `make bench`'s stages parse with).
pub fn parse_options(
    export: &ExportObject,
    config: &LoadConfig,
    max_columns: usize,
    snapshot_micros: Option<i64>,
) -> ParseOptions {
    ParseOptions {
        kind: export.kind,
        ts: TsParser::new(&config.timezone, export.data_date),
        event_name_fallback: export.event_name_in_name.clone(),
        max_columns,
        batch_rows: DEFAULT_BATCH_ROWS,
        max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        limits: config.limits,
        snapshot_micros,
    }
}

/// A profile export's snapshot instant (epoch microseconds): the export run's time from its
/// name (when it is a time from 1970 to 9999), else `load_started`; `None` for events, whose
/// rows carry their own `ts`.
pub fn snapshot_micros(export: &ExportObject, load_started: jiff::Timestamp) -> Option<i64> {
    /// 9999-12-31T23:59:59Z: every warehouse writes `ts` up to there.
    const LAST_SECOND: i64 = 253_402_300_799;
    (export.kind == ExportKind::Profiles).then(|| match export.run_timestamp {
        Some(seconds) if (0..=LAST_SECOND).contains(&seconds) => seconds * MICROS_PER_SECOND,
        _ => load_started.as_microsecond(),
    })
}

/// The object an event announced, as a source entry. Its version is the event's (ETag or
/// generation), so the ledger key matches what a listing would give.
pub fn entry_for(object: &crate::triggers::ObjectRef) -> ObjectEntry {
    ObjectEntry {
        uri: object.uri(),
        key: object.key.clone(),
        version: object.version.clone().unwrap_or_default(),
        size: object.size,
        created_at: object.created_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export(key: &str) -> ExportObject {
        match recognise(key) {
            Recognition::Export(export) => export,
            Recognition::Skip(reason) => panic!("{key}: {reason}"),
        }
    }

    #[test]
    fn a_profile_snapshot_is_at_the_run_time_of_its_name_else_the_load_start() {
        let started = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let legacy = export("100000000-55-1663785000-0-csv.gz");
        assert_eq!(
            snapshot_micros(&legacy, started),
            Some(1_663_785_000_000_000)
        );
        let mut nameless = legacy.clone();
        nameless.run_timestamp = None;
        assert_eq!(
            snapshot_micros(&nameless, started),
            Some(1_800_000_000_000_000)
        );
        // A run time no warehouse can write (past 9999) is not trusted either.
        nameless.run_timestamp = Some(999_999_999_999);
        assert_eq!(
            snapshot_micros(&nameless, started),
            Some(1_800_000_000_000_000)
        );
        let events = export("1663664837-1663785000-Charged-20220921-0-0.csv.gz");
        assert_eq!(snapshot_micros(&events, started), None);
    }
}
