//! The export loader, written once for every source and warehouse: recognise an object, check
//! the ledger, stream it through the parser on a blocking thread while the warehouse appends the
//! batches, then commit the rows and the ledger row together, or quarantine, or fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::config::LoadConfig;
use crate::export::decode::SourceReader;
use crate::export::parse::{
    DEFAULT_BATCH_ROWS, DEFAULT_MAX_RECORD_BYTES, FileProblem, ParseError, ParseSummary,
};
use crate::export::{
    ExportKind, ExportObject, ParseOptions, Recognition, Reject, RowBatch, parse_export, recognise,
};
use crate::storage::{ObjectEntry, ObjectSource};
use crate::time::TsParser;
use crate::warehouse::{
    Begin, Committed, LoadRecord, LoadStatus, Outcome, SourceObject, Warehouse,
};

/// Rejects carried to the warehouse per file; more are counted, not stored.
pub const MAX_REJECTS_PER_FILE: usize = crate::export::limits::MAX_STORED_REJECTS;

/// Batches in flight between the parser and the warehouse: enough to keep both busy, few
/// enough that memory stays flat.
const BATCHES_IN_FLIGHT: usize = 4;

/// How one object ended.
#[derive(Debug, Clone, PartialEq)]
pub enum FileOutcome {
    /// Rows committed now.
    Loaded(LoadRecord),
    /// This version was loaded before (or replaced since): nothing done.
    AlreadyLoaded(LoadRecord),
    /// Quarantined now, or before (`record.attempts` tells): no rows appended.
    Quarantined(LoadRecord),
    /// The attempt failed; `retryable` says whether trying again later may work.
    Failed {
        /// What went wrong, with its causes.
        error: String,
        /// Whether a retry may succeed.
        retryable: bool,
    },
    /// Not a CleverTap export (or a format this build does not load).
    Skipped {
        /// Why.
        reason: String,
    },
}

impl FileOutcome {
    /// A short word for tables and logs.
    pub fn label(&self) -> &'static str {
        match self {
            FileOutcome::Loaded(_) => "loaded",
            FileOutcome::AlreadyLoaded(_) => "already loaded",
            FileOutcome::Quarantined(_) => "quarantined",
            FileOutcome::Failed { .. } => "failed",
            FileOutcome::Skipped { .. } => "skipped",
        }
    }

    /// Whether this outcome leaves the object correctly in the warehouse (or not an export).
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            FileOutcome::Loaded(_) | FileOutcome::AlreadyLoaded(_) | FileOutcome::Skipped { .. }
        )
    }
}

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

/// Renders an error with its chain of causes: `warehouse insert failed: disk I/O error`.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
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
        Recognition::Export(export) if export.kind == ExportKind::Profiles => {
            // Profiles merge by identity into `profiles`, a different write than event appends;
            // until that lands they are left alone rather than quarantined as bad files.
            info!(uri = %entry.uri, "Profile export skipped.");
            FileOutcome::Skipped {
                reason: "profile exports are not loaded yet".to_string(),
            }
        }
        Recognition::Export(export) => {
            let run = load_export(source, warehouse, entry, &export, config, read_bytes).await;
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
) -> (FileOutcome, u64) {
    let object = SourceObject {
        uri: entry.uri.clone(),
        version: entry.version.clone(),
        bytes: entry.size,
    };
    let failed = |error: String, retryable: bool| FileOutcome::Failed { error, retryable };
    let mut txn = match warehouse
        .begin_load(&object, config.retry_quarantined)
        .await
    {
        Ok(Begin::Started(txn)) => txn,
        Ok(Begin::Done(record)) => {
            info!(uri = %object.uri, status = %record.status, "Object already handled.");
            return (handled_before(record), 0);
        }
        Err(e) => return (failed(error_chain(&e), e.is_retryable()), 0),
    };
    let reader = match source.open(entry).await {
        Ok(r) => r,
        Err(e) => {
            drop(txn);
            let outcome = failed(error_chain(&e), e.is_retryable());
            record_failure(warehouse, &object, &outcome).await;
            return (outcome, 0);
        }
    };

    let opts = ParseOptions {
        kind: export.kind,
        ts: TsParser::new(&config.timezone, export.data_date),
        event_name_fallback: export.event_name_in_name.clone(),
        max_columns: warehouse.max_columns(),
        batch_rows: DEFAULT_BATCH_ROWS,
        max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        limits: config.limits,
    };
    let format = export.format;
    let counter = read_bytes.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<RowBatch>(BATCHES_IN_FLIGHT);
    let parser = tokio::task::spawn_blocking(move || {
        parse_export(
            SourceReader::new(reader, counter),
            format,
            &opts,
            &mut |batch| tx.blocking_send(batch).is_ok(),
        )
    });

    let mut rejects: Vec<Reject> = Vec::new();
    let mut append_error = None;
    while let Some(mut batch) = rx.recv().await {
        let room = MAX_REJECTS_PER_FILE.saturating_sub(rejects.len());
        rejects.extend(batch.rejects.drain(..).take(room));
        if batch.row_count() == 0 {
            continue;
        }
        if let Err(e) = txn.append(batch).await {
            append_error = Some(e);
            break;
        }
    }
    // Closing the channel stops a parser still running after an append failed.
    drop(rx);
    let parsed = parser.await;
    let bytes = read_bytes.load(Ordering::Relaxed);

    if let Some(e) = append_error {
        drop(txn);
        let outcome = failed(error_chain(&e), e.is_retryable());
        record_failure(warehouse, &object, &outcome).await;
        return (outcome, 0);
    }
    let summary = match parsed {
        Ok(Ok(summary)) => Ok(summary),
        Ok(Err(ParseError::Problem(problem))) => Err(problem),
        Ok(Err(e @ (ParseError::Source(_) | ParseError::Stopped))) => {
            drop(txn);
            let outcome = failed(error_chain(&e), true);
            record_failure(warehouse, &object, &outcome).await;
            return (outcome, 0);
        }
        Err(join) => {
            drop(txn);
            let outcome = failed(format!("the parser stopped unexpectedly: {join}"), false);
            record_failure(warehouse, &object, &outcome).await;
            return (outcome, 0);
        }
    };
    let (result, decoded) = match summary {
        Ok(s) => {
            let decoded = s.decoded_bytes;
            match judge(&s, config.max_reject_ratio) {
                None => (
                    Outcome::Loaded {
                        bytes,
                        rows: s.rows,
                        rejected: s.rejected,
                    },
                    decoded,
                ),
                Some(problem) => (quarantine(problem, bytes, &s), decoded),
            }
        }
        Err(problem) => (quarantine(problem, bytes, &ParseSummary::default()), 0),
    };
    let quarantined = matches!(result, Outcome::Quarantined { .. });
    match txn.commit(result, rejects).await {
        Ok(Committed::Theirs(record)) => {
            info!(uri = %record.uri, status = %record.status, "Another loader committed this version first; this load's rows were discarded.");
            (handled_before(record), 0)
        }
        Ok(Committed::Ours(record)) if quarantined => {
            warn!(uri = %record.uri, reason = record.error.as_deref().unwrap_or(""), "Export quarantined.");
            (FileOutcome::Quarantined(record), decoded)
        }
        Ok(Committed::Ours(record)) => {
            info!(uri = %record.uri, rows = record.rows_loaded, rejected = record.rows_rejected, "Export loaded.");
            (FileOutcome::Loaded(record), decoded)
        }
        Err(e) => {
            let outcome = failed(error_chain(&e), e.is_retryable());
            record_failure(warehouse, &object, &outcome).await;
            (outcome, 0)
        }
    }
}

/// The outcome of a version some earlier (or concurrent) load already handled.
fn handled_before(record: LoadRecord) -> FileOutcome {
    match record.status {
        LoadStatus::Quarantined => FileOutcome::Quarantined(record),
        _ => FileOutcome::AlreadyLoaded(record),
    }
}

/// Whether a file's reject share is above the threshold.
fn judge(summary: &ParseSummary, max_reject_ratio: f64) -> Option<FileProblem> {
    let total = summary.total();
    let too_many = total > 0 && summary.rejected as f64 > max_reject_ratio * total as f64;
    too_many.then_some(FileProblem::TooManyRejects {
        rejected: summary.rejected,
        total,
        threshold: max_reject_ratio,
    })
}

fn quarantine(problem: FileProblem, bytes: u64, summary: &ParseSummary) -> Outcome {
    Outcome::Quarantined {
        reason: problem.to_string(),
        bytes,
        rows: summary.rows,
        rejected: summary.rejected,
    }
}

async fn record_failure(warehouse: &dyn Warehouse, object: &SourceObject, outcome: &FileOutcome) {
    let FileOutcome::Failed { error, retryable } = outcome else {
        return;
    };
    warn!(uri = %object.uri, %error, retryable, "Export load failed.");
    if let Err(e) = warehouse.record_failure(object, error).await {
        // The warehouse is what failed, most likely: the next attempt records it.
        warn!(uri = %object.uri, error = %error_chain(&e), "Could not record the failure in the ledger.");
    }
}

/// What an SQS batch came to: every object's report, and the messages to hand back as batch
/// item failures (SQS delivers them again, then to the dead-letter queue).
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Reports of the objects the messages named.
    pub reports: Vec<FileReport>,
    /// Message ids whose objects failed, or whose bodies could not be read.
    pub failed_message_ids: Vec<String>,
}

/// The object an event announced, as a source entry. Its version is the event's (ETag or
/// generation), so the ledger key matches what a listing would give.
pub fn entry_for(object: &crate::triggers::ObjectRef) -> ObjectEntry {
    ObjectEntry {
        uri: object.uri(),
        key: object.key.clone(),
        version: object.version.clone().unwrap_or_default(),
        size: object.size,
    }
}

/// Loads what each message of an SQS batch announces. A quarantined file is handled (its
/// message is done); a failed load or an unreadable body fails its message alone.
pub async fn load_sqs_batch(
    source: &dyn ObjectSource,
    warehouse: &dyn Warehouse,
    messages: Vec<crate::triggers::SqsMessage>,
    config: &LoadConfig,
) -> BatchOutcome {
    let mut outcome = BatchOutcome::default();
    for message in messages {
        let notices = match message.notices {
            Ok(n) => n,
            Err(e) => {
                warn!(message_id = %message.message_id, error = %error_chain(&e), "Message not understood.");
                outcome.failed_message_ids.push(message.message_id);
                continue;
            }
        };
        let mut failed = false;
        for notice in notices {
            let crate::triggers::Notice::Object(object) = notice else {
                continue;
            };
            let entry = entry_for(&object);
            let report = load_object(
                source,
                warehouse,
                &entry,
                config,
                Arc::new(AtomicU64::new(0)),
            )
            .await;
            failed |= matches!(report.outcome, FileOutcome::Failed { .. });
            outcome.reports.push(report);
        }
        if failed {
            outcome.failed_message_ids.push(message.message_id);
        }
    }
    outcome
}

/// Why a direct (non-SQS) invocation failed as a whole: Lambda retries it.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    /// The payload is not an event Tapline understands.
    #[error(transparent)]
    Payload(#[from] crate::triggers::TriggerError),
    /// At least one announced object failed to load.
    #[error("{failed} of {total} objects failed: {first}")]
    Loads {
        /// Objects that failed.
        failed: usize,
        /// Objects announced.
        total: usize,
        /// The first failure.
        first: String,
    },
    /// A scheduled sweep could not list its location.
    #[error("sweep of {uri} could not list it")]
    SweepListing {
        /// The location.
        uri: String,
        /// Why.
        #[source]
        source: crate::Error,
    },
}

/// A scheduled sweep invocation: its summary, or an error when the listing failed or any object
/// failed, so the function's error metric (and its alarm) sees it; failed objects are retried by
/// the next sweep.
async fn sweep_invocation(
    source: &dyn ObjectSource,
    warehouse: &dyn Warehouse,
    request: &crate::export_loader::sweep::SweepRequest,
    config: &LoadConfig,
) -> Result<serde_json::Value, InvocationError> {
    let report = crate::export_loader::sweep::sweep(source, warehouse, request, config)
        .await
        .map_err(|source| InvocationError::SweepListing {
            uri: request.uri.clone(),
            source,
        })?;
    let counts = report.counts();
    if let Some((uri, error)) = report.failures().next() {
        return Err(InvocationError::Loads {
            failed: counts.failed,
            total: report.reports.len(),
            first: format!("{uri}: {error}"),
        });
    }
    Ok(report.to_json())
}

/// Handles one Lambda invocation of the export loader. An SQS batch answers with a partial
/// batch response (`{"batchItemFailures":[{"itemIdentifier":…}]}`), so only failed messages
/// come back; a direct S3 or EventBridge event fails as a whole when any object failed.
pub async fn handle_lambda_payload(
    payload: &[u8],
    source: &dyn ObjectSource,
    warehouse: &dyn Warehouse,
    config: &LoadConfig,
) -> Result<serde_json::Value, InvocationError> {
    use crate::triggers::{Invocation, Notice, from_lambda_payload};
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(payload)
        && let Some(request) = crate::export_loader::sweep::SweepRequest::from_payload(&value)
    {
        let request = request.map_err(|e| {
            InvocationError::Payload(crate::triggers::TriggerError::Unrecognised(format!(
                "sweep payload: {e}"
            )))
        })?;
        return sweep_invocation(source, warehouse, &request, config).await;
    }
    match from_lambda_payload(payload)? {
        Invocation::Sqs(messages) => {
            let outcome = load_sqs_batch(source, warehouse, messages, config).await;
            Ok(crate::triggers::batch_item_failures(
                &outcome.failed_message_ids,
            ))
        }
        Invocation::Direct(notices) => {
            let mut reports = Vec::new();
            for notice in notices {
                if let Notice::Object(object) = notice {
                    let entry = entry_for(&object);
                    let read = Arc::new(AtomicU64::new(0));
                    reports.push(load_object(source, warehouse, &entry, config, read).await);
                }
            }
            let failed: Vec<&FileReport> = reports
                .iter()
                .filter(|r| matches!(r.outcome, FileOutcome::Failed { .. }))
                .collect();
            if let Some(first) = failed.first() {
                let FileOutcome::Failed { error, .. } = &first.outcome else {
                    unreachable!("filtered on Failed")
                };
                return Err(InvocationError::Loads {
                    failed: failed.len(),
                    total: reports.len(),
                    first: format!("{}: {error}", first.entry.uri),
                });
            }
            let outcomes: Vec<serde_json::Value> = reports
                .iter()
                .map(|r| serde_json::json!({ "uri": r.entry.uri, "outcome": r.outcome.label() }))
                .collect();
            Ok(serde_json::json!({ "objects": outcomes }))
        }
    }
}
