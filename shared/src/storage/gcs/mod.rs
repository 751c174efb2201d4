//! Google Cloud Storage: [`GcsStore`], the one client of Cloud Storage's JSON API over `reqwest`
//! (listing, uploads, small reads, and puts with generation preconditions: `ifGenerationMatch=0`
//! only if absent, `=<generation>` only at that generation), and, with the `gcs` feature,
//! [`GcsSource`], which streams exports through Google's official crate.
//!
//! Endpoint: `STORAGE_EMULATOR_HOST` when set (Google's convention for emulators), with no
//! credentials. Otherwise `https://storage.googleapis.com` with Application Default Credentials.

#[cfg(feature = "gcs")]
mod source;

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{NewObject, ObjectEntry, ObjectMeta, ObjectStore, PutMode, StoreError, StoredObject};
use crate::google_auth::GoogleAuth;

pub use crate::google_auth::ENV_STORAGE_EMULATOR_HOST;
#[cfg(feature = "gcs")]
pub use source::GcsSource;

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

/// A token that could not be had: a passing failure (the metadata server slow or restarting, a
/// token endpoint's 5xx) may succeed on the next call, so it is not a refusal; bad or missing
/// credentials are ([`io::ErrorKind::PermissionDenied`], never retried).
pub(crate) fn credentials_error_kind(err: &crate::google_auth::CredentialsError) -> io::ErrorKind {
    if err.is_transient() {
        io::ErrorKind::Other
    } else {
        io::ErrorKind::PermissionDenied
    }
}

fn from_reqwest(err: reqwest::Error) -> io::Error {
    let kind = err
        .status()
        .map(|s| kind_for_status(s.as_u16()))
        .unwrap_or(io::ErrorKind::Other);
    // Without the URL: it can carry a signed query string.
    io::Error::new(kind, err.without_url())
}

/// An answer that is not a success, as an error of its status's kind with GCS's message.
async fn status_error(what: &str, response: reqwest::Response) -> io::Error {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or(body);
    io::Error::new(
        kind_for_status(status.as_u16()),
        format!("{what} failed with HTTP {status}: {}", detail.trim()),
    )
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
    /// RFC 3339; kept as text so that a value that does not parse is unknown, not an error.
    #[serde(default, rename = "timeCreated")]
    time_created: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

/// Cloud Storage's JSON API: the client every GCS call of Tapline goes through, except the
/// streaming reads of [`GcsSource`].
#[derive(Debug, Clone)]
pub struct GcsStore {
    http: reqwest::Client,
    endpoint: String,
    auth: GoogleAuth,
}

impl GcsStore {
    /// A store at `endpoint` (`https://storage.googleapis.com`, or an emulator's URL) whose
    /// calls each give up after `timeout`.
    pub fn new(
        endpoint: &str,
        auth: GoogleAuth,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: reqwest::Client::builder()
                .connect_timeout(timeout)
                .timeout(timeout)
                .build()?,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            auth,
        })
    }

    /// A store where the environment says: `STORAGE_EMULATOR_HOST` (anonymous), else Google's
    /// endpoint with Application Default Credentials.
    pub fn from_env(timeout: Duration) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let (endpoint, auth) = crate::google_auth::storage_from_env()?;
        Ok(Self::new(&endpoint, auth, timeout)?)
    }

    async fn headers(&self) -> io::Result<reqwest::header::HeaderMap> {
        self.auth
            .headers()
            .await
            .map_err(|e| io::Error::new(credentials_error_kind(&e), e))
    }

    /// `…/storage/v1/b/BUCKET/o/NAME`, the name one path segment (its slashes as %2F).
    fn object_url(&self, bucket: &str, name: &str) -> io::Result<reqwest::Url> {
        let mut url = reqwest::Url::parse(&format!("{}/storage/v1/b", self.endpoint))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        url.path_segments_mut()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad storage endpoint"))?
            .extend([bucket, "o", name]);
        Ok(url)
    }

    fn upload_url(&self, bucket: &str) -> String {
        format!("{}/upload/storage/v1/b/{bucket}/o", self.endpoint)
    }

    /// One page of objects under `prefix`.
    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        page_token: Option<&str>,
    ) -> io::Result<ObjectsPage> {
        let url = format!("{}/storage/v1/b/{bucket}/o", self.endpoint);
        let mut query = vec![
            ("prefix", prefix),
            (
                "fields",
                "items(name,generation,size,timeCreated),nextPageToken",
            ),
        ];
        if let Some(token) = page_token {
            query.push(("pageToken", token));
        }
        let response = self
            .http
            .get(url)
            .query(&query)
            .headers(self.headers().await?)
            .send()
            .await
            .map_err(from_reqwest)?;
        if !response.status().is_success() {
            return Err(status_error("listing", response).await);
        }
        response.json().await.map_err(from_reqwest)
    }

    /// Every object of `bucket` whose name starts with `prefix`, in name order.
    pub async fn list_objects(&self, bucket: &str, prefix: &str) -> io::Result<Vec<ObjectEntry>> {
        let mut entries = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.list_page(bucket, prefix, token.as_deref()).await?;
            entries.extend(page.items.into_iter().map(|object| ObjectEntry {
                uri: format!("gs://{bucket}/{}", object.name),
                size: object.size.and_then(|s| s.parse().ok()),
                version: object.generation,
                key: object.name,
                created_at: object.time_created.and_then(|t| t.parse().ok()),
            }));
            match page.next_page_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => break,
            }
        }
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(entries)
    }

    /// A single media upload (`uploadType=media`) of the file at `path` as `gs://bucket/name`:
    /// GCS creates the object's new generation only when the whole body arrived.
    pub async fn upload_file(&self, uri: &str, path: &std::path::Path) -> io::Result<()> {
        let (bucket, name) = parse_gs_uri(uri)
            .filter(|(_, name)| !name.is_empty())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "expected gs://BUCKET/NAME")
            })?;
        let file = tokio::fs::File::open(path).await?;
        let length = file.metadata().await?.len();
        let response = self
            .http
            .post(self.upload_url(bucket))
            .query(&[("uploadType", "media"), ("name", name)])
            .headers(self.headers().await?)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, length)
            .body(reqwest::Body::from(file))
            .send()
            .await
            .map_err(from_reqwest)?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(status_error("upload", response).await)
    }

    /// The object resource of `gs://bucket/name`.
    async fn resource(&self, bucket: &str, name: &str) -> io::Result<ListedObject> {
        let response = self
            .http
            .get(self.object_url(bucket, name)?)
            .query(&[("fields", "name,generation,size,metadata")])
            .headers(self.headers().await?)
            .send()
            .await
            .map_err(from_reqwest)?;
        if !response.status().is_success() {
            return Err(status_error("read", response).await);
        }
        response.json().await.map_err(from_reqwest)
    }
}

/// The bucket and name of an object uri, or an `InvalidInput` failure.
fn object_of(uri: &str) -> Result<(&str, &str), StoreError> {
    parse_gs_uri(uri)
        .filter(|(_, name)| !name.is_empty())
        .ok_or_else(|| StoreError::Failed {
            uri: uri.to_string(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "expected gs://BUCKET/NAME"),
        })
}

/// A multipart boundary that does not occur in `body`.
fn boundary_for(body: &[u8]) -> String {
    (0u32..)
        .map(|n| format!("tapline-object-{n:08x}"))
        .find(|b| !body.windows(b.len()).any(|w| w == b.as_bytes()))
        .expect("a boundary")
}

#[async_trait]
impl ObjectStore for GcsStore {
    /// A multipart upload (`uploadType=multipart`: the resource with its metadata and the body
    /// in one request), which fake-gcs-server also checks preconditions on.
    async fn put(&self, uri: &str, object: NewObject, mode: PutMode) -> Result<String, StoreError> {
        let (bucket, name) = object_of(uri)?;
        let failed = |source: io::Error| StoreError::from_io(uri, source);
        let generation = match &mode {
            PutMode::Overwrite => None,
            PutMode::Create => Some("0"),
            // Generation 0 would mean "only if absent": never replace on an unreadable one.
            PutMode::Replace(version) if version.is_empty() || version == "0" => {
                return Err(StoreError::Precondition {
                    uri: uri.to_string(),
                });
            }
            PutMode::Replace(version) => Some(version.as_str()),
        };
        let mut resource = serde_json::json!({ "name": name, "metadata": object.metadata });
        if let Some(content_type) = &object.content_type {
            resource["contentType"] = content_type.as_str().into();
        }
        let boundary = boundary_for(&object.body);
        let part_type = object
            .content_type
            .as_deref()
            .unwrap_or("application/octet-stream");
        let mut body = format!(
            "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{resource}\r\n\
             --{boundary}\r\nContent-Type: {part_type}\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&object.body);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let mut query = vec![("uploadType", "multipart")];
        if let Some(generation) = generation {
            query.push(("ifGenerationMatch", generation));
        }
        let response = self
            .http
            .post(self.upload_url(bucket))
            .query(&query)
            .headers(self.headers().await.map_err(failed)?)
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/related; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| failed(from_reqwest(e)))?;
        match response.status().as_u16() {
            200..=299 => {}
            412 => {
                return Err(StoreError::Precondition {
                    uri: uri.to_string(),
                });
            }
            // A missing bucket is a failure of the store, not a missing object.
            _ => {
                return Err(StoreError::Failed {
                    uri: uri.to_string(),
                    source: status_error("upload", response).await,
                });
            }
        }
        let stored: ListedObject = response.json().await.map_err(|e| failed(from_reqwest(e)))?;
        Ok(stored.generation)
    }

    async fn head(&self, uri: &str) -> Result<ObjectMeta, StoreError> {
        let (bucket, name) = object_of(uri)?;
        let object = self
            .resource(bucket, name)
            .await
            .map_err(|e| StoreError::from_io(uri, e))?;
        Ok(ObjectMeta {
            version: object.generation,
            metadata: object.metadata,
        })
    }

    /// The resource, then the bytes of exactly that generation.
    async fn get(&self, uri: &str) -> Result<StoredObject, StoreError> {
        let (bucket, name) = object_of(uri)?;
        let failed = |source: io::Error| StoreError::from_io(uri, source);
        let object = self.resource(bucket, name).await.map_err(failed)?;
        let response = self
            .http
            .get(self.object_url(bucket, name).map_err(failed)?)
            .query(&[("alt", "media"), ("generation", object.generation.as_str())])
            .headers(self.headers().await.map_err(failed)?)
            .send()
            .await
            .map_err(|e| failed(from_reqwest(e)))?;
        if !response.status().is_success() {
            return Err(failed(status_error("download", response).await));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| failed(from_reqwest(e)))?;
        Ok(StoredObject {
            meta: ObjectMeta {
                version: object.generation,
                metadata: object.metadata,
            },
            body: body.to_vec(),
        })
    }

    async fn delete(&self, uri: &str) -> Result<(), StoreError> {
        let (bucket, name) = object_of(uri)?;
        let failed = |source: io::Error| StoreError::from_io(uri, source);
        let response = self
            .http
            .delete(self.object_url(bucket, name).map_err(failed)?)
            .headers(self.headers().await.map_err(failed)?)
            .send()
            .await
            .map_err(|e| failed(from_reqwest(e)))?;
        match response.status().as_u16() {
            200..=299 | 404 => Ok(()),
            _ => Err(failed(status_error("delete", response).await)),
        }
    }

    async fn list_prefix(&self, prefix: &str) -> Result<Vec<ObjectEntry>, StoreError> {
        let failed = |source: io::Error| StoreError::Failed {
            uri: prefix.to_string(),
            source,
        };
        let (bucket, name_prefix) = parse_gs_uri(prefix).ok_or_else(|| {
            failed(io::Error::new(
                io::ErrorKind::InvalidInput,
                "expected gs://BUCKET/PREFIX",
            ))
        })?;
        self.list_objects(bucket, name_prefix).await.map_err(failed)
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
        use crate::google_auth::CredentialsError;
        assert_eq!(
            credentials_error_kind(&CredentialsError::from_msg(true, "metadata server: 503")),
            io::ErrorKind::Other,
            "a passing failure is retried"
        );
        assert_eq!(
            credentials_error_kind(&CredentialsError::from_msg(false, "no credentials")),
            io::ErrorKind::PermissionDenied
        );
        assert_eq!(kind_for_status(503), io::ErrorKind::Other);
        assert_eq!(kind_for_status(429), io::ErrorKind::Other);
    }

    #[test]
    fn the_multipart_boundary_is_not_in_the_body() {
        assert_eq!(boundary_for(b"{}"), "tapline-object-00000000");
        assert_eq!(
            boundary_for(b"x--tapline-object-00000000--"),
            "tapline-object-00000001"
        );
    }
}
