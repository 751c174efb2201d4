//! The webhook relay on AWS Lambda (function URL), through `lambda_http`: the same Router as
//! `tapline relay serve`.
//!
//! Environment: `TAPLINE_RELAY_CONFIG` (path of the TOML file, default `relay.toml` beside the
//! bootstrap), `TAPLINE_RELAY_STATE_DIR` (default `/tmp/tapline-relay`), the variables the file
//! names, `TAPLINE_LOG`. Until the SQS queue adapter exists the queue is SQLite in the
//! instance's `/tmp` and the worker runs only while the instance is warm: not durable on Lambda.

use std::path::PathBuf;

use lambda_http::Error;
use webhook_relay::{Relay, RelayConfig};

const ENV_CONFIG: &str = "TAPLINE_RELAY_CONFIG";
const ENV_STATE_DIR: &str = "TAPLINE_RELAY_STATE_DIR";

#[tokio::main]
async fn main() -> Result<(), Error> {
    tapline::entry::init_json_logs();
    // Fail at cold start, not per request, when configuration is wrong.
    let config_path = PathBuf::from(std::env::var(ENV_CONFIG).unwrap_or("relay.toml".into()));
    let config = RelayConfig::load(&config_path)?;
    let state_dir = std::env::var(ENV_STATE_DIR).unwrap_or("/tmp/tapline-relay".into());
    let relay = Relay::local(&config, std::path::Path::new(&state_dir))?;
    let (worker, wake) = (relay.worker.clone(), relay.wake.clone());
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move { worker.run(wake, stop_rx).await });
    lambda_http::run(relay.router).await
}
