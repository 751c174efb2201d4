//! The API puller on Cloud Run: Cloud Scheduler posts `{"tapline":"pull"}` (OIDC) to `POST /`.
//! Configuration is read, the passcode (and the alert relay's token) fetched and clients built
//! once, at startup, by the same `PullService::from_env` as the Lambda; requests go to
//! `tapline::api_puller::cloud_run`.
//!
//! Environment: as the Lambda (`CLEVERTAP_ACCOUNT_ID`, `CLEVERTAP_REGION`,
//! `CLEVERTAP_PASSCODE_SECRET_ARN` — here a Secret Manager version name — or
//! `CLEVERTAP_PASSCODE`, `TAPLINE_WAREHOUSE` + `TAPLINE_WAREHOUSE_PASSWORD` or
//! `TAPLINE_WAREHOUSE_SECRET_ARN`, `TAPLINE_TIMEZONE`, `TAPLINE_PULL_*`, `TAPLINE_ALERT_RULES`,
//! `TAPLINE_ALERTS_*`, `TAPLINE_COLUMN_TYPES`, `TAPLINE_LOG`), plus `PORT` (Cloud Run sets it)
//! and, for local runs, `TAPLINE_LISTEN_HOST`, `SECRET_MANAGER_ENDPOINT`, `BIGQUERY_ENDPOINT`:
//! see README.md.

use tapline::api_puller::cloud_run::{PullService, router, serve};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tapline::process::init_json_logs();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // One JSON line with the whole cause chain: what Cloud Run's logs show for a failed start.
            tracing::error!(error = %tapline::error::error_chain(err.as_ref()), "API puller cannot start.");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let started = std::time::Instant::now();
    // Fail at start, not per request, when configuration is wrong.
    let service = PullService::from_env().await?;
    let listener = tapline::process::listen_from_env().await?;
    tracing::info!(
        init_ms = started.elapsed().as_millis() as u64,
        addr = %listener.local_addr()?,
        warehouse = %service.warehouse.describe(),
        events = service.jobs.events.len(),
        alert_rules = service.jobs.alert_rules.len(),
        "API puller listening."
    );
    serve(listener, router(service)).await?;
    Ok(())
}
