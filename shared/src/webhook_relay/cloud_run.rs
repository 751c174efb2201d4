//! The relay on Cloud Run, one image for its two services (`infra/gcp`), chosen by
//! `TAPLINE_RELAY_MODE`: `endpoint` (the public Router, publishing each accepted payload to
//! `TAPLINE_RELAY_TOPIC`) or `worker` (the push subscription's target: delivers, publishes
//! retries back to the topic due later, dead-letters to `TAPLINE_RELAY_DEAD_LETTER_TOPIC`;
//! with `TAPLINE_RELAY_DEDUPE_BUCKET`, one delivery per body within the dedupe window).

use std::sync::Arc;

use axum::Router;

use crate::webhook_relay::clock::SystemClock;
use crate::webhook_relay::config::{ConfigMode, RelayConfig};
use crate::webhook_relay::dedupe::DedupeWindow;
use crate::webhook_relay::dedupe::attempt_log::AttemptLog;
use crate::webhook_relay::dedupe::gcs::{ENV_DEDUPE_BUCKET, GcsObjects};
use crate::webhook_relay::env_config::{relay_config_from_env, required_env};
use crate::webhook_relay::queue::pubsub::{
    ENV_DEAD_LETTER_TOPIC, ENV_TOPIC, PubSubAcceptQueue, PubSubDeliveryHandler, PubSubPublisher,
    max_delivery_attempts_from_env, push_router,
};
use crate::webhook_relay::relay::{destinations, http_client};
use crate::webhook_relay::router::accept_router;

/// `endpoint` or `worker`.
pub const ENV_MODE: &str = "TAPLINE_RELAY_MODE";

/// Why a relay service cannot start.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// One service of the relay, ready to serve.
pub struct RelayService {
    /// `endpoint` or `worker`, as configured.
    pub mode: String,
    /// Its routes.
    pub router: Router,
    /// How many routes the configuration has.
    pub routes: usize,
}

/// The service `TAPLINE_RELAY_MODE` names, with its configuration and only its own secrets
/// (route tokens, or destination credentials).
pub async fn service_from_env() -> Result<RelayService, StartError> {
    let mode = required_env(ENV_MODE)?;
    let config_mode = match mode.as_str() {
        "endpoint" => ConfigMode::Endpoint,
        "worker" => ConfigMode::Worker,
        other => return Err(format!("{ENV_MODE}={other:?}: use endpoint or worker").into()),
    };
    let config = relay_config_from_env(config_mode).await?;
    let router = match config_mode {
        ConfigMode::Endpoint => {
            let publisher = PubSubPublisher::from_env(required_env(ENV_TOPIC)?)?;
            accept_router(
                &config,
                Arc::new(PubSubAcceptQueue::new(publisher)),
                Arc::new(SystemClock),
            )
        }
        ConfigMode::Worker | ConfigMode::Both => push_worker(&config)?,
    };
    Ok(RelayService {
        mode,
        router,
        routes: config.routes.len(),
    })
}

/// The push worker: dedupe claims and attempt records in the worker's bucket, when it has one.
fn push_worker(config: &RelayConfig) -> Result<Router, StartError> {
    let client = http_client(config.settings.delivery_timeout)?;
    let objects = match std::env::var(ENV_DEDUPE_BUCKET)
        .ok()
        .filter(|b| !b.is_empty())
    {
        Some(bucket) => Some(GcsObjects::from_env(bucket)?),
        None => {
            tracing::warn!(
                "{ENV_DEDUPE_BUCKET} is not set: no dedupe window (a body sent twice is delivered twice), and dead letters hold their last attempt only."
            );
            None
        }
    };
    let dedupe = objects
        .clone()
        .map(|o| DedupeWindow::new(o, config.settings.dedupe_window));
    let attempt_log = objects.map(|o| Arc::new(o) as Arc<dyn AttemptLog>);
    Ok(push_router(Arc::new(
        PubSubDeliveryHandler::new(
            destinations(config, &client)?,
            config.settings.retry.clone(),
            Arc::new(SystemClock),
            // Retries are published again to the delivery topic, due later.
            PubSubPublisher::from_env(required_env(ENV_TOPIC)?)?,
            PubSubPublisher::from_env(required_env(ENV_DEAD_LETTER_TOPIC)?)?,
        )
        .with_max_delivery_attempts(max_delivery_attempts_from_env()?)
        .with_dedupe(dedupe)
        .with_attempt_log(attempt_log),
    )))
}
