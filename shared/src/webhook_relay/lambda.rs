//! The relay's two AWS Lambda functions, assembled from their environment once, at cold start
//! (`infra/aws` wires it): the endpoint behind the function URL, storing each accepted payload
//! in the SQS delivery queue, and the worker the queue feeds, delivering each message once per
//! receive and answering with a partial batch response.

use std::sync::Arc;

use axum::Router;

use crate::webhook_relay::clock::SystemClock;
use crate::webhook_relay::config::ConfigMode;
use crate::webhook_relay::dedupe::attempt_log::AttemptLog;
use crate::webhook_relay::env_config::{MissingEnv, relay_config_from_env, required_env};
use crate::webhook_relay::queue::sqs::{
    ENV_DEAD_LETTER_QUEUE_URL, ENV_QUEUE_URL, SqsAcceptQueue, SqsDeliveryHandler, client_from_env,
};
use crate::webhook_relay::queue::sqs_payloads::PayloadStore;
use crate::webhook_relay::relay::{accept_router, destinations, http_client};

/// Why a relay function cannot start.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

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

/// The worker: delivers from `TAPLINE_RELAY_QUEUE_URL`, dead-letters to
/// `TAPLINE_RELAY_DEAD_LETTER_QUEUE_URL`; the payload bucket holds bodies too large for SQS,
/// the dedupe claims and the attempt records. Reads destination secrets only.
pub async fn worker_from_env() -> Result<SqsDeliveryHandler, StartError> {
    let config = relay_config_from_env(ConfigMode::Worker).await?;
    let client = http_client(config.settings.delivery_timeout)?;
    let payloads = PayloadStore::from_env().await;
    let handler = SqsDeliveryHandler::new(
        destinations(&config, &client)?,
        config.settings.retry.clone(),
        Arc::new(SystemClock),
        client_from_env().await,
        required_env(ENV_QUEUE_URL)?,
        required_env(ENV_DEAD_LETTER_QUEUE_URL)?,
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
    .with_payloads(payloads);
    Ok(handler)
}
