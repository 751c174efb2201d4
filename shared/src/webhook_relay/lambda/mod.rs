//! The relay's two AWS Lambda functions, assembled from their environment once, at cold start
//! (`infra/aws` wires them): `endpoint` behind the function URL (feature `relay-endpoint`),
//! storing each accepted payload in the SQS delivery queue, and [`worker`], which the queue
//! feeds and which serves no HTTP, so its zip carries no router.

#[cfg(feature = "relay-endpoint")]
pub mod endpoint;
pub mod worker;

#[cfg(feature = "relay-endpoint")]
pub use endpoint::endpoint_from_env;
pub use worker::worker_from_env;

/// Why a relay function cannot start.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;
