//! The push worker's small objects in Cloud Storage (feature `relay-pubsub`), in its bucket
//! (`TAPLINE_RELAY_DEDUPE_BUCKET`), through the one GCS client ([`GcsStore`]): dedupe claims
//! with generation preconditions (see [`crate::webhook_relay::dedupe`]) and attempt records
//! under `attempts/`. Endpoint and credentials as Google's libraries find them:
//! `STORAGE_EMULATOR_HOST`, else Application Default Credentials (the worker's service account
//! needs `roles/storage.objectUser` on the bucket: `infra/gcp`).

use std::time::Duration;

use crate::google_auth::GoogleAuth;
use crate::storage::gcs::GcsStore;
use crate::webhook_relay::dedupe::DedupeWindow;
use crate::webhook_relay::dedupe::bucket_objects::BucketObjects;

/// The bucket the push worker keeps its dedupe claims in; unset: no dedupe window on GCP.
pub const ENV_DEDUPE_BUCKET: &str = "TAPLINE_RELAY_DEDUPE_BUCKET";

/// Claims and attempt records as objects of one GCS bucket.
pub type GcsObjects = BucketObjects<GcsStore>;

/// The dedupe window with its claims in Cloud Storage.
pub type GcsDedupe = DedupeWindow<GcsObjects>;

/// A claim call is on the delivery's path: short, and a failure delivers anyway.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

impl BucketObjects<GcsStore> {
    /// Claims in `bucket` at `endpoint` (`https://storage.googleapis.com` or an emulator).
    pub fn new(
        endpoint: &str,
        auth: GoogleAuth,
        bucket: impl AsRef<str>,
    ) -> Result<Self, reqwest::Error> {
        let store = GcsStore::new(endpoint, auth, CALL_TIMEOUT)?;
        Ok(Self::in_bucket(store, format!("gs://{}", bucket.as_ref())))
    }

    /// Claims in `bucket` where the environment says (`STORAGE_EMULATOR_HOST`, else Google's
    /// endpoint with Application Default Credentials).
    pub fn from_env(
        bucket: impl AsRef<str>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let store = GcsStore::from_env(CALL_TIMEOUT)?;
        Ok(Self::in_bucket(store, format!("gs://{}", bucket.as_ref())))
    }
}
