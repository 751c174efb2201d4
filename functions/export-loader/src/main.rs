//! The export loader on AWS Lambda: S3 → SQS → this function (or EventBridge, or direct S3
//! events). Configuration is read and clients are built once, at cold start; each invocation is
//! handed, as the runtime parsed it, to
//! `tapline::export_loader::lambda::handle_lambda_payload`.
//!
//! A payload `{"tapline": "sweep", "uri": "s3://bucket/prefix"}` (EventBridge Scheduler) runs a
//! sweep instead: everything under the prefix that the ledger does not have yet. A failed
//! invocation's `errorType` names its kind, which says whether a retry can help (README,
//! "Failures, named").
//!
//! Environment: `TAPLINE_WAREHOUSE` (required, e.g. `postgres://…`), `TAPLINE_WAREHOUSE_SECRET_ARN`
//! (optional: the password, from Secrets Manager), `TAPLINE_TIMEZONE`
//! (default UTC), `TAPLINE_MAX_REJECT_RATIO` (default 0.01), the per-object limits
//! `TAPLINE_MAX_DECOMPRESSED_RATIO`, `TAPLINE_MAX_DECOMPRESSED_BYTES`,
//! `TAPLINE_MAX_COLUMN_NAME_BYTES` (see the README), `TAPLINE_COLUMN_TYPES` (optional: column
//! types pinned for the typed views, the TOML itself or `@PATH`), and the usual AWS variables.

use std::sync::Arc;

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use serde_json::Value;
use tapline::config::LoadConfig;
use tapline::export_loader::lambda::handle_lambda_payload;
use tapline::storage::s3::S3Source;
use tapline::warehouse::open::{OpenOptions, open_with};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let started = std::time::Instant::now();
    tapline::process::init_json_logs();
    // Fail at cold start, not per event, when configuration is wrong (said in the function's
    // logs as well as in the runtime's init error).
    let config = Arc::new(LoadConfig::from_env().inspect_err(cannot_start)?);
    let options = OpenOptions::from_env().inspect_err(cannot_start)?;
    // TAPLINE_WAREHOUSE, with the password from TAPLINE_WAREHOUSE_SECRET_ARN when set.
    let url = tapline::secret::warehouse_url_from_env().await?;
    let warehouse: Arc<dyn tapline::warehouse::Warehouse> =
        Arc::from(open_with(&url, &options).await?);
    let source = Arc::new(S3Source::from_env().await);
    tracing::info!(
        init_ms = started.elapsed().as_millis() as u64,
        warehouse = %warehouse.describe(),
        "Export loader initialised."
    );

    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (config, warehouse, source) = (config.clone(), warehouse.clone(), source.clone());
        async move {
            // A named errorType (not the Rust type's name): callers retry by it.
            handle_lambda_payload(event.payload, source.as_ref(), warehouse.as_ref(), &config)
                .await
                .map_err(|err| Diagnostic {
                    error_type: err.kind().to_string(),
                    error_message: tapline::error::error_chain(&err),
                })
        }
    }))
    .await
}

fn cannot_start(error: &tapline::config::ConfigError) {
    tracing::error!(%error, "Export loader cannot start.");
}
