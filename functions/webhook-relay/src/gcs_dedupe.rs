//! Dedupe claims in Cloud Storage (feature `pubsub`), for the push worker on Cloud Run:
//! [`crate::dedupe`]'s [`ClaimStore`] as JSON API uploads with **generation preconditions**
//! (`ifGenerationMatch=0`: only if absent; `ifGenerationMatch=<generation>` to take an expired
//! claim over) of `dedupe/<route>/<destination>/<sha256>` in the dedupe bucket
//! (`TAPLINE_RELAY_DEDUPE_BUCKET`), with the payload id and its receive time as custom metadata.
//!
//! Uploads are multipart (`uploadType=multipart`: the object's metadata and its empty body in
//! one request), which fake-gcs-server also checks preconditions on. Endpoint and credentials
//! as Google's libraries find them: `STORAGE_EMULATOR_HOST`, else Application Default
//! Credentials (the worker's service account, which needs `roles/storage.objectUser` on the
//! bucket: `infra/gcp`).

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use tapline::google_auth::GoogleAuth;

use crate::dedupe::{ClaimStore, DedupeWindow, Holder};

/// The bucket the push worker keeps its dedupe claims in; unset: no dedupe window on GCP.
pub const ENV_DEDUPE_BUCKET: &str = "TAPLINE_RELAY_DEDUPE_BUCKET";

/// The dedupe window with its claims in Cloud Storage.
pub type GcsDedupe = DedupeWindow<GcsClaims>;

/// A claim call is on the delivery's path: short, and a failure delivers anyway.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const BOUNDARY: &str = "tapline-claim-7d3f1c";
const META_PAYLOAD: &str = "payload-id";
const META_RECEIVED: &str = "received-at-ms";

/// Claims as objects of one GCS bucket, over the JSON API.
#[derive(Debug, Clone)]
pub struct GcsClaims {
    endpoint: String,
    auth: GoogleAuth,
    http: reqwest::Client,
    bucket: String,
}

/// The fields of an object resource a claim reads (int64 values are strings in the JSON API).
#[derive(Deserialize)]
struct ObjectResource {
    generation: String,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
}

impl GcsClaims {
    /// Claims in `bucket` at `endpoint` (`https://storage.googleapis.com` or an emulator).
    pub fn new(
        endpoint: &str,
        auth: GoogleAuth,
        bucket: impl Into<String>,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            auth,
            http: reqwest::Client::builder()
                .connect_timeout(CALL_TIMEOUT)
                .timeout(CALL_TIMEOUT)
                .build()?,
            bucket: bucket.into(),
        })
    }

    /// Claims in `bucket` where the environment says (`STORAGE_EMULATOR_HOST`, else Google's
    /// endpoint with Application Default Credentials).
    pub fn from_env(
        bucket: impl Into<String>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let (endpoint, auth) = tapline::google_auth::storage_from_env()?;
        Ok(Self::new(&endpoint, auth, bucket)?)
    }

    async fn headers(&self) -> Result<reqwest::header::HeaderMap, String> {
        self.auth
            .headers()
            .await
            .map_err(|e| format!("no access token: {e}"))
    }

    /// Uploads the claim if the object's generation is `generation` (`"0"`: absent).
    /// `Ok(false)` when the precondition failed (412).
    async fn upload(
        &self,
        key: &str,
        generation: &str,
        payload_id: &str,
        received_at_ms: i64,
    ) -> Result<bool, String> {
        let metadata = json!({
            "name": key,
            "contentType": "application/json",
            "metadata": {META_PAYLOAD: payload_id, META_RECEIVED: received_at_ms.to_string()},
        });
        let body = format!(
            "--{BOUNDARY}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n\
             --{BOUNDARY}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{BOUNDARY}--\r\n"
        );
        let response = self
            .http
            .post(format!(
                "{}/upload/storage/v1/b/{}/o",
                self.endpoint, self.bucket
            ))
            .query(&[
                ("uploadType", "multipart"),
                ("ifGenerationMatch", generation),
            ])
            .headers(self.headers().await?)
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/related; boundary={BOUNDARY}"),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| format!("upload failed: {}", e.without_url()))?;
        match response.status().as_u16() {
            200..=299 => Ok(true),
            412 => Ok(false),
            status => Err(format!(
                "upload answered HTTP {status}: {}",
                response.text().await.unwrap_or_default().trim()
            )),
        }
    }
}

#[async_trait]
impl ClaimStore for GcsClaims {
    async fn create(
        &self,
        key: &str,
        payload_id: &str,
        received_at_ms: i64,
    ) -> Result<bool, String> {
        self.upload(key, "0", payload_id, received_at_ms).await
    }

    async fn read(&self, key: &str) -> Result<Option<Holder>, String> {
        let mut url =
            reqwest::Url::parse(&format!("{}/storage/v1/b/{}/o", self.endpoint, self.bucket))
                .map_err(|e| format!("bad storage endpoint: {e}"))?;
        // One path segment: the object name's slashes are encoded (%2F).
        url.path_segments_mut()
            .map_err(|_| "bad storage endpoint".to_string())?
            .push(key);
        let response = self
            .http
            .get(url)
            .headers(self.headers().await?)
            .send()
            .await
            .map_err(|e| format!("read failed: {}", e.without_url()))?;
        match response.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            status => {
                return Err(format!(
                    "read answered HTTP {status}: {}",
                    response.text().await.unwrap_or_default().trim()
                ));
            }
        }
        let object: ObjectResource = response
            .json()
            .await
            .map_err(|e| format!("read returned no object resource: {e}"))?;
        Ok(Some(Holder {
            payload_id: object
                .metadata
                .get(META_PAYLOAD)
                .cloned()
                .unwrap_or_default(),
            received_at_ms: object
                .metadata
                .get(META_RECEIVED)
                .and_then(|v| v.parse().ok()),
            version: object.generation,
        }))
    }

    async fn replace(
        &self,
        key: &str,
        version: &str,
        payload_id: &str,
        received_at_ms: i64,
    ) -> Result<bool, String> {
        // Generation 0 would mean "only if absent": never replace on an unreadable generation.
        if version.is_empty() || version == "0" {
            return Ok(false);
        }
        self.upload(key, version, payload_id, received_at_ms).await
    }
}
