//! The export loader on Cloud Run: Eventarc delivers `object.finalized` CloudEvents for the
//! export bucket to `POST /`, Cloud Scheduler posts sweeps to `POST /sweep`. Configuration is
//! read and clients are built once, at startup; requests go to `tapline::export_loader::cloud_run`.
//!
//! Environment: `PORT` (set by Cloud Run; default 8080), `TAPLINE_WAREHOUSE` (required),
//! `TAPLINE_WAREHOUSE_PASSWORD` (Cloud Run sets it from Secret Manager for a PostgreSQL
//! warehouse; never logged), `TAPLINE_TIMEZONE`, `TAPLINE_MAX_REJECT_RATIO`, the per-object
//! limits `TAPLINE_MAX_DECOMPRESSED_*` and `TAPLINE_MAX_COLUMN_NAME_BYTES`, `TAPLINE_COLUMN_TYPES`
//! (the pinned column types, TOML or `@PATH`); `STORAGE_EMULATOR_HOST` and
//! `TAPLINE_LISTEN_HOST` (default `0.0.0.0`) for local runs.

use std::sync::Arc;

use tapline::config::LoadConfig;
use tapline::export_loader::cloud_run::{ServiceState, router, serve};
use tapline::storage::gcs::GcsSource;
use tapline::warehouse::open::{OpenOptions, open_with};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tapline::process::init_json_logs();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // One JSON line with the whole cause chain: what Cloud Run's logs show for a failed start.
            tracing::error!(error = %tapline::error::error_chain(err.as_ref()), "Export loader cannot start.");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    // Fail at start, not per request, when configuration is wrong.
    let config = Arc::new(LoadConfig::from_env()?);
    let options = OpenOptions::from_env()?;
    let url = tapline::secret::warehouse_url_from_env().await?;
    let warehouse = Arc::from(open_with(&url, &options).await?);
    let source = Arc::new(GcsSource::from_env().await?);
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .map_err(|_| format!("PORT={p:?} is not a port number"))?,
        Err(_) => 8080,
    };
    // Cloud Run routes to every interface; tests narrow it to loopback.
    let host = std::env::var("TAPLINE_LISTEN_HOST").unwrap_or_else(|_| "0.0.0.0".to_string());
    let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
    tracing::info!(port, "Export loader listening.");
    let state = ServiceState {
        source,
        warehouse,
        config,
    };
    serve(listener, router(state)).await?;
    Ok(())
}
