//! The export loader on Lambda: one invocation's payload (an SQS batch, a direct S3 or
//! EventBridge event, or a scheduled sweep) to loads, and the answer Lambda expects.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde_json::{Value, json};
use tracing::warn;

use crate::config::LoadConfig;
use crate::error::error_chain;
use crate::export_loader::invocation::InvocationError;
use crate::export_loader::load::{FileOutcome, FileReport, entry_for, load_object};
use crate::export_loader::sweep::{SweepRequest, sweep};
use crate::storage::ObjectSource;
use crate::triggers::{BatchItemFailures, Invocation, Notice, from_lambda_event};
use crate::warehouse::Warehouse;

/// What an SQS batch came to: every object's report, and the messages to hand back as batch
/// item failures (SQS delivers them again, then to the dead-letter queue).
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Reports of the objects the messages named.
    pub reports: Vec<FileReport>,
    /// Message ids whose objects failed, or whose bodies could not be read.
    pub failed_message_ids: Vec<String>,
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
        let reports = load_notices(source, warehouse, notices, config).await;
        if any_failure(&reports) {
            outcome.failed_message_ids.push(message.message_id);
        }
        outcome.reports.extend(reports);
    }
    outcome
}

/// A scheduled sweep invocation: its summary, or an error when the listing failed or any object
/// failed, so the function's error metric (and its alarm) sees it; failed objects are retried by
/// the next sweep.
async fn sweep_invocation(
    source: &dyn ObjectSource,
    warehouse: &dyn Warehouse,
    request: &SweepRequest,
    config: &LoadConfig,
) -> Result<Value, InvocationError> {
    let report = sweep(source, warehouse, request, config)
        .await
        .map_err(|source| InvocationError::SweepListing {
            uri: request.uri.clone(),
            source,
        })?;
    InvocationError::of_reports(&report.reports)?;
    Ok(report.to_json())
}

/// Loads the objects `notices` announce, one by one, in order (other notices are skipped).
async fn load_notices(
    source: &dyn ObjectSource,
    warehouse: &dyn Warehouse,
    notices: Vec<Notice>,
    config: &LoadConfig,
) -> Vec<FileReport> {
    let mut reports = Vec::new();
    for notice in notices {
        if let Notice::Object(object) = notice {
            let entry = entry_for(&object);
            let read = Arc::new(AtomicU64::new(0));
            reports.push(load_object(source, warehouse, &entry, config, read).await);
        }
    }
    reports
}

/// Whether any of `reports` failed.
fn any_failure(reports: &[FileReport]) -> bool {
    reports
        .iter()
        .any(|r| matches!(r.outcome, FileOutcome::Failed { .. }))
}

/// Handles one Lambda invocation of the export loader. The payload is the JSON the runtime
/// already parsed: it is read once, here, never serialised and parsed again. An SQS batch
/// answers with a partial batch response (`{"batchItemFailures":[{"itemIdentifier":…}]}`), so
/// only failed messages come back; a direct S3 or EventBridge event fails as a whole when any
/// object failed, and so does a sweep. A failure is logged with its kind
/// ([`InvocationError::kind`]: the function's `errorType`).
pub async fn handle_lambda_payload(
    payload: Value,
    source: &dyn ObjectSource,
    warehouse: &dyn Warehouse,
    config: &LoadConfig,
) -> Result<Value, InvocationError> {
    let answer = handle(payload, source, warehouse, config).await;
    if let Err(err) = &answer {
        warn!(kind = err.kind(), retryable = err.is_retryable(), error = %error_chain(err),
              "Invocation failed.");
    }
    answer
}

async fn handle(
    payload: Value,
    source: &dyn ObjectSource,
    warehouse: &dyn Warehouse,
    config: &LoadConfig,
) -> Result<Value, InvocationError> {
    if let Some(request) = SweepRequest::from_payload(&payload) {
        let request = request.map_err(|e| InvocationError::malformed_sweep(&e))?;
        return sweep_invocation(source, warehouse, &request, config).await;
    }
    match from_lambda_event(payload)? {
        Invocation::Sqs(messages) => {
            let outcome = load_sqs_batch(source, warehouse, messages, config).await;
            Ok(BatchItemFailures::of(outcome.failed_message_ids).to_json())
        }
        Invocation::Direct(notices) => {
            let reports = load_notices(source, warehouse, notices, config).await;
            InvocationError::of_reports(&reports)?;
            let outcomes: Vec<Value> = reports
                .iter()
                .map(|r| json!({ "uri": r.entry.uri, "outcome": r.outcome.label() }))
                .collect();
            Ok(json!({ "objects": outcomes }))
        }
    }
}
