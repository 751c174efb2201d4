//! The export loader job: CleverTap export objects from a bucket or folder into the warehouse,
//! exactly once per object version.
//!
//! - [`batch_load`]: the one batch-load path (begin → append → judge → commit, quarantine or
//!   failure record) of export files and API pages alike.
//! - [`load`]: one object (or a folder's objects) through decode → parse → append → commit.
//! - [`lambda`]: a Lambda invocation (SQS batch, S3 or EventBridge event, scheduled sweep)
//!   to loads, answered with partial batch failures or an error.
//! - [`invocation`]: why an invocation failed as a whole, named by a kind that says whether a
//!   retry can help (Lambda's `errorType`, the Cloud Run answer's status).
//! - [`sweep`]: the scheduled sweep that finds objects an event notification missed.
//! - [`freshness`]: creation→commit latency of loaded objects, and the oldest not yet loaded.
//! - `cloud_run` (feature `cloud-run`): the loader as an HTTP service for Eventarc and Cloud
//!   Scheduler.

pub mod batch_load;
#[cfg(feature = "cloud-run")]
pub mod cloud_run;
pub mod freshness;
pub mod invocation;
pub mod lambda;
pub mod load;
pub mod sweep;
