//! The webhook relay's endpoint on AWS Lambda (function URL), through `lambda_http`: the same
//! Router as `tapline relay serve`, storing each accepted payload in the SQS delivery queue;
//! the `webhook-relay-worker` function delivers from there.
//!
//! Environment: `TAPLINE_RELAY_QUEUE_URL` (required), `TAPLINE_RELAY_CONFIG_TOML` (the TOML) or
//! `TAPLINE_RELAY_CONFIG` (its path, default `relay.toml`), `TAPLINE_RELAY_SECRET_ARNS` (JSON
//! map secret name → ARN for the names not in the environment; only route secrets are read: this
//! function never holds a destination's credentials), `TAPLINE_RELAY_PAYLOAD_BUCKET`
//! (optional: bodies too large for an SQS message are stored there; without it they get 413),
//! `TAPLINE_LOG`.

use std::sync::Arc;

use lambda_http::Error;
use tapline::webhook_relay::clock::SystemClock;
use tapline::webhook_relay::config::ConfigMode;
use tapline::webhook_relay::env_config::relay_config_from_env;
use tapline::webhook_relay::queue::sqs::{ENV_QUEUE_URL, SqsAcceptQueue, client_from_env};
use tapline::webhook_relay::queue::sqs_payloads::PayloadStore;
use tapline::webhook_relay::relay::accept_router;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tapline::process::init_json_logs();
    // Fail at cold start, not per request, when configuration is wrong.
    let config = relay_config_from_env(ConfigMode::Endpoint).await?;
    let queue_url = std::env::var(ENV_QUEUE_URL)
        .ok()
        .filter(|url| !url.is_empty())
        .ok_or_else(|| format!("{ENV_QUEUE_URL} is not set: the relay's SQS delivery queue"))?;
    let queue = Arc::new(
        SqsAcceptQueue::new(client_from_env().await, queue_url)
            .with_payloads(PayloadStore::from_env().await),
    );
    lambda_http::run(accept_router(&config, queue, Arc::new(SystemClock))).await
}
