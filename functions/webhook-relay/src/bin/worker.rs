//! The webhook relay's delivery worker on AWS Lambda: fed by the SQS delivery queue (event source
//! mapping with `ReportBatchItemFailures`); each message is one delivery, attempted once per
//! receive. See `tapline::webhook_relay::queue::sqs`.
//!
//! Environment: `TAPLINE_RELAY_QUEUE_URL` and `TAPLINE_RELAY_DEAD_LETTER_QUEUE_URL` (required),
//! the configuration as for the endpoint (`TAPLINE_RELAY_CONFIG_TOML`, `TAPLINE_RELAY_SECRET_ARNS`;
//! only destination secrets are read, never route tokens),
//! `TAPLINE_RELAY_PAYLOAD_BUCKET` (where bodies too large for SQS are, the dedupe claims and the
//! attempt records), `TAPLINE_WAREHOUSE` and `TAPLINE_WAREHOUSE_SECRET_ARN` (for a warehouse destination), `TAPLINE_LOG`.

use std::sync::Arc;

use lambda_http::lambda_runtime::{self, Error, LambdaEvent, service_fn};
use serde_json::Value;
use tapline::webhook_relay::clock::SystemClock;
use tapline::webhook_relay::config::ConfigMode;
use tapline::webhook_relay::dedupe::attempt_log::AttemptLog;
use tapline::webhook_relay::env_config::relay_config_from_env;
use tapline::webhook_relay::queue::sqs::{
    ENV_DEAD_LETTER_QUEUE_URL, ENV_QUEUE_URL, SqsDeliveryHandler, SqsEvent, client_from_env,
};
use tapline::webhook_relay::queue::sqs_payloads::PayloadStore;
use tapline::webhook_relay::relay::{destinations, http_client};

fn required(name: &str) -> Result<String, Error> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("{name} is not set").into())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tapline::process::init_json_logs();
    let config = relay_config_from_env(ConfigMode::Worker).await?;
    let client = http_client(config.settings.delivery_timeout)?;
    // Bodies too large for SQS, the dedupe claims and the attempt records live in the payload
    // bucket.
    let payloads = PayloadStore::from_env().await;
    let handler = Arc::new(
        SqsDeliveryHandler::new(
            destinations(&config, &client)?,
            config.settings.retry.clone(),
            Arc::new(SystemClock),
            client_from_env().await,
            required(ENV_QUEUE_URL)?,
            required(ENV_DEAD_LETTER_QUEUE_URL)?,
        )
        .with_dedupe(
            payloads
                .as_ref()
                .map(|p| p.dedupe(config.settings.dedupe_window)),
        )
        .with_attempt_log(
            payloads
                .as_ref()
                .map(|p| Arc::new(p.objects()) as Arc<dyn AttemptLog>),
        )
        .with_payloads(payloads),
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = handler.clone();
        async move { Ok::<Value, Error>(handler.handle(event.payload).await) }
    }))
    .await
}
