//! The worker function the SQS delivery queue feeds: each message is one delivery, attempted
//! once per receive, answered with a partial batch response. No HTTP server in it.

use std::sync::Arc;

use crate::webhook_relay::clock::SystemClock;
use crate::webhook_relay::config::ConfigMode;
use crate::webhook_relay::dedupe::attempt_log::AttemptLog;
use crate::webhook_relay::env_config::{relay_config_from_env, required_env};
use crate::webhook_relay::lambda::StartError;
use crate::webhook_relay::queue::sqs::{
    ENV_DEAD_LETTER_QUEUE_URL, ENV_QUEUE_URL, SqsDeliveryHandler, client_from_env,
};
use crate::webhook_relay::queue::sqs_payloads::PayloadStore;
use crate::webhook_relay::relay::{destinations, http_client};

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
