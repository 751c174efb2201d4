//! The push worker's small objects in Cloud Storage (feature `pubsub`), in its bucket
//! (`TAPLINE_RELAY_DEDUPE_BUCKET`):
//! - dedupe claims, [`crate::webhook_relay::dedupe`]'s [`ClaimStore`] as JSON API uploads with **generation
//!   preconditions** (`ifGenerationMatch=0`: only if absent; `ifGenerationMatch=<generation>` to
//!   take an expired claim over) of `dedupe/<route>/<destination>/<sha256>`, with the payload id
//!   and its receive time as custom metadata;
//! - attempt records ([`crate::webhook_relay::dedupe::attempt_log`]) under `attempts/`.
//!
//! Uploads are multipart (`uploadType=multipart`: the object's metadata and its empty body in
//! one request), which fake-gcs-server also checks preconditions on. Endpoint and credentials
//! as Google's libraries find them: `STORAGE_EMULATOR_HOST`, else Application Default
//! Credentials (the worker's service account, which needs `roles/storage.objectUser` on the
//! bucket: `infra/gcp`).

use std::time::Duration;

use crate::google_auth::GoogleAuth;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use crate::webhook_relay::dedupe::attempt_log::AttemptLog;
use crate::webhook_relay::dedupe::{ClaimStore, DedupeWindow, Holder};

/// The bucket the push worker keeps its dedupe claims in; unset: no dedupe window on GCP.
pub const ENV_DEDUPE_BUCKET: &str = "TAPLINE_RELAY_DEDUPE_BUCKET";

/// The dedupe window with its claims in Cloud Storage.
pub type GcsDedupe = DedupeWindow<GcsObjects>;

/// A claim call is on the delivery's path: short, and a failure delivers anyway.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const BOUNDARY: &str = "tapline-claim-7d3f1c";
const META_PAYLOAD: &str = "payload-id";
const META_RECEIVED: &str = "received-at-ms";

/// Claims and attempt records as objects of one GCS bucket, over the JSON API.
#[derive(Debug, Clone)]
pub struct GcsObjects {
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

impl GcsObjects {
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
        let (endpoint, auth) = crate::google_auth::storage_from_env()?;
        Ok(Self::new(&endpoint, auth, bucket)?)
    }

    /// `…/storage/v1/b/BUCKET/o/NAME`, the name one path segment (its slashes as %2F).
    fn object_url(&self, key: &str) -> Result<reqwest::Url, String> {
        let mut url = self.objects_url()?;
        url.path_segments_mut()
            .map_err(|_| "bad storage endpoint".to_string())?
            .push(key);
        Ok(url)
    }

    fn objects_url(&self) -> Result<reqwest::Url, String> {
        reqwest::Url::parse(&format!("{}/storage/v1/b/{}/o", self.endpoint, self.bucket))
            .map_err(|e| format!("bad storage endpoint: {e}"))
    }

    /// `POST …/upload/storage/v1/b/BUCKET/o?QUERY`: the answer, whatever its status.
    async fn post_upload(
        &self,
        query: &[(&str, &str)],
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, String> {
        self.http
            .post(format!(
                "{}/upload/storage/v1/b/{}/o",
                self.endpoint, self.bucket
            ))
            .query(query)
            .headers(self.headers().await?)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("upload failed: {}", e.without_url()))
    }

    /// A GET that must answer 2xx.
    async fn get_ok(&self, url: reqwest::Url, what: &str) -> Result<reqwest::Response, String> {
        let response = self
            .http
            .get(url)
            .headers(self.headers().await?)
            .send()
            .await
            .map_err(|e| format!("{what} failed: {}", e.without_url()))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(http_error(what, response).await)
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
            .post_upload(
                &[
                    ("uploadType", "multipart"),
                    ("ifGenerationMatch", generation),
                ],
                &format!("multipart/related; boundary={BOUNDARY}"),
                body.into_bytes(),
            )
            .await?;
        match response.status().as_u16() {
            200..=299 => Ok(true),
            412 => Ok(false),
            _ => Err(http_error("upload", response).await),
        }
    }
}

#[async_trait]
impl ClaimStore for GcsObjects {
    async fn create(
        &self,
        key: &str,
        payload_id: &str,
        received_at_ms: i64,
    ) -> Result<bool, String> {
        self.upload(key, "0", payload_id, received_at_ms).await
    }

    async fn read(&self, key: &str) -> Result<Option<Holder>, String> {
        let response = self
            .http
            .get(self.object_url(key)?)
            .headers(self.headers().await?)
            .send()
            .await
            .map_err(|e| format!("read failed: {}", e.without_url()))?;
        match response.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            _ => return Err(http_error("read", response).await),
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

async fn http_error(what: &str, response: reqwest::Response) -> String {
    let status = response.status().as_u16();
    format!(
        "{what} answered HTTP {status}: {}",
        response.text().await.unwrap_or_default().trim()
    )
}

/// One page of objects.list (names only).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListPage {
    #[serde(default)]
    items: Vec<ListedName>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct ListedName {
    name: String,
}

#[async_trait]
impl AttemptLog for GcsObjects {
    async fn put_record(&self, key: &str, body: Vec<u8>) -> Result<(), String> {
        let response = self
            .post_upload(
                &[("uploadType", "media"), ("name", key)],
                "application/json",
                body,
            )
            .await?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(http_error("upload", response).await)
    }

    async fn records_under(&self, prefix: &str) -> Result<Vec<Vec<u8>>, String> {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = self.objects_url()?;
            url.query_pairs_mut()
                .append_pair("prefix", prefix)
                .append_pair("fields", "items(name),nextPageToken");
            if let Some(token) = &token {
                url.query_pairs_mut().append_pair("pageToken", token);
            }
            let page: ListPage = self
                .get_ok(url, "list")
                .await?
                .json()
                .await
                .map_err(|e| format!("list returned no object list: {e}"))?;
            names.extend(page.items.into_iter().map(|i| i.name));
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        names.sort();
        let mut bodies = Vec::with_capacity(names.len());
        for name in names {
            let mut url = self.object_url(&name)?;
            url.query_pairs_mut().append_pair("alt", "media");
            let body = self
                .get_ok(url, "download")
                .await?
                .bytes()
                .await
                .map_err(|e| format!("download failed: {}", e.without_url()))?;
            bodies.push(body.to_vec());
        }
        Ok(bodies)
    }
}
