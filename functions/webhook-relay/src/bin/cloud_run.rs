//! The webhook relay on Cloud Run, one image for its two services (`infra/gcp`), chosen by
//! `TAPLINE_RELAY_MODE`:
//! - `endpoint`: the public service. The same Router as `tapline relay serve`, publishing each
//!   accepted payload to `TAPLINE_RELAY_TOPIC` (one message per destination) before it answers.
//! - `worker`: the internal service the push subscription calls (`POST /`); delivers, publishes
//!   each retry back to `TAPLINE_RELAY_TOPIC` due later (`TAPLINE_RELAY_RETRY_SCHEDULE`,
//!   `TAPLINE_RELAY_MAX_DELIVERY_ATTEMPTS`), and dead-letters to
//!   `TAPLINE_RELAY_DEAD_LETTER_TOPIC`; with `TAPLINE_RELAY_DEDUPE_BUCKET`, the
//!   same body within the dedupe window is delivered once (claims in that GCS bucket).
//!
//! Assembled once, at start, by `tapline::webhook_relay::cloud_run::service_from_env`.
//!
//! Environment: `TAPLINE_RELAY_CONFIG_TOML` (or `TAPLINE_RELAY_CONFIG`), `TAPLINE_RELAY_SECRET_ARNS`
//! (JSON map NAME → Secret Manager version), `PORT`, `TAPLINE_LOG`; `PUBSUB_EMULATOR_HOST`,
//! `SECRET_MANAGER_ENDPOINT`, `STORAGE_EMULATOR_HOST` and `TAPLINE_LISTEN_HOST` for local runs;
//! `TAPLINE_HTTP_*` for the server's timeouts and connection cap. See README.md.

use std::process::ExitCode;

use tapline::webhook_relay::cloud_run::{StartError, service_from_env};

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

async fn run() -> Result<(), StartError> {
    // Fail at start, not per request, when configuration is wrong.
    let service = service_from_env().await?;
    let limits = tapline::http_server::ServerLimits::from_env()?;
    let listener = tapline::process::listen_from_env().await?;
    tracing::info!(mode = %service.mode, addr = %listener.local_addr()?, routes = service.routes, "Relay listening.");
    tapline::http_server::serve(
        listener,
        service.router,
        limits,
        tapline::process::shutdown_signal(),
    )
    .await?;
    Ok(())
}
