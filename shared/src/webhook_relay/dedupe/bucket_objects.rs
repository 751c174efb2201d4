//! The relay's small objects in one bucket of an [`ObjectStore`]: dedupe claims as conditional
//! puts (create if absent, take over at the version read) with the holder as custom metadata
//! and as the body, and attempt records under `attempts/`. Written once for S3 and GCS.

use async_trait::async_trait;

use crate::storage::{NewObject, ObjectStore, PutMode, StoreError};
use crate::webhook_relay::dedupe::attempt_log::AttemptLog;
use crate::webhook_relay::dedupe::{ClaimStore, Holder};

const META_PAYLOAD: &str = "payload-id";
const META_RECEIVED: &str = "received-at-ms";

/// Claims and attempt records as objects under `root` (`s3://bucket`, `gs://bucket`).
#[derive(Debug, Clone)]
pub struct BucketObjects<S> {
    store: S,
    root: String,
}

impl<S: ObjectStore> BucketObjects<S> {
    /// The objects of the bucket `root` (`s3://bucket`, `gs://bucket`) in `store`.
    pub fn in_bucket(store: S, root: impl Into<String>) -> Self {
        Self {
            store,
            root: root.into(),
        }
    }

    fn uri(&self, key: &str) -> String {
        format!("{}/{key}", self.root.trim_end_matches('/'))
    }

    /// A conditional put of the claim; `Ok(false)` when its condition failed.
    async fn put_claim(
        &self,
        key: &str,
        payload_id: &str,
        received_at_ms: i64,
        mode: PutMode,
    ) -> Result<bool, String> {
        // The holder in the body too: S3's ETag is the body's MD5, so claims with one body
        // would share one version and `If-Match` would let two copies take a claim over.
        let body = serde_json::to_vec(&serde_json::json!({
            META_PAYLOAD: payload_id,
            META_RECEIVED: received_at_ms,
        }))
        .expect("a claim serialises");
        let object = NewObject {
            body,
            content_type: Some("application/json".into()),
            metadata: [
                (META_PAYLOAD.to_string(), payload_id.to_string()),
                (META_RECEIVED.to_string(), received_at_ms.to_string()),
            ]
            .into(),
        };
        match self.store.put(&self.uri(key), object, mode).await {
            Ok(_) => Ok(true),
            Err(StoreError::Precondition { .. }) => Ok(false),
            Err(err) => Err(err.to_string()),
        }
    }
}

#[async_trait]
impl<S: ObjectStore> ClaimStore for BucketObjects<S> {
    async fn create(
        &self,
        key: &str,
        payload_id: &str,
        received_at_ms: i64,
    ) -> Result<bool, String> {
        self.put_claim(key, payload_id, received_at_ms, PutMode::Create)
            .await
    }

    async fn read(&self, key: &str) -> Result<Option<Holder>, String> {
        let meta = match self.store.head(&self.uri(key)).await {
            Ok(meta) => meta,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err.to_string()),
        };
        Ok(Some(Holder {
            payload_id: meta.metadata.get(META_PAYLOAD).cloned().unwrap_or_default(),
            received_at_ms: meta
                .metadata
                .get(META_RECEIVED)
                .and_then(|v| v.parse().ok()),
            version: meta.version,
        }))
    }

    async fn replace(
        &self,
        key: &str,
        version: &str,
        payload_id: &str,
        received_at_ms: i64,
    ) -> Result<bool, String> {
        if version.is_empty() {
            return Ok(false);
        }
        self.put_claim(
            key,
            payload_id,
            received_at_ms,
            PutMode::Replace(version.to_string()),
        )
        .await
    }
}

#[async_trait]
impl<S: ObjectStore> AttemptLog for BucketObjects<S> {
    async fn put_record(&self, key: &str, body: Vec<u8>) -> Result<(), String> {
        let object = NewObject {
            body,
            content_type: Some("application/json".into()),
            metadata: Default::default(),
        };
        self.store
            .put(&self.uri(key), object, PutMode::Overwrite)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn records_under(&self, prefix: &str) -> Result<Vec<Vec<u8>>, String> {
        let entries = self
            .store
            .list_prefix(&self.uri(prefix))
            .await
            .map_err(|e| e.to_string())?;
        let mut bodies = Vec::with_capacity(entries.len());
        for entry in entries {
            match self.store.get(&entry.uri).await {
                Ok(object) => bodies.push(object.body),
                // Expired by the lifecycle rule since the listing: nothing to show.
                Err(StoreError::NotFound { .. }) => {}
                Err(err) => return Err(err.to_string()),
            }
        }
        Ok(bodies)
    }
}
