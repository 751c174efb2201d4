//! Google Cloud Storage as an export source.
//!
//! Reads stream through Google's official `google-cloud-storage` crate, pinned to the listed
//! generation. Listing uses the JSON API over `reqwest`, because the official crate lists only
//! through its gRPC control client, which no emulator speaks; the JSON API is the same against
//! GCS and fake-gcs-server.
//!
//! Endpoint: `STORAGE_EMULATOR_HOST` when set (Google's convention for emulators; the official
//! crate does not read it, so we pass it to `with_endpoint`), with no credentials. Otherwise
//! `https://storage.googleapis.com` with Application Default Credentials.

use std::io::{self, Read};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_storage::client::Storage;
use google_cloud_storage::read_object::ReadObjectResponse;
use google_cloud_storage::retry_policy::RetryableErrors;
use serde::Deserialize;

use super::{ObjectEntry, ObjectSource};
use crate::Error;
use crate::google_auth::GoogleAuth;

pub use crate::google_auth::ENV_STORAGE_EMULATOR_HOST;
/// How long one read or listing may keep retrying transient errors before it is reported
/// (retryable) to the caller, who retries the whole file later.
const RETRY_TIME_LIMIT: Duration = Duration::from_secs(60);
const RETRY_ATTEMPTS: u32 = 5;

/// Reads exports from GCS. Locations are `gs://bucket/prefix`.
#[derive(Debug, Clone)]
pub struct GcsSource {
    storage: Storage,
    http: reqwest::Client,
    endpoint: String,
    auth: GoogleAuth,
}

/// Splits `gs://bucket/prefix` into bucket and prefix.
pub fn parse_gs_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("gs://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, prefix))
}

/// An error kind from an HTTP status: what will not change by retrying is not retried.
fn kind_for_status(status: u16) -> io::ErrorKind {
    match status {
        404 => io::ErrorKind::NotFound,
        401 | 403 => io::ErrorKind::PermissionDenied,
        400 => io::ErrorKind::InvalidInput,
        _ => io::ErrorKind::Other,
    }
}

fn from_gax(err: google_cloud_storage::Error) -> io::Error {
    let kind = match err.http_status_code() {
        Some(status) => kind_for_status(status),
        None if err.is_authentication() => io::ErrorKind::PermissionDenied,
        None => io::ErrorKind::Other,
    };
    io::Error::new(kind, err)
}

fn from_reqwest(err: reqwest::Error) -> io::Error {
    let kind = err
        .status()
        .map(|s| kind_for_status(s.as_u16()))
        .unwrap_or(io::ErrorKind::Other);
    // Without the URL: it can carry a signed query string.
    io::Error::new(kind, err.without_url())
}

/// One page of `GET /storage/v1/b/BUCKET/o` (JSON API, objects.list).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectsPage {
    #[serde(default)]
    items: Vec<ListedObject>,
    next_page_token: Option<String>,
}

/// The fields of an object resource we use; int64 values come as strings in the JSON API.
#[derive(Deserialize)]
struct ListedObject {
    name: String,
    generation: String,
    size: Option<String>,
}

impl GcsSource {
    /// A source configured the way Google's libraries are: `STORAGE_EMULATOR_HOST` (anonymous)
    /// or production with Application Default Credentials.
    pub async fn from_env() -> Result<Self, Error> {
        let config_err = |detail: String| Error::Source {
            uri: "gs://".to_string(),
            source: io::Error::new(io::ErrorKind::PermissionDenied, detail),
        };
        let (endpoint, auth) = crate::google_auth::storage_from_env().map_err(|e| {
            config_err(format!(
                "Google Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, \
                 gcloud's application_default_credentials.json, the metadata server): {e}"
            ))
        })?;
        Self::new(&endpoint, auth).await
    }

    /// A source for `endpoint` (`https://storage.googleapis.com`, or an emulator's URL).
    pub async fn new(endpoint: &str, auth: GoogleAuth) -> Result<Self, Error> {
        let storage = Storage::builder()
            .with_endpoint(endpoint)
            .with_credentials(auth.credentials())
            .with_retry_policy(
                RetryableErrors
                    .with_time_limit(RETRY_TIME_LIMIT)
                    .with_attempt_limit(RETRY_ATTEMPTS),
            )
            .build()
            .await
            .map_err(|e| Error::Source {
                uri: "gs://".to_string(),
                source: io::Error::other(e),
            })?;
        let http = reqwest::Client::builder()
            .timeout(RETRY_TIME_LIMIT)
            .build()
            .map_err(|e| Error::Source {
                uri: "gs://".to_string(),
                source: io::Error::other(e),
            })?;
        Ok(Self {
            storage,
            http,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            auth,
        })
    }

    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        page_token: Option<&str>,
    ) -> io::Result<ObjectsPage> {
        let url = format!("{}/storage/v1/b/{bucket}/o", self.endpoint);
        let mut query = vec![
            ("prefix", prefix),
            ("fields", "items(name,generation,size),nextPageToken"),
        ];
        if let Some(token) = page_token {
            query.push(("pageToken", token));
        }
        let headers = self
            .auth
            .headers()
            .await
            .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e))?;
        let response = self
            .http
            .get(url)
            .query(&query)
            .headers(headers)
            .send()
            .await
            .map_err(from_reqwest)?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let detail = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or(body);
            return Err(io::Error::new(
                kind_for_status(status.as_u16()),
                format!("listing failed with HTTP {status}: {detail}"),
            ));
        }
        response.json().await.map_err(from_reqwest)
    }
}

#[async_trait]
impl ObjectSource for GcsSource {
    async fn list(&self, location: &str) -> Result<Vec<ObjectEntry>, Error> {
        let source_err = |source: io::Error| Error::Source {
            uri: location.to_string(),
            source,
        };
        let (bucket, prefix) = parse_gs_uri(location).ok_or_else(|| {
            source_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "expected gs://BUCKET/PREFIX",
            ))
        })?;
        let mut entries = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .list_page(bucket, prefix, token.as_deref())
                .await
                .map_err(source_err)?;
            entries.extend(page.items.into_iter().map(|object| ObjectEntry {
                uri: format!("gs://{bucket}/{}", object.name),
                size: object.size.and_then(|s| s.parse().ok()),
                version: object.generation,
                key: object.name,
            }));
            match page.next_page_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => break,
            }
        }
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(entries)
    }

    async fn open(&self, entry: &ObjectEntry) -> Result<Box<dyn Read + Send>, Error> {
        let source_err = |source: io::Error| Error::Source {
            uri: entry.uri.clone(),
            source,
        };
        let (bucket, key) = parse_gs_uri(&entry.uri).ok_or_else(|| {
            source_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a gs:// uri",
            ))
        })?;
        let mut request = self
            .storage
            .read_object(format!("projects/_/buckets/{bucket}"), key);
        if let Ok(generation) = entry.version.parse::<i64>() {
            // Read exactly the generation the ledger will record; a newer one is loaded by its
            // own event or the next sweep.
            request = request.set_generation(generation);
        }
        let response = request.send().await.map_err(|e| source_err(from_gax(e)))?;
        Ok(Box::new(GcsReader {
            response,
            pending: Bytes::new(),
            runtime: tokio::runtime::Handle::current(),
        }))
    }
}

/// A blocking reader over a streaming download, for the parser's blocking thread.
struct GcsReader {
    response: ReadObjectResponse,
    pending: Bytes,
    runtime: tokio::runtime::Handle,
}

impl Read for GcsReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pending.is_empty() {
            match self.runtime.block_on(self.response.next()) {
                None => return Ok(0),
                Some(Ok(chunk)) => self.pending = chunk,
                Some(Err(e)) => return Err(from_gax(e)),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        Ok(n)
    }
}

#[async_trait]
impl super::ObjectSink for GcsSource {
    /// A single media upload (`uploadType=media`): GCS creates the object's new generation
    /// only when the whole body arrived.
    async fn put_file(&self, uri: &str, path: &std::path::Path) -> io::Result<()> {
        let (bucket, name) = parse_gs_uri(uri)
            .filter(|(_, name)| !name.is_empty())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "expected gs://BUCKET/NAME")
            })?;
        let file = tokio::fs::File::open(path).await?;
        let length = file.metadata().await?.len();
        let headers = self
            .auth
            .headers()
            .await
            .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e))?;
        let response = self
            .http
            .post(format!("{}/upload/storage/v1/b/{bucket}/o", self.endpoint))
            .query(&[("uploadType", "media"), ("name", name)])
            .headers(headers)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, length)
            .body(reqwest::Body::from(file))
            .send()
            .await
            .map_err(from_reqwest)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(io::Error::new(
            kind_for_status(status.as_u16()),
            format!("upload failed with HTTP {status}: {}", body.trim()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gs_uris_split_into_bucket_and_prefix() {
        assert_eq!(
            parse_gs_uri("gs://b/exports/x.csv.gz"),
            Some(("b", "exports/x.csv.gz"))
        );
        assert_eq!(parse_gs_uri("gs://b"), Some(("b", "")));
        assert_eq!(parse_gs_uri("gs:///k"), None);
        assert_eq!(parse_gs_uri("s3://b/k"), None);
    }

    #[test]
    fn statuses_that_retrying_cannot_fix_are_not_retried() {
        assert_eq!(kind_for_status(404), io::ErrorKind::NotFound);
        assert_eq!(kind_for_status(403), io::ErrorKind::PermissionDenied);
        assert_eq!(kind_for_status(503), io::ErrorKind::Other);
        assert_eq!(kind_for_status(429), io::ErrorKind::Other);
    }
}
