//! The API puller on AWS Lambda, invoked by EventBridge Scheduler with `{"tapline":"pull"}`.
//! Configuration is read and clients are built once, at cold start
//! (`tapline::api_puller::jobs::PullService::from_env`); each invocation is handed to
//! `tapline::api_puller::lambda::handle_invocation`. A run cut off by the Lambda time limit
//! leaves checkpoints in `_tapline_state`, and the next run resumes from them.
//!
//! Environment: `CLEVERTAP_ACCOUNT_ID`, `CLEVERTAP_REGION`, `CLEVERTAP_PASSCODE_SECRET_ARN` (or
//! `CLEVERTAP_PASSCODE`), `TAPLINE_WAREHOUSE` (+ `TAPLINE_WAREHOUSE_SECRET_ARN`),
//! `TAPLINE_TIMEZONE`, `TAPLINE_PULL_EVENTS`, `TAPLINE_PULL_JOBS`, `TAPLINE_PULL_LOOKBACK_DAYS`,
//! `TAPLINE_ALERT_RULES`, `TAPLINE_ALERTS_RELAY_URL` (+ `TAPLINE_ALERTS_RELAY_TOKEN_SECRET_ARN`),
//! `TAPLINE_REPORT_URI` (the `report` job's page, `s3://BUCKET/KEY.html`),
//! `TAPLINE_COLUMN_TYPES` (pinned column types for the typed views), `TAPLINE_LOG`: see README.md.

use std::sync::Arc;

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use serde_json::Value;
use tapline::api_puller::jobs::PullService;
use tapline::api_puller::lambda::handle_invocation;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let started = std::time::Instant::now();
    tapline::process::init_json_logs();
    // Fail at cold start, not per invocation, when configuration is wrong.
    let service = Arc::new(PullService::from_env().await?);
    tracing::info!(
        init_ms = started.elapsed().as_millis() as u64,
        warehouse = %service.warehouse.describe(),
        events = service.jobs.events.len(),
        alert_rules = service.jobs.alert_rules.len(),
        "API puller initialised."
    );

    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let service = service.clone();
        async move {
            // A named errorType (not the Rust type's name) for a failed invocation.
            handle_invocation(&service, &event.payload)
                .await
                .map_err(|f| Diagnostic {
                    error_type: f.error_type,
                    error_message: f.error_message,
                })
        }
    }))
    .await
}
