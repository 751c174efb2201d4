//! The endpoint function behind the function URL: the same Router as `tapline relay serve`,
//! storing each accepted payload in the SQS delivery queue.

use std::sync::Arc;

use axum::Router;

use crate::webhook_relay::clock::SystemClock;
use crate::webhook_relay::config::ConfigMode;
use crate::webhook_relay::env_config::{MissingEnv, relay_config_from_env, required_env};
use crate::webhook_relay::lambda::StartError;
use crate::webhook_relay::queue::sqs::{ENV_QUEUE_URL, SqsAcceptQueue, client_from_env};
use crate::webhook_relay::queue::sqs_payloads::PayloadStore;
use crate::webhook_relay::router::accept_router;

/// The endpoint: the same Router as `tapline relay serve`, over the SQS queue named by
/// `TAPLINE_RELAY_QUEUE_URL`, bodies too large for SQS in `TAPLINE_RELAY_PAYLOAD_BUCKET`. Reads
/// route secrets only: this function never holds a destination's credentials.
pub async fn endpoint_from_env() -> Result<Router, StartError> {
    let config = relay_config_from_env(ConfigMode::Endpoint).await?;
    let queue_url = required_env(ENV_QUEUE_URL).map_err(|e| MissingEnv {
        why: ": the relay's SQS delivery queue",
        ..e
    })?;
    let queue = Arc::new(
        SqsAcceptQueue::new(client_from_env().await, queue_url)
            .with_payloads(PayloadStore::from_env().await),
    );
    Ok(accept_router(&config, queue, Arc::new(SystemClock)))
}
