//! The API puller as an HTTP service, for Cloud Run behind Cloud Scheduler (OIDC; `infra/gcp`).
//!
//! - `POST /`: the same JSON payload as the Lambda's (`{"tapline":"pull"}`, optionally `from`,
//!   `to`, `events`, `jobs`): 200 with the summary when every pull succeeded.
//! - Cloud Scheduler retries **every** non-2xx answer (up to the job's `retry_count`), so the
//!   codes say what happened rather than steer it: **503** when a pull failed for a reason a
//!   retry may fix (CleverTap or the warehouse busy or down: the retry resumes each unfinished
//!   slice from its checkpoint in `_tapline_state`, and re-pulls of finished days replace them,
//!   so retrying is safe); **500** when every failed pull needs someone to act (an event
//!   CleverTap refuses to export, a notifier refusing its token: the body says `"retry":
//!   false`, and `errorType` the Lambda's kind); **400** for a body that
//!   is not a pull payload or names a bad setting (no work was done, a retry does none either,
//!   and the job's status shows the mistake).
//! - `GET /healthz`: 200 `ok`.
//!
//! One pull at a time per instance is what `infra/gcp` deploys (`max_instance_request_concurrency
//! = 1`, one instance): CleverTap limits concurrent requests per account.

use crate::api_puller::jobs::PullInvocationError;
pub use crate::api_puller::jobs::PullService;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tracing::{info, warn};

/// The service's routes.
pub fn router(state: PullService) -> Router {
    Router::new()
        .route("/", post(on_pull))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// The answer's status for a failed invocation: 400 when the request itself is wrong, 503 when
/// a pull failed and a retry may fix it (it resumes from the checkpoints), 500 when no retry can.
pub fn status_for(err: &PullInvocationError) -> StatusCode {
    match err {
        PullInvocationError::Payload(_) | PullInvocationError::Config(_) => StatusCode::BAD_REQUEST,
        PullInvocationError::Failed { .. } if err.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
        PullInvocationError::Failed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn on_pull(State(state): State<PullService>, body: Bytes) -> Response {
    let payload: Value = match serde_json::from_slice(&body) {
        Ok(payload) => payload,
        Err(e) => {
            warn!(error = %e, "Pull request body is not JSON.");
            return answer(
                StatusCode::BAD_REQUEST,
                json!({
                    "error": format!("body is not JSON ({e}): expected {{\"tapline\": \"pull\"}}"),
                    "errorType": "InvalidPullPayload",
                    "retry": false,
                }),
            );
        }
    };
    let started = std::time::Instant::now();
    let now = jiff::Timestamp::now();
    match state.handle(&payload, now).await {
        Ok(summary) => {
            info!(
                from = %summary["from"].as_str().unwrap_or_default(),
                to = %summary["to"].as_str().unwrap_or_default(),
                pulls = summary["results"].as_object().map_or(0, |r| r.len()),
                duration_ms = started.elapsed().as_millis() as u64,
                "Pull finished."
            );
            answer(StatusCode::OK, summary)
        }
        Err(err) => {
            let status = status_for(&err);
            warn!(status = status.as_u16(), error = %err, duration_ms = started.elapsed().as_millis() as u64,
                  "Pull failed.");
            answer(
                status,
                json!({"error": err.to_string(), "errorType": err.kind(), "retry": err.is_retryable()}),
            )
        }
    }
}

/// Serves `router` on `listener` until SIGTERM (what Cloud Run sends before stopping an
/// instance) or Ctrl-C, under the shared server limits (`TAPLINE_HTTP_*`); a pull in flight
/// gets the shutdown grace to finish (a pull cut off there resumes from its checkpoints on the
/// next run).
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    let limits = crate::http_server::ServerLimits::from_env()?;
    crate::http_server::serve(listener, router, limits, crate::process::shutdown_signal()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api_puller::jobs::JobsConfigError;

    #[test]
    fn only_failed_pulls_ask_for_a_retry() {
        assert_eq!(
            status_for(&PullInvocationError::Payload("x".into())),
            StatusCode::BAD_REQUEST
        );
        let config = JobsConfigError::Invalid {
            name: "from",
            reason: "x".into(),
        };
        assert_eq!(
            status_for(&PullInvocationError::Config(config)),
            StatusCode::BAD_REQUEST
        );
        let failed = |retryable| PullInvocationError::Failed {
            failed: 1,
            total: 2,
            first: "x".into(),
            retryable,
        };
        assert_eq!(status_for(&failed(true)), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            status_for(&failed(false)),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
