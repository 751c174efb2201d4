//! Tapline core: everything that is not a cloud entry point.
//!
//! - [`export`]: CleverTap export objects: names, decoding, CSV/JSON parsing, validation.
//! - [`warehouse`]: the [`warehouse::Warehouse`] port, the naming rule and its adapters.
//! - [`storage`]: the [`storage::ObjectSource`] port and its adapters (local files today).
//! - [`load`]: the export loader itself, written once for every source and warehouse.
//! - `clevertap` and `pull` (feature `clevertap-api`): the CleverTap API client and the puller
//!   that lands API data in the same tables as exports.
//! - [`triggers`]: S3, SQS, SNS, EventBridge and GCS CloudEvent payloads to object references.
//! - `http_server` (feature `http-server`): the HTTP server every service runs on, with its
//!   timeouts, connection cap and bounded graceful shutdown.
//! - Cross-cutting, once each: [`error`] (the top-level error and [`error::error_chain`]),
//!   [`secret`] (the redacting [`secret::Secret`] and secrets by reference), [`process`] (JSON
//!   logs, shutdown signal, listener).

#[cfg(feature = "clevertap-api")]
pub mod clevertap;
#[cfg(feature = "cloud-run")]
pub mod cloud_run;
pub mod config;
pub mod error;
pub mod export;
#[cfg(feature = "google-auth")]
pub mod google_auth;
#[cfg(feature = "http-server")]
pub mod http_server;
pub mod load;
pub mod printable;
pub mod process;
#[cfg(feature = "clevertap-api")]
pub mod pull;
pub mod secret;
pub mod storage;
pub mod sweep;
pub mod time;
pub mod triggers;
pub mod warehouse;

pub use error::Error;
