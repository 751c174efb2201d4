//! Deduplication on AWS (feature `sqs`): the same body on the same route within the dedupe
//! window is delivered once, as with the local queue, although SQS standard queues cannot look
//! back.
//!
//! The worker claims each delivery before attempting it with an S3 **conditional put**
//! (`If-None-Match: *`, atomic in S3 since August 2024) of `dedupe/<route>/<destination>/<sha256
//! of the body>` in the payload bucket, holding the payload id and its receive time as metadata:
//!
//! - the put succeeds: first of its kind, deliver;
//! - 412 and the object names the same payload: SQS handed the same delivery over again, deliver
//!   (the destination's `Idempotency-Key` is the same);
//! - 412 and another payload received within the window of this one: a duplicate, settled
//!   without an attempt;
//! - 412 and an older payload: the window has passed, so the claim is taken over with a put
//!   conditional on the old object's ETag (`If-Match`); losing that race means another copy
//!   took it: a duplicate.
//!
//! Why the worker and not the endpoint: a claim made before the accept is durable would turn the
//! sender's retry of a failed accept into a "duplicate", and lose it. Deduplicating where the
//! delivery happens means the endpoint answers `accepted` to both copies (both are queued) and
//! the second is dropped at delivery. A failed S3 call never blocks a delivery: the relay then
//! delivers (maybe twice) rather than risk losing one. Claims are kept per destination, so a
//! duplicate delivery to one destination does not hide the other destinations' deliveries.
//! The bucket's lifecycle rule removes old claims; an expired one only means the next copy is
//! delivered, which is right once the window has passed.

use std::time::Duration;

use aws_sdk_s3::Client;
use sha2::{Digest, Sha256};
use tracing::warn;

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Deliver: first of its kind in the window, or the same delivery again.
    Deliver,
    /// The same body on the same route and destination was received within the window, as
    /// payload `first`: do not deliver.
    Duplicate {
        /// The payload id that holds the claim.
        first: String,
    },
}

/// Claims of deliveries in S3, for one dedupe window.
#[derive(Debug, Clone)]
pub struct DedupeStore {
    client: Client,
    bucket: String,
    window_ms: i64,
}

const META_PAYLOAD: &str = "payload-id";
const META_RECEIVED: &str = "received-at-ms";

fn status_of<E>(
    err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

impl DedupeStore {
    /// Claims in `bucket` (the payload bucket), for `window`; a zero window disables them.
    pub fn new(client: Client, bucket: impl Into<String>, window: Duration) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            window_ms: window.as_millis() as i64,
        }
    }

    /// The claim's key: route, destination and the body's SHA-256.
    pub fn key(route: &str, destination: &str, body: &[u8]) -> String {
        format!(
            "dedupe/{route}/{destination}/{}",
            hex::encode(Sha256::digest(body))
        )
    }

    /// Claims the delivery of payload `payload_id` (received at `received_at_ms`) of `body` to
    /// `destination` of `route`. Any S3 failure answers [`Claim::Deliver`] (logged).
    pub async fn claim(
        &self,
        route: &str,
        destination: &str,
        body: &[u8],
        payload_id: &str,
        received_at_ms: i64,
    ) -> Claim {
        if self.window_ms <= 0 {
            return Claim::Deliver;
        }
        let key = Self::key(route, destination, body);
        match self.put(&key, payload_id, received_at_ms, None).await {
            Ok(true) => return Claim::Deliver,
            Ok(false) => {}
            Err(err) => {
                warn!(key = %key, error = %err, "Dedupe claim failed; delivering anyway.");
                return Claim::Deliver;
            }
        }
        let head = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(head) => head,
            Err(err) => {
                warn!(key = %key, error = %aws_sdk_s3::error::DisplayErrorContext(err),
                      "Cannot read the dedupe claim; delivering anyway.");
                return Claim::Deliver;
            }
        };
        let meta = head.metadata().cloned().unwrap_or_default();
        let first = meta.get(META_PAYLOAD).cloned().unwrap_or_default();
        if first == payload_id {
            return Claim::Deliver;
        }
        let first_at: i64 = meta
            .get(META_RECEIVED)
            .and_then(|v| v.parse().ok())
            .unwrap_or(i64::MIN);
        if first_at != i64::MIN && (received_at_ms - first_at).abs() < self.window_ms {
            return Claim::Duplicate { first };
        }
        // The window has passed: take the claim over, unless another copy does first.
        let etag = head.e_tag().unwrap_or_default().to_string();
        match self
            .put(&key, payload_id, received_at_ms, Some(&etag))
            .await
        {
            Ok(true) => Claim::Deliver,
            Ok(false) => Claim::Duplicate { first },
            Err(err) => {
                warn!(key = %key, error = %err, "Dedupe claim failed; delivering anyway.");
                Claim::Deliver
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_per_route_destination_and_body() {
        let a = DedupeStore::key("alerts", "slack", b"{}");
        assert_eq!(
            a,
            "dedupe/alerts/slack/44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_ne!(a, DedupeStore::key("alerts", "crm", b"{}"));
        assert_ne!(a, DedupeStore::key("alerts", "slack", b"{ }"));
    }
}
