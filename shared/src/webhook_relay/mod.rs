//! Tapline's webhook relay: authenticated webhooks (CleverTap's, or any JSON), stored before
//! they are answered, then delivered to Slack and HTTP endpoints with retries, backoff and a
//! dead-letter store that can be replayed.
//!
//! Feature `relay` is what every piece needs (the SQS worker Lambda builds with it alone: no
//! HTTP server, no SQLite); `relay-endpoint` adds the router on the HTTP server; `relay-local`
//! the SQLite queue and the one-machine relay; `relay-sqs` and `relay-pubsub` the cloud queues.
//!
//! - [`config`]: the TOML configuration, validated once, secrets from the environment;
//!   `env_config` (features `relay-sqs`/`relay-pubsub`): the same read from the cloud functions'
//!   environment, route secrets from Secrets Manager or Secret Manager by their form.
//! - `router` (feature `relay-endpoint`): the axum `Router` (`POST /hooks/{route}`,
//!   `GET /healthz`); `auth` and [`payload`] what it checks.
//! - [`relay`]: the HTTP client and the destinations built from one configuration;
//!   `local` (feature `relay-local`): `Relay` and `serve`, what `tapline relay serve` runs.
//! - [`queue`]: the [`queue::DeliveryQueue`] port and its adapters: `queue::sqlite` (feature
//!   `relay-local`; bounded by `queue::limits`), `queue::sqs` (+ `queue::sqs_payloads`, bodies
//!   too large for SQS in S3) and `queue::pubsub` (+ `queue::pubsub_replay`, dead letters listed
//!   and replayed).
//! - [`destinations`]: the [`destinations::Destination`] port; Slack, HTTP forward, CleverTap
//!   upload and a Tapline warehouse (`webhook_events`).
//! - [`delivery`]: one delivery round (dedupe, pause, attempt, breaker, settle) behind a
//!   redelivery port, and the worker that runs it over the local queue; [`retry`] the routes'
//!   [`crate::retry::RetryPolicy`]; time from [`crate::clock`].
//! - `lambda` (feature `relay-sqs`; its endpoint also `relay-endpoint`) and `cloud_run` (feature
//!   `relay-pubsub`): each cloud function assembled from its environment, for the entry points
//!   in `functions/webhook-relay`.
//! - [`signature`]: the HMAC-SHA256 signature of forwarded deliveries, and its verification.
//! - [`dedupe`]: the dedupe window in the cloud, as claims in a bucket ([`dedupe::ClaimStore`]:
//!   `dedupe::s3` by S3 conditional puts, `dedupe::gcs` by GCS generation preconditions);
//!   `dedupe::attempt_log`: every attempt of a delivery for its dead letter, in the same bucket.

#[cfg(feature = "relay-endpoint")]
pub mod auth;
/// Injectable time, now [`crate::clock`]: kept at this path for the relay's callers.
pub use crate::clock;
#[cfg(feature = "relay-pubsub")]
pub mod cloud_run;
pub mod config;
pub mod dedupe;
pub mod delivery;
pub mod destinations;
// Cloud-neutral: secret references are read by their form (ARN or Secret Manager version), so
// the Lambda functions and the Cloud Run services share it.
#[cfg(any(feature = "relay-sqs", feature = "relay-pubsub"))]
pub mod env_config;
#[cfg(feature = "relay-sqs")]
pub mod lambda;
#[cfg(feature = "relay-local")]
pub mod local;
pub mod payload;
pub mod queue;
pub mod relay;
pub mod retry;
#[cfg(feature = "relay-endpoint")]
pub mod router;
pub mod signature;

pub use config::RelayConfig;
#[cfg(feature = "relay-local")]
pub use local::{Relay, serve};
pub use relay::RelayError;
