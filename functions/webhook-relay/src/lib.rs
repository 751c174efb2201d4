//! Tapline's webhook relay: authenticated webhooks (CleverTap's, or any JSON), stored before
//! they are answered, then delivered to Slack and HTTP endpoints with retries, backoff and a
//! dead-letter store that can be replayed.
//!
//! - [`config`]: the TOML configuration, validated once, secrets from the environment.
//! - [`router`]: the axum `Router` (`POST /hooks/{route}`, `GET /healthz`).
//! - [`queue`]: the [`queue::DeliveryQueue`] port; [`sqlite_queue`] its local adapter, bounded by
//!   [`queue_limits`].
//! - [`destination`]: the [`destination::Destination`] port; [`slack`], [`http_forward`] and
//!   [`clevertap_upload`], [`warehouse_destination`] (`webhook_events` in any Tapline warehouse).
//! - [`worker`]: the delivery worker; [`retry`] its backoff; [`clock`] injectable time.
//! - [`signature`]: the HMAC-SHA256 signature of forwarded deliveries, and its verification.
//! - [`relay`]: assembly and `serve`.
//! - [`dedupe`]: the dedupe window in the cloud, as claims in a bucket ([`dedupe::ClaimStore`]);
//!   [`attempt_log`]: every attempt of a delivery for its dead letter, in the same bucket.
//! - `sqs_queue`, `sqs_payloads`, `sqs_dedupe`, `aws_config_env` (feature `sqs`): the queue and
//!   the worker handler on AWS, bodies too large for SQS in S3 (claim-check), dedupe claims by
//!   S3 conditional puts, and the configuration of the Lambda functions (route secrets from
//!   Secrets Manager).
//! - `pubsub_queue`, `gcs_dedupe`, `pubsub_replay` (feature `pubsub`): the topic and the push
//!   worker on Google Cloud, dedupe claims by GCS generation preconditions, dead letters listed
//!   and replayed from their subscription; the Cloud Run services read their
//!   configuration through `aws_config_env` too (route secrets from Secret Manager by version
//!   name).

pub mod attempt_log;
pub mod auth;
// Cloud-neutral despite its name: secret references are read by their form (ARN or Secret
// Manager version), so the Cloud Run services use it as well.
#[cfg(any(feature = "sqs", feature = "pubsub"))]
pub mod aws_config_env;
pub mod clevertap_upload;
pub mod clock;
pub mod config;
pub mod dedupe;
pub mod destination;
#[cfg(feature = "pubsub")]
pub mod gcs_dedupe;
pub mod http_forward;
pub mod payload;
#[cfg(feature = "pubsub")]
pub mod pubsub_queue;
#[cfg(feature = "pubsub")]
pub mod pubsub_replay;
pub mod queue;
pub mod queue_limits;
pub mod relay;
pub mod retry;
pub mod router;
pub mod signature;
pub mod slack;
pub mod sqlite_queue;
#[cfg(feature = "sqs")]
pub mod sqs_dedupe;
#[cfg(feature = "sqs")]
pub mod sqs_payloads;
#[cfg(feature = "sqs")]
pub mod sqs_queue;
pub mod warehouse_destination;
pub mod worker;

pub use config::RelayConfig;
pub use relay::{Relay, RelayError, serve};
