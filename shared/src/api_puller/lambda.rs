//! The API puller on AWS Lambda, invoked by EventBridge Scheduler with `{"tapline":"pull"}`: the
//! invocation's payload (already JSON, parsed once by the runtime) to a summary, or to a failure
//! named for the Scheduler's retries and CloudWatch metric filters.

use serde_json::Value;
use tracing::{info, warn};

use super::jobs::PullService;

/// A failed invocation as Lambda reports it (`errorType`, `errorMessage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaFailure {
    /// `InvalidPullPayload`, `InvalidPullSettings`, `PullFailedRetryable` or `PullFailed`
    /// (see [`super::jobs::PullInvocationError::kind`]).
    pub error_type: String,
    /// The error with its cause chain.
    pub error_message: String,
}

/// Runs one invocation at the current time.
pub async fn handle_invocation(
    service: &PullService,
    payload: &Value,
) -> Result<Value, LambdaFailure> {
    let started = std::time::Instant::now();
    match service.handle(payload, jiff::Timestamp::now()).await {
        Ok(summary) => {
            info!(
                pulls = summary["results"].as_object().map_or(0, |r| r.len()),
                duration_ms = started.elapsed().as_millis() as u64,
                "Pull finished."
            );
            Ok(summary)
        }
        Err(err) => {
            warn!(kind = err.kind(), error = %err, duration_ms = started.elapsed().as_millis() as u64,
                  "Pull failed.");
            Err(LambdaFailure {
                error_type: err.kind().to_string(),
                error_message: err.to_string(),
            })
        }
    }
}
