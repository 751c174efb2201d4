//! Sweeps: list a location and load every export object the ledger does not have yet, so a lost
//! bucket event never means a lost file. Backfills (`--since`) are sweeps over older dates.
//!
//! The same code serves `tapline sweep`, the export loader's scheduled invocation on Lambda
//! (`{"tapline": "sweep", "uri": "s3://…"}` from EventBridge Scheduler) and `POST /sweep` on
//! Cloud Run (Cloud Scheduler).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use jiff::civil::Date;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::info;

use crate::Error;
use crate::config::LoadConfig;
use crate::export::{Recognition, recognise};
use crate::load::{FileOutcome, FileReport, load_object};
use crate::storage::{ObjectEntry, ObjectSource};
use crate::warehouse::Warehouse;

/// The value of `"tapline"` that marks a scheduled sweep payload.
pub const SWEEP_MARKER: &str = "sweep";

/// A scheduled sweep: `{"tapline": "sweep", "uri": "s3://bucket/prefix", "since": "2022-09-01"}`
/// (`since` optional). On Cloud Run the body of `POST /sweep` is the same without `"tapline"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SweepRequest {
    /// The location to list: `s3://bucket/prefix` or `gs://bucket/prefix`.
    pub uri: String,
    /// Only exports dated on or after this day (objects without a date are always considered).
    #[serde(default)]
    pub since: Option<Date>,
}

impl SweepRequest {
    /// The sweep request a Lambda payload carries, if it is one. `Err` when it is marked as a
    /// sweep but malformed (a configuration mistake in the schedule).
    pub fn from_payload(value: &Value) -> Option<Result<Self, serde_json::Error>> {
        (value.get("tapline").and_then(Value::as_str) == Some(SWEEP_MARKER))
            .then(|| serde_json::from_value(value.clone()))
    }
}

/// Keeps the entries dated on or after `since` (and those whose name carries no date, which
/// the loader reports on itself); returns how many were left out.
pub fn retain_since<T>(
    entries: &mut Vec<T>,
    since: Option<Date>,
    entry: impl Fn(&T) -> &ObjectEntry,
) -> usize {
    let Some(since) = since else { return 0 };
    let before = entries.len();
    entries.retain(|item| match recognise(&entry(item).key) {
        Recognition::Export(export) => export.data_date.is_none_or(|d| d >= since),
        Recognition::Skip(_) => true,
    });
    before - entries.len()
}

/// Counts of a run's outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutcomeCounts {
    /// Loaded now.
    pub loaded: usize,
    /// Already in the ledger: skipped.
    pub already_loaded: usize,
    /// Quarantined (now or before).
    pub quarantined: usize,
    /// Failed; retried by the next event or sweep.
    pub failed: usize,
    /// Not exports.
    pub skipped: usize,
}

impl OutcomeCounts {
    /// Counts `reports`.
    pub fn of(reports: &[FileReport]) -> Self {
        let mut counts = Self::default();
        for report in reports {
            match report.outcome {
                FileOutcome::Loaded(_) => counts.loaded += 1,
                FileOutcome::AlreadyLoaded(_) => counts.already_loaded += 1,
                FileOutcome::Quarantined(_) => counts.quarantined += 1,
                FileOutcome::Failed { .. } => counts.failed += 1,
                FileOutcome::Skipped { .. } => counts.skipped += 1,
            }
        }
        counts
    }

    /// The one line `tapline sweep` prints.
    pub fn sweep_line(&self) -> String {
        format!(
            "Sweep: {} new objects loaded; {} already in the ledger, skipped.",
            self.loaded, self.already_loaded
        )
    }
}

/// What a sweep did.
#[derive(Debug, Clone)]
pub struct SweepReport {
    /// The location swept.
    pub uri: String,
    /// Every considered object's report, in listing order.
    pub reports: Vec<FileReport>,
    /// Objects left out by `since`.
    pub older: usize,
}

impl SweepReport {
    /// Outcome counts.
    pub fn counts(&self) -> OutcomeCounts {
        OutcomeCounts::of(&self.reports)
    }

    /// The failed objects with their errors.
    pub fn failures(&self) -> impl Iterator<Item = (&str, &str)> {
        self.reports.iter().filter_map(|r| match &r.outcome {
            FileOutcome::Failed { error, .. } => Some((r.entry.uri.as_str(), error.as_str())),
            _ => None,
        })
    }

    /// A JSON summary for invocation responses and logs: counts and the failures.
    pub fn to_json(&self) -> Value {
        let c = self.counts();
        let failures: Vec<Value> = self
            .failures()
            .map(|(uri, error)| json!({ "uri": uri, "error": error }))
            .collect();
        json!({
            "uri": self.uri,
            "listed": self.reports.len() + self.older,
            "loaded": c.loaded,
            "already_loaded": c.already_loaded,
            "quarantined": c.quarantined,
            "failed": c.failed,
            "skipped": c.skipped,
            "older_than_since": self.older,
            "failures": failures,
        })
    }
}

/// Lists `request.uri` on `source` and loads, one by one, what the ledger does not have.
/// Errors only when the listing fails; each object's failure is in its report.
pub async fn sweep(
    source: &dyn ObjectSource,
    warehouse: &dyn Warehouse,
    request: &SweepRequest,
    config: &LoadConfig,
) -> Result<SweepReport, Error> {
    let mut entries = source.list(&request.uri).await?;
    let older = retain_since(&mut entries, request.since, |e| e);
    let mut reports = Vec::with_capacity(entries.len());
    for entry in &entries {
        let read = Arc::new(AtomicU64::new(0));
        reports.push(load_object(source, warehouse, entry, config, read).await);
    }
    let report = SweepReport {
        uri: request.uri.clone(),
        reports,
        older,
    };
    let c = report.counts();
    info!(
        uri = %report.uri,
        loaded = c.loaded,
        already_loaded = c.already_loaded,
        quarantined = c.quarantined,
        failed = c.failed,
        skipped = c.skipped,
        "Sweep finished."
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_payloads_are_recognised_by_their_marker() {
        let v: Value =
            serde_json::from_str(r#"{"tapline":"sweep","uri":"s3://b/p/","since":"2022-09-01"}"#)
                .unwrap();
        let request = SweepRequest::from_payload(&v).unwrap().unwrap();
        assert_eq!(request.uri, "s3://b/p/");
        assert_eq!(request.since, Some(jiff::civil::date(2022, 9, 1)));

        let not_sweep: Value = serde_json::from_str(r#"{"Records":[]}"#).unwrap();
        assert!(SweepRequest::from_payload(&not_sweep).is_none());

        let broken: Value = serde_json::from_str(r#"{"tapline":"sweep"}"#).unwrap();
        let err = SweepRequest::from_payload(&broken).unwrap().unwrap_err();
        assert!(err.to_string().contains("missing field `uri`"), "{err}");
    }

    #[test]
    fn since_keeps_newer_exports_and_names_without_a_date() {
        let entry = |key: &str| ObjectEntry {
            uri: format!("s3://b/{key}"),
            key: key.to_string(),
            version: "v".to_string(),
            size: None,
        };
        let mut entries = vec![
            entry("events/1663664837-1663785000-Charged-20220831-0-0.csv.gz"),
            entry("events/1663664837-1663785000-Charged-20220902-0-0.csv.gz"),
            entry("notes.txt"),
        ];
        let older = retain_since(&mut entries, Some(jiff::civil::date(2022, 9, 1)), |e| e);
        assert_eq!(older, 1);
        let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "events/1663664837-1663785000-Charged-20220902-0-0.csv.gz",
                "notes.txt"
            ]
        );
    }
}
