//! The webhook relay's endpoint on AWS Lambda (function URL), through `lambda_http`: the same
//! Router as `tapline relay serve`, storing each accepted payload in the SQS delivery queue;
//! the `webhook-relay-worker` function delivers from there. Assembled once, at cold start, by
//! `tapline::webhook_relay::lambda::endpoint_from_env`.
//!
//! Environment: `TAPLINE_RELAY_QUEUE_URL` (required), `TAPLINE_RELAY_CONFIG_TOML` (the TOML) or
//! `TAPLINE_RELAY_CONFIG` (its path, default `relay.toml`), `TAPLINE_RELAY_SECRET_ARNS` (JSON
//! map secret name → ARN for the names not in the environment; only route secrets are read: this
//! function never holds a destination's credentials), `TAPLINE_RELAY_PAYLOAD_BUCKET`
//! (optional: bodies too large for an SQS message are stored there; without it they get 413),
//! `TAPLINE_LOG`.

use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tapline::process::init_json_logs();
    // Fail at cold start, not per request, when configuration is wrong.
    let router = tapline::webhook_relay::lambda::endpoint_from_env().await?;
    lambda_http::run(router).await
}
