//! Dedupe claims in S3 (feature `sqs`), for the worker Lambda: [`crate::dedupe`]'s
//! [`ClaimStore`] as **conditional puts** (`If-None-Match: *`, atomic in S3 since August 2024;
//! `If-Match: <ETag>` to take an expired claim over) of `dedupe/<route>/<destination>/<sha256>`
//! in the payload bucket, with the payload id and its receive time as object metadata.

use async_trait::async_trait;
use aws_sdk_s3::Client;

use crate::dedupe::{ClaimStore, DedupeWindow, Holder};

/// The dedupe window with its claims in S3.
pub type DedupeStore = DedupeWindow<S3Claims>;

/// Claims as objects of one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Claims {
    client: Client,
    bucket: String,
}

const META_PAYLOAD: &str = "payload-id";
const META_RECEIVED: &str = "received-at-ms";

fn status_of<E>(
    err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

impl S3Claims {
    /// Claims in `bucket`.
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// A conditional put of the claim: `If-None-Match: *`, or `If-Match: etag` to replace.
    /// `Ok(false)` when the condition failed (412, or 409 for a concurrent conditional write).
    async fn put(
        &self,
        key: &str,
        payload_id: &str,
        received_at_ms: i64,
        if_match: Option<&str>,
    ) -> Result<bool, String> {
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .metadata(META_PAYLOAD, payload_id)
            .metadata(META_RECEIVED, received_at_ms.to_string());
        put = match if_match {
            Some(etag) => put.if_match(etag),
            None => put.if_none_match("*"),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(err) if matches!(status_of(&err), Some(412 | 409)) => Ok(false),
            Err(err) => Err(aws_sdk_s3::error::DisplayErrorContext(err).to_string()),
        }
    }
}

#[async_trait]
impl ClaimStore for S3Claims {
    async fn create(
        &self,
        key: &str,
        payload_id: &str,
        received_at_ms: i64,
    ) -> Result<bool, String> {
        self.put(key, payload_id, received_at_ms, None).await
    }

    async fn read(&self, key: &str) -> Result<Option<Holder>, String> {
        let head = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => head,
            Err(err) if status_of(&err) == Some(404) => return Ok(None),
            Err(err) => return Err(aws_sdk_s3::error::DisplayErrorContext(err).to_string()),
        };
        let meta = head.metadata().cloned().unwrap_or_default();
        Ok(Some(Holder {
            payload_id: meta.get(META_PAYLOAD).cloned().unwrap_or_default(),
            received_at_ms: meta.get(META_RECEIVED).and_then(|v| v.parse().ok()),
            version: head.e_tag().unwrap_or_default().to_string(),
        }))
    }

    async fn replace(
        &self,
        key: &str,
        version: &str,
        payload_id: &str,
        received_at_ms: i64,
    ) -> Result<bool, String> {
        self.put(key, payload_id, received_at_ms, Some(version))
            .await
    }
}
