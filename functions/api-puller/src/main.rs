//! The API puller on AWS Lambda, invoked by EventBridge Scheduler with `{"tapline":"pull"}`.
//! Configuration is read and clients are built once, at cold start; each invocation is handed
//! to `tapline::api_puller::jobs::handle_pull_payload`. A run cut off by the Lambda time limit leaves
//! checkpoints in `_tapline_state`, and the next run resumes from them.
//!
//! Environment: `CLEVERTAP_ACCOUNT_ID`, `CLEVERTAP_REGION`, `CLEVERTAP_PASSCODE_SECRET_ARN` (or
//! `CLEVERTAP_PASSCODE`), `TAPLINE_WAREHOUSE` (+ `TAPLINE_WAREHOUSE_SECRET_ARN`),
//! `TAPLINE_TIMEZONE`, `TAPLINE_PULL_EVENTS`, `TAPLINE_PULL_JOBS`, `TAPLINE_PULL_LOOKBACK_DAYS`,
//! `TAPLINE_ALERT_RULES`, `TAPLINE_ALERTS_RELAY_URL` (+ `TAPLINE_ALERTS_RELAY_TOKEN_SECRET_ARN`),
//! `TAPLINE_LOG`: see README.md.

use std::sync::Arc;

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use serde_json::Value;
use tapline::api_puller::alert_notifiers::alert_notifier_from_env;
use tapline::api_puller::jobs::{PullJobs, api_config_from_env, handle_pull_payload};
use tapline::clevertap::ClevertapClient;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let started = std::time::Instant::now();
    tapline::process::init_json_logs();
    // Fail at cold start, not per invocation, when configuration is wrong.
    let notifier = alert_notifier_from_env().await?;
    let jobs = Arc::new(PullJobs::from_env()?.with_notifier(notifier));
    let client = ClevertapClient::new(api_config_from_env().await?)?;
    let url = tapline::secret::warehouse_url_from_env().await?;
    let warehouse: Arc<dyn tapline::warehouse::Warehouse> =
        Arc::from(tapline::warehouse::open::open(&url).await?);
    tracing::info!(
        init_ms = started.elapsed().as_millis() as u64,
        warehouse = %warehouse.describe(),
        events = jobs.events.len(),
        alert_rules = jobs.alert_rules.len(),
        "API puller initialised."
    );

    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (jobs, client, warehouse) = (jobs.clone(), client.clone(), warehouse.clone());
        async move {
            let now = jiff::Timestamp::now();
            // A named errorType (not the Rust type's name) for a failed invocation.
            handle_pull_payload(&event.payload, &client, warehouse, &jobs, now)
                .await
                .map_err(|e| Diagnostic {
                    error_type: e.kind().to_string(),
                    error_message: e.to_string(),
                })
        }
    }))
    .await
}
