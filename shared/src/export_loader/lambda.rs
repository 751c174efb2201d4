//! The export loader on AWS Lambda: one invocation's payload, as the runtime parsed it, to its
//! answer. An SQS batch answers with a partial batch response; a direct S3 or EventBridge event
//! fails as a whole when an object failed; `{"tapline": "sweep", …}` (EventBridge Scheduler)
//! runs a sweep.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde_json::{Value, json};

use crate::config::LoadConfig;
use crate::export_loader::load::{FileOutcome, FileReport, entry_for, load_object, load_sqs_batch};
use crate::export_loader::sweep::{SweepRequest, sweep};
use crate::storage::ObjectSource;
use crate::triggers::{BatchItemFailures, Invocation, Notice, TriggerError, from_lambda_event};
use crate::warehouse::Warehouse;

/// Why an invocation failed as a whole: Lambda retries it.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    /// The payload is not an event Tapline understands.
    #[error(transparent)]
    Payload(#[from] TriggerError),
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

/// Handles one Lambda invocation of the export loader. The payload is the JSON the runtime
/// already parsed: it is read once, here, never serialised and parsed again.
pub async fn handle_lambda_payload(
    payload: Value,
    source: &dyn ObjectSource,
    warehouse: &dyn Warehouse,
    config: &LoadConfig,
) -> Result<Value, InvocationError> {
    if let Some(request) = SweepRequest::from_payload(&payload) {
        let request = request.map_err(|e| {
            InvocationError::Payload(TriggerError::Unrecognised(format!("sweep payload: {e}")))
        })?;
        return sweep_invocation(source, warehouse, &request, config).await;
    }
    match from_lambda_event(payload)? {
        Invocation::Sqs(messages) => {
            let outcome = load_sqs_batch(source, warehouse, messages, config).await;
            Ok(BatchItemFailures::of(outcome.failed_message_ids).to_json())
        }
        Invocation::Direct(notices) => direct_invocation(source, warehouse, notices, config).await,
    }
}

/// A direct S3 or EventBridge event: every announced object loaded, or an error naming the
/// first that failed.
async fn direct_invocation(
    source: &dyn ObjectSource,
    warehouse: &dyn Warehouse,
    notices: Vec<Notice>,
    config: &LoadConfig,
) -> Result<Value, InvocationError> {
    let mut reports = Vec::new();
    for notice in notices {
        if let Notice::Object(object) = notice {
            let entry = entry_for(&object);
            let read = Arc::new(AtomicU64::new(0));
            reports.push(load_object(source, warehouse, &entry, config, read).await);
        }
    }
    let failed: Vec<(&FileReport, &String)> = reports
        .iter()
        .filter_map(|r| match &r.outcome {
            FileOutcome::Failed { error, .. } => Some((r, error)),
            _ => None,
        })
        .collect();
    if let Some((first, error)) = failed.first() {
        return Err(InvocationError::Loads {
            failed: failed.len(),
            total: reports.len(),
            first: format!("{}: {error}", first.entry.uri),
        });
    }
    let outcomes: Vec<Value> = reports
        .iter()
        .map(|r| json!({ "uri": r.entry.uri, "outcome": r.outcome.label() }))
        .collect();
    Ok(json!({ "objects": outcomes }))
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
