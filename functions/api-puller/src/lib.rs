//! The API puller's entry points share everything but their trigger: the Lambda (`src/main.rs`)
//! and, with feature `cloud-run`, the HTTP service Cloud Scheduler posts to
//! ([`cloud_run_service`], run by `src/bin/cloud_run.rs`). Both hand each payload to
//! `tapline::pull::jobs::handle_pull_payload`.

#[cfg(feature = "cloud-run")]
pub mod cloud_run_service;
