//! Clients and helpers for the real local servers the suite runs against (PostgreSQL, moto
//! for S3 and SQS, fake-gcs-server, `cargo lambda watch`, the Cloud Run binaries).

pub mod cloud_run_service;
pub mod gcs;
pub mod lambda_emulator;
pub mod pg;
pub mod s3;
pub mod sqs;
