//! Tapline core: everything that is not a cloud entry point.
//!
//! - [`export`]: CleverTap export objects: names, decoding, CSV/JSON parsing, validation.
//! - [`warehouse`]: the [`warehouse::Warehouse`] port, the naming rule and its adapters.
//! - [`storage`]: the [`storage::ObjectSource`] port and its adapters (local files today).
//! - [`export_loader`]: the export loader job, written once for every source and warehouse
//!   (`load`, `sweep`, and its Cloud Run service).
//! - `clevertap` and `api_puller` (feature `clevertap-api`): the CleverTap API client and the
//!   puller job that lands API data in the same tables as exports.
//! - `webhook_relay` (feature `relay`): the webhook relay job: queues, delivery, destinations;
//!   its HTTP endpoint with feature `relay-endpoint` (the SQS worker Lambda builds without it).
//! - `slack` (features `clevertap-api`, `relay`): the one Slack incoming-webhook client.
//! - [`retry`]: the one retry policy (attempts, backoff, jitter, `Retry-After`); [`clock`]:
//!   injectable time.
//! - [`triggers`]: S3, SQS, SNS, EventBridge and GCS CloudEvent payloads to object references.
//! - `http_server` (feature `http-server`): the HTTP server every service runs on, with its
//!   timeouts, connection cap and bounded graceful shutdown.
//! - Cross-cutting, once each: [`error`] (the top-level error and [`error::error_chain`]),
//!   [`secret`] (the redacting [`secret::Secret`] and secrets by reference), [`process`] (JSON
//!   logs, shutdown signal, listener).

#[cfg(feature = "clevertap-api")]
pub mod api_puller;
#[cfg(feature = "clevertap-api")]
pub mod clevertap;
pub mod clock;
pub mod config;
pub mod error;
pub mod export;
pub mod export_loader;
#[cfg(feature = "google-auth")]
pub mod google_auth;
#[cfg(feature = "http-server")]
pub mod http_server;
pub mod printable;
pub mod process;
pub mod reconcile;
pub mod retry;
pub mod secret;
#[cfg(any(feature = "clevertap-api", feature = "relay"))]
pub mod slack;
pub mod storage;
pub mod time;
pub mod triggers;
pub mod warehouse;
#[cfg(feature = "relay")]
pub mod webhook_relay;

pub use error::Error;
