//! Tapline core: everything that is not a cloud entry point.
//!
//! - [`export`]: CleverTap export objects: names, decoding, CSV/JSON parsing, validation.
//! - [`warehouse`]: the [`warehouse::Warehouse`] port, the naming rule and its adapters.
//! - [`storage`]: the [`storage::ObjectSource`] port and its adapters (local files today).
//! - [`load`]: the export loader itself, written once for every source and warehouse.
//! - [`triggers`]: S3, SQS, SNS, EventBridge and GCS CloudEvent payloads to object references.

#[cfg(feature = "cloud-run")]
pub mod cloud_run;
pub mod config;
pub mod entry;
pub mod error;
pub mod export;
#[cfg(feature = "google-auth")]
pub mod google_auth;
pub mod load;
pub mod secrets;
pub mod storage;
pub mod sweep;
pub mod time;
pub mod triggers;
pub mod warehouse;

pub use error::Error;
