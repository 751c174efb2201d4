//! The webhook relay's delivery worker on AWS Lambda: fed by the SQS delivery queue (event source
//! mapping with `ReportBatchItemFailures`); each message is one delivery, attempted once per
//! receive. Assembled once, at cold start, by `tapline::webhook_relay::lambda::worker_from_env`;
//! see `tapline::webhook_relay::queue::sqs`. Built on `lambda_runtime` alone (feature
//! `lambda-worker`): it serves no HTTP, so no router, axum or lambda_http in its zip.
//!
//! Environment: `TAPLINE_RELAY_QUEUE_URL` and `TAPLINE_RELAY_DEAD_LETTER_QUEUE_URL` (required),
//! the configuration as for the endpoint (`TAPLINE_RELAY_CONFIG_TOML`, `TAPLINE_RELAY_SECRET_ARNS`;
//! only destination secrets are read, never route tokens),
//! `TAPLINE_RELAY_PAYLOAD_BUCKET` (where bodies too large for SQS are, the dedupe claims and the
//! attempt records), `TAPLINE_WAREHOUSE` and `TAPLINE_WAREHOUSE_SECRET_ARN` (for a warehouse destination), `TAPLINE_LOG`.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use tapline::webhook_relay::queue::sqs::SqsEvent;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tapline::process::init_json_logs();
    // Fail at cold start, not per batch, when configuration is wrong.
    let handler = Arc::new(tapline::webhook_relay::lambda::worker_from_env().await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = handler.clone();
        async move { Ok::<Value, Error>(handler.handle(event.payload).await) }
    }))
    .await
}
