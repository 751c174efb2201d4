//! The webhook relay on Cloud Run, one image for its two services (`infra/gcp`), chosen by
//! `TAPLINE_RELAY_MODE`:
//! - `endpoint`: the public service. The same Router as `tapline relay serve`, publishing each
//!   accepted payload to `TAPLINE_RELAY_TOPIC` (one message per destination) before it answers.
//! - `worker`: the internal service the push subscription calls (`POST /`); delivers, publishes
//!   each retry back to `TAPLINE_RELAY_TOPIC` due later (`TAPLINE_RELAY_RETRY_SCHEDULE`,
//!   `TAPLINE_RELAY_MAX_DELIVERY_ATTEMPTS`), and dead-letters to
//!   `TAPLINE_RELAY_DEAD_LETTER_TOPIC`; with `TAPLINE_RELAY_DEDUPE_BUCKET`, the
//!   same body within the dedupe window is delivered once (claims in that GCS bucket). See
//!   `tapline::webhook_relay::queue::pubsub`.
//!
//! Environment: `TAPLINE_RELAY_CONFIG_TOML` (or `TAPLINE_RELAY_CONFIG`), `TAPLINE_RELAY_SECRET_ARNS`
//! (JSON map NAME → Secret Manager version), `PORT`, `TAPLINE_LOG`; `PUBSUB_EMULATOR_HOST`,
//! `SECRET_MANAGER_ENDPOINT`, `STORAGE_EMULATOR_HOST` and `TAPLINE_LISTEN_HOST` for local runs;
//! `TAPLINE_HTTP_*` for the server's timeouts and connection cap. See README.md.

use std::process::ExitCode;
use std::sync::Arc;

use tapline::webhook_relay::clock::SystemClock;
use tapline::webhook_relay::config::ConfigMode;
use tapline::webhook_relay::dedupe::DedupeWindow;
use tapline::webhook_relay::dedupe::attempt_log::AttemptLog;
use tapline::webhook_relay::dedupe::gcs::{ENV_DEDUPE_BUCKET, GcsObjects};
use tapline::webhook_relay::env_config::relay_config_from_env;
use tapline::webhook_relay::queue::pubsub::{
    ENV_DEAD_LETTER_TOPIC, ENV_TOPIC, PubSubAcceptQueue, PubSubDeliveryHandler, PubSubPublisher,
    max_delivery_attempts_from_env, push_router,
};
use tapline::webhook_relay::relay::{accept_router, destinations, http_client};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `endpoint` or `worker`.
const ENV_MODE: &str = "TAPLINE_RELAY_MODE";

fn required(name: &str) -> Result<String, BoxError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("{name} is not set").into())
}

#[tokio::main]
async fn main() -> ExitCode {
    tapline::process::init_json_logs();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %tapline::error::error_chain(err.as_ref()), "Relay cannot start.");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    // Fail at start, not per request, when configuration is wrong.
    let mode = required(ENV_MODE)?;
    // Each service reads only its own secrets: route tokens, or destination credentials.
    let config_mode = match mode.as_str() {
        "endpoint" => ConfigMode::Endpoint,
        "worker" => ConfigMode::Worker,
        other => return Err(format!("{ENV_MODE}={other:?}: use endpoint or worker").into()),
    };
    let config = relay_config_from_env(config_mode).await?;
    let router = match config_mode {
        ConfigMode::Endpoint => {
            let publisher = PubSubPublisher::from_env(required(ENV_TOPIC)?)?;
            accept_router(
                &config,
                Arc::new(PubSubAcceptQueue::new(publisher)),
                Arc::new(SystemClock),
            )
        }
        ConfigMode::Worker | ConfigMode::Both => {
            let client = http_client(config.settings.delivery_timeout)?;
            // Dedupe claims and attempt records live in the worker's bucket.
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
            push_router(Arc::new(
                PubSubDeliveryHandler::new(
                    destinations(&config, &client)?,
                    config.settings.retry.clone(),
                    Arc::new(SystemClock),
                    // Retries are published again to the delivery topic, due later.
                    PubSubPublisher::from_env(required(ENV_TOPIC)?)?,
                    PubSubPublisher::from_env(required(ENV_DEAD_LETTER_TOPIC)?)?,
                )
                .with_max_delivery_attempts(max_delivery_attempts_from_env()?)
                .with_dedupe(dedupe)
                .with_attempt_log(attempt_log),
            ))
        }
    };
    let limits = tapline::http_server::ServerLimits::from_env()?;
    let listener = tapline::process::listen_from_env().await?;
    tracing::info!(%mode, addr = %listener.local_addr()?, routes = config.routes.len(), "Relay listening.");
    tapline::http_server::serve(
        listener,
        router,
        limits,
        tapline::process::shutdown_signal(),
    )
    .await?;
    Ok(())
}
