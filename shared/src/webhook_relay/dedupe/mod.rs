//! The dedupe window in the cloud: the same body on the same route within the window is
//! delivered once, as with the local queue, although neither SQS nor Pub/Sub can look back.
//!
//! The worker claims each delivery before attempting it, with a **conditional create** of one
//! small object per (route, destination, SHA-256 of the body) in a bucket ([`ClaimStore`],
//! written once over the storage port in [`bucket_objects`]: S3 with `If-None-Match: *`, GCS
//! with `ifGenerationMatch=0`). The object holds the payload id and its receive time:
//!
//! - the create succeeds: first of its kind, deliver;
//! - it exists and names the same payload: the queue handed the same delivery over again,
//!   deliver (the destination's `Idempotency-Key` is the same);
//! - it names another payload received within the window of this one: a duplicate, settled
//!   without an attempt;
//! - it names an older payload: the window has passed, so the claim is taken over with a write
//!   conditional on the version that was read (ETag, generation); losing that race means another
//!   copy took it: a duplicate.
//!
//! Why the worker and not the endpoint: a claim made before the accept is durable would turn the
//! sender's retry of a failed accept into a "duplicate", and lose it. Deduplicating where the
//! delivery happens means the endpoint answers `accepted` to both copies (both are queued) and
//! the second is dropped at delivery. A failed claim call never blocks a delivery: the relay then
//! delivers (maybe twice) rather than risk losing one. Claims are kept per destination, so a
//! duplicate delivery to one destination does not hide the other destinations' deliveries. The
//! bucket's lifecycle rule removes old claims; an expired one only means the next copy is
//! delivered, which is right once the window has passed.

pub mod attempt_log;
pub mod bucket_objects;
#[cfg(feature = "relay-pubsub")]
pub mod gcs;
#[cfg(feature = "relay-sqs")]
pub mod s3;

use std::time::Duration;

use async_trait::async_trait;
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

/// A claim as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The payload that holds it.
    pub payload_id: String,
    /// When that payload was received (Unix ms); `None` when unreadable.
    pub received_at_ms: Option<i64>,
    /// The store's version of the object (S3 ETag, GCS generation), for [`ClaimStore::replace`].
    pub version: String,
}

/// Where claims live: one object per key, created or replaced only conditionally. Errors are
/// messages for the log (a failed claim delivers).
#[async_trait]
pub trait ClaimStore: Send + Sync {
    /// Creates `key` naming the payload, only if absent: `Ok(false)` when it exists.
    async fn create(
        &self,
        key: &str,
        payload_id: &str,
        received_at_ms: i64,
    ) -> Result<bool, String>;
    /// The claim at `key`; `Ok(None)` when there is none (removed meanwhile).
    async fn read(&self, key: &str) -> Result<Option<Holder>, String>;
    /// Replaces `key`, only if it is still at `version`: `Ok(false)` when it changed.
    async fn replace(
        &self,
        key: &str,
        version: &str,
        payload_id: &str,
        received_at_ms: i64,
    ) -> Result<bool, String>;
}

/// The claim's key: route, destination and the body's SHA-256.
pub fn claim_key(route: &str, destination: &str, body: &[u8]) -> String {
    format!(
        "dedupe/{route}/{destination}/{}",
        hex::encode(Sha256::digest(body))
    )
}

/// Claims of deliveries in a [`ClaimStore`], for one dedupe window.
#[derive(Debug, Clone)]
pub struct DedupeWindow<S> {
    store: S,
    window_ms: i64,
}

impl<S: ClaimStore> DedupeWindow<S> {
    /// Claims in `store` for `window`; a zero window disables them.
    pub fn new(store: S, window: Duration) -> Self {
        Self {
            store,
            window_ms: window.as_millis() as i64,
        }
    }

    /// Claims the delivery of payload `payload_id` (received at `received_at_ms`) of `body` to
    /// `destination` of `route`. Any store failure answers [`Claim::Deliver`] (logged).
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
        let key = claim_key(route, destination, body);
        let failed = |what: &str, err: String| {
            warn!(key = %key, error = %err, "Dedupe claim failed ({what}); delivering anyway.");
            Claim::Deliver
        };
        match self.store.create(&key, payload_id, received_at_ms).await {
            Ok(true) => return Claim::Deliver,
            Ok(false) => {}
            Err(err) => return failed("create", err),
        }
        let holder = match self.store.read(&key).await {
            Ok(Some(holder)) => holder,
            // Removed between the two calls (lifecycle): nothing holds it any more.
            Ok(None) => return Claim::Deliver,
            Err(err) => return failed("read", err),
        };
        if holder.payload_id == payload_id {
            return Claim::Deliver;
        }
        if let Some(first_at) = holder.received_at_ms
            && (received_at_ms - first_at).abs() < self.window_ms
        {
            return Claim::Duplicate {
                first: holder.payload_id,
            };
        }
        // The window has passed: take the claim over, unless another copy does first.
        match self
            .store
            .replace(&key, &holder.version, payload_id, received_at_ms)
            .await
        {
            Ok(true) => Claim::Deliver,
            Ok(false) => Claim::Duplicate {
                first: holder.payload_id,
            },
            Err(err) => failed("take over", err),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    /// Claims in memory, versioned like a bucket, with scripted failures.
    #[derive(Default)]
    struct Memory {
        objects: Mutex<HashMap<String, (String, i64, u64)>>,
        fail: Mutex<Vec<&'static str>>,
    }

    impl Memory {
        fn failing(&self, op: &'static str) -> Result<(), String> {
            let mut fail = self.fail.lock().unwrap();
            match fail.iter().position(|f| *f == op) {
                Some(i) => {
                    fail.remove(i);
                    Err(format!("{op}: 503"))
                }
                None => Ok(()),
            }
        }
    }

    #[async_trait]
    impl ClaimStore for Memory {
        async fn create(&self, key: &str, payload: &str, at: i64) -> Result<bool, String> {
            self.failing("create")?;
            let mut objects = self.objects.lock().unwrap();
            if objects.contains_key(key) {
                return Ok(false);
            }
            objects.insert(key.into(), (payload.into(), at, 1));
            Ok(true)
        }
        async fn read(&self, key: &str) -> Result<Option<Holder>, String> {
            self.failing("read")?;
            Ok(self
                .objects
                .lock()
                .unwrap()
                .get(key)
                .map(|(p, at, v)| Holder {
                    payload_id: p.clone(),
                    received_at_ms: Some(*at),
                    version: v.to_string(),
                }))
        }
        async fn replace(
            &self,
            key: &str,
            version: &str,
            payload: &str,
            at: i64,
        ) -> Result<bool, String> {
            self.failing("replace")?;
            let mut objects = self.objects.lock().unwrap();
            match objects.get(key) {
                Some((_, _, v)) if v.to_string() == version => {
                    let next = v + 1;
                    objects.insert(key.into(), (payload.into(), at, next));
                    Ok(true)
                }
                _ => Ok(false),
            }
        }
    }

    const MIN: i64 = 60_000;

    #[test]
    fn the_key_is_per_route_destination_and_body() {
        let a = claim_key("alerts", "slack", b"{}");
        assert_eq!(
            a,
            "dedupe/alerts/slack/44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_ne!(a, claim_key("alerts", "crm", b"{}"));
        assert_ne!(a, claim_key("alerts", "slack", b"{ }"));
    }

    #[tokio::test]
    async fn one_delivery_per_body_and_destination_within_the_window() {
        let window = DedupeWindow::new(Memory::default(), Duration::from_secs(600));
        let claim = |p: &'static str, dest: &'static str, at: i64| {
            let window = &window;
            async move { window.claim("r", dest, b"{}", p, at).await }
        };
        assert_eq!(claim("p1", "crm", 0).await, Claim::Deliver);
        assert_eq!(claim("p1", "crm", 0).await, Claim::Deliver, "redelivery");
        assert_eq!(
            claim("p2", "crm", 9 * MIN).await,
            Claim::Duplicate { first: "p1".into() }
        );
        assert_eq!(claim("p2", "slack", 9 * MIN).await, Claim::Deliver);
        // After the window: taken over, and the window restarts from the new holder.
        assert_eq!(claim("p3", "crm", 11 * MIN).await, Claim::Deliver);
        assert_eq!(
            claim("p4", "crm", 12 * MIN).await,
            Claim::Duplicate { first: "p3".into() }
        );
    }

    #[tokio::test]
    async fn a_failing_store_delivers_and_a_zero_window_claims_nothing() {
        let store = Memory::default();
        store.fail.lock().unwrap().extend(["create"]);
        let window = DedupeWindow::new(store, Duration::from_secs(600));
        assert_eq!(window.claim("r", "d", b"x", "p1", 0).await, Claim::Deliver);
        assert!(window.store.objects.lock().unwrap().is_empty());
        window.claim("r", "d", b"x", "p1", 0).await;
        window.store.fail.lock().unwrap().extend(["read"]);
        assert_eq!(window.claim("r", "d", b"x", "p2", 1).await, Claim::Deliver);
        window.store.fail.lock().unwrap().extend(["replace"]);
        assert_eq!(
            window.claim("r", "d", b"x", "p3", 20 * MIN).await,
            Claim::Deliver
        );

        let off = DedupeWindow::new(Memory::default(), Duration::ZERO);
        assert_eq!(off.claim("r", "d", b"x", "p1", 0).await, Claim::Deliver);
        assert_eq!(off.claim("r", "d", b"x", "p2", 1).await, Claim::Deliver);
        assert!(off.store.objects.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn losing_the_take_over_is_a_duplicate() {
        /// Another copy takes the claim over between the read and the replace.
        struct Racing(Memory);
        #[async_trait]
        impl ClaimStore for Racing {
            async fn create(&self, k: &str, p: &str, at: i64) -> Result<bool, String> {
                self.0.create(k, p, at).await
            }
            async fn read(&self, k: &str) -> Result<Option<Holder>, String> {
                let holder = self.0.read(k).await?;
                let h = holder.clone().unwrap();
                self.0.replace(k, &h.version, "other", 20 * MIN).await?;
                Ok(holder)
            }
            async fn replace(&self, k: &str, v: &str, p: &str, at: i64) -> Result<bool, String> {
                self.0.replace(k, v, p, at).await
            }
        }
        let window = DedupeWindow::new(Racing(Memory::default()), Duration::from_secs(600));
        let key = claim_key("r", "d", b"x");
        window.store.0.create(&key, "p1", 0).await.unwrap();
        assert_eq!(
            window.claim("r", "d", b"x", "p2", 20 * MIN).await,
            Claim::Duplicate { first: "p1".into() }
        );
    }
}
