//! The worker Lambda's small objects in the payload bucket (feature `sqs`):
//! - dedupe claims, [`crate::webhook_relay::dedupe`]'s [`ClaimStore`] as **conditional puts** (`If-None-Match:
//!   *`, atomic in S3 since August 2024; `If-Match: <ETag>` to take an expired claim over) of
//!   `dedupe/<route>/<destination>/<sha256>`, with the payload id and its receive time as object
//!   metadata;
//! - attempt records ([`crate::webhook_relay::dedupe::attempt_log`]) under `attempts/`.

use async_trait::async_trait;
use aws_sdk_s3::Client;

use crate::webhook_relay::dedupe::attempt_log::AttemptLog;
use crate::webhook_relay::dedupe::{ClaimStore, DedupeWindow, Holder};

/// The dedupe window with its claims in S3.
pub type DedupeStore = DedupeWindow<S3Objects>;

/// Claims and attempt records as objects of one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Objects {
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

impl S3Objects {
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
            .metadata(META_RECEIVED, received_at_ms.to_string())
            // The holder in the body too: S3's ETag is the body's MD5, so claims with empty
            // bodies all had one ETag and `If-Match` let two copies take one claim over.
            .content_type("application/json")
            .body(
                serde_json::to_vec(&serde_json::json!({
                    META_PAYLOAD: payload_id,
                    META_RECEIVED: received_at_ms,
                }))
                .expect("a claim serialises")
                .into(),
            );
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
impl ClaimStore for S3Objects {
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

#[async_trait]
impl AttemptLog for S3Objects {
    async fn put_record(&self, key: &str, body: Vec<u8>) -> Result<(), String> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(body.into())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(e).to_string())
    }

    async fn records_under(&self, prefix: &str) -> Result<Vec<Vec<u8>>, String> {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| err(&aws_sdk_s3::error::DisplayErrorContext(e)))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
        }
        keys.sort();
        let mut bodies = Vec::with_capacity(keys.len());
        for key in keys {
            let object = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| err(&aws_sdk_s3::error::DisplayErrorContext(e)))?;
            let bytes = object.body.collect().await.map_err(|e| err(&e))?;
            bodies.push(bytes.into_bytes().to_vec());
        }
        Ok(bodies)
    }
}
