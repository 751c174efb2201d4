//! Doubles of what no local real part covers (CleverTap, Slack and HTTP receivers, BigQuery
//! beside bqemulator, Secret Manager, Pub/Sub) and fault injection (`proxy`).

pub mod bigquery;
pub mod clevertap_api;
pub mod clevertap_upload;
pub mod google_rpc;
pub mod proxy;
pub mod pubsub;
pub mod receiver;
pub mod relay_router;
pub mod secret_manager;
