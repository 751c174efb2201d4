//! Claim-check for bodies too large for an SQS message (feature `sqs`): the body is stored once
//! in S3 (`TAPLINE_RELAY_PAYLOAD_BUCKET`, key `payloads/<payload id>.json`) and each delivery
//! message carries a [`BodyPointer`] instead; the worker reads the body back from there.
//!
//! The threshold is [`SQS_MESSAGE_MAX_BYTES`], 256 KiB: since August 2025 SQS accepts messages
//! up to 1 MiB, but only on queues whose `MaximumMessageSize` says so, and a queue's default is
//! still 256 KiB (as is every queue hashicorp/aws 5.x can create). A delivery message is the body
//! JSON-escaped plus its metadata, so even a body under the relay's 1 MiB limit may not fit:
//! without a bucket such a body is refused with 413 (a retry cannot help), never 503.
//!
//! Objects are not deleted after delivery: a payload fanned out to several destinations has one
//! object for all its messages, and a dead letter (on the dead-letter queue, replayable) still
//! points at it. The bucket's lifecycle rule expires them after the dead-letter retention.
//! Bodies go through the one S3 adapter ([`S3Source`]).

use aws_sdk_s3::Client;
use serde::{Deserialize, Serialize};

use crate::storage::s3::S3Source;
use crate::storage::{NewObject, ObjectStore, PutMode, StoreError};

use crate::webhook_relay::queue::QueueError;

/// The bucket holding bodies too large for SQS (both functions). Unset: such bodies get 413.
pub const ENV_PAYLOAD_BUCKET: &str = "TAPLINE_RELAY_PAYLOAD_BUCKET";
/// Largest SQS message the relay sends (a queue's default `MaximumMessageSize`).
pub const SQS_MESSAGE_MAX_BYTES: usize = 256 * 1024;
/// Largest `SendMessageBatch` the relay sends (the sum of its messages): SQS's batch limit on a
/// queue whose messages may be at most [`SQS_MESSAGE_MAX_BYTES`].
pub const SQS_BATCH_MAX_BYTES: usize = 256 * 1024;

/// Where a delivery's body is when it is not in the message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BodyPointer {
    /// The payload bucket.
    pub bucket: String,
    /// `payloads/<payload id>.json`.
    pub key: String,
    /// The body's size, for logs and checks.
    pub bytes: u64,
}

/// Bodies in S3, by payload id.
#[derive(Debug, Clone)]
pub struct PayloadStore {
    s3: S3Source,
    bucket: String,
}

fn s3_error(bucket: &str, err: impl std::fmt::Display, retryable: bool) -> QueueError {
    QueueError::Cloud {
        queue: format!("s3://{bucket}"),
        reason: err.to_string(),
        retryable,
    }
}

impl PayloadStore {
    /// The store in `bucket`, reached with `client`.
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self::over(S3Source::new(client), bucket)
    }

    /// The store in `bucket` of the S3 adapter `s3`.
    pub fn over(s3: S3Source, bucket: impl Into<String>) -> Self {
        Self {
            s3,
            bucket: bucket.into(),
        }
    }

    /// The store named by [`ENV_PAYLOAD_BUCKET`], if set: S3 as the environment says
    /// ([`S3Source::from_env`], path-style when `AWS_ENDPOINT_URL` points at an emulator).
    pub async fn from_env() -> Option<Self> {
        let bucket = std::env::var(ENV_PAYLOAD_BUCKET)
            .ok()
            .filter(|b| !b.is_empty())?;
        Some(Self::over(S3Source::from_env().await, bucket))
    }

    /// The worker's small objects in the same bucket: dedupe claims (`dedupe/`) and attempt
    /// records (`attempts/`).
    pub fn objects(&self) -> crate::webhook_relay::dedupe::s3::S3Objects {
        crate::webhook_relay::dedupe::bucket_objects::BucketObjects::in_bucket(
            self.s3.clone(),
            format!("s3://{}", self.bucket),
        )
    }

    /// Dedupe claims for `window` in the same bucket (`dedupe/`, see [`crate::webhook_relay::dedupe`]).
    pub fn dedupe(
        &self,
        window: std::time::Duration,
    ) -> crate::webhook_relay::dedupe::s3::DedupeStore {
        crate::webhook_relay::dedupe::DedupeWindow::new(self.objects(), window)
    }

    /// The object key of a payload's body.
    pub fn key(payload_id: &str) -> String {
        format!("payloads/{payload_id}.json")
    }

    /// Stores `body` as payload `payload_id`'s; the pointer to put in its messages.
    pub async fn put(&self, payload_id: &str, body: &[u8]) -> Result<BodyPointer, QueueError> {
        let key = Self::key(payload_id);
        let object = NewObject {
            body: body.to_vec(),
            content_type: Some("application/json".into()),
            metadata: Default::default(),
        };
        self.s3
            .put(
                &format!("s3://{}/{key}", self.bucket),
                object,
                PutMode::Overwrite,
            )
            .await
            .map_err(|err| s3_error(&self.bucket, err, true))?;
        Ok(BodyPointer {
            bucket: self.bucket.clone(),
            key,
            bytes: body.len() as u64,
        })
    }

    /// Reads a body back. Only pointers into this store's bucket are followed: a message cannot
    /// make the worker read another bucket.
    pub async fn get(&self, pointer: &BodyPointer) -> Result<Vec<u8>, QueueError> {
        if pointer.bucket != self.bucket {
            return Err(s3_error(
                &pointer.bucket,
                format!("not the payload bucket {}", self.bucket),
                false,
            ));
        }
        let uri = format!("s3://{}/{}", self.bucket, pointer.key);
        match self.s3.get(&uri).await {
            Ok(object) => Ok(object.body),
            Err(err) => {
                let gone = matches!(err, StoreError::NotFound { .. });
                Err(s3_error(&self.bucket, err, !gone))
            }
        }
    }
}

/// Groups `messages` into `SendMessageBatch` requests: at most 10 entries and
/// [`SQS_BATCH_MAX_BYTES`] each (a message is never split; each is at most
/// [`SQS_MESSAGE_MAX_BYTES`]).
pub fn batches(messages: &[String]) -> Vec<&[String]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, message) in messages.iter().enumerate() {
        if i > start && (i - start == 10 || bytes + message.len() > SQS_BATCH_MAX_BYTES) {
            out.push(&messages[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += message.len();
    }
    if start < messages.len() {
        out.push(&messages[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_to_ten_entries_and_the_byte_limit() {
        let small: Vec<String> = (0..23).map(|i| i.to_string()).collect();
        let sizes: Vec<usize> = batches(&small).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [10, 10, 3]);

        let big = "x".repeat(100 * 1024);
        let large = vec![big.clone(), big.clone(), big.clone(), "y".into()];
        let sizes: Vec<usize> = batches(&large).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [2, 2], "two 100 KiB messages per 256 KiB batch");
        assert!(batches(&[]).is_empty());
    }
}
