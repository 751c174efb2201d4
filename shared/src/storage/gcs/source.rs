//! Google Cloud Storage as an export source: reads stream through Google's official
//! `google-cloud-storage` crate, pinned to the listed generation; listing and uploads go through
//! [`GcsStore`] (the JSON API), because the official crate lists only through its gRPC control
//! client, which no emulator speaks. The official crate does not read `STORAGE_EMULATOR_HOST`,
//! so the endpoint is passed to `with_endpoint`.

use std::io::{self, Read};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_storage::client::Storage;
use google_cloud_storage::read_object::ReadObjectResponse;
use google_cloud_storage::retry_policy::RetryableErrors;

use super::{GcsStore, kind_for_status, parse_gs_uri};
use crate::Error;
use crate::google_auth::GoogleAuth;
use crate::storage::{ObjectEntry, ObjectSource};

/// How long one read or listing may keep retrying transient errors before it is reported
/// (retryable) to the caller, who retries the whole file later.
const RETRY_TIME_LIMIT: Duration = Duration::from_secs(60);
const RETRY_ATTEMPTS: u32 = 5;

/// Reads exports from GCS. Locations are `gs://bucket/prefix`.
#[derive(Debug, Clone)]
pub struct GcsSource {
    storage: Storage,
    objects: GcsStore,
}

fn from_gax(err: google_cloud_storage::Error) -> io::Error {
    let kind = match err.http_status_code() {
        Some(status) => kind_for_status(status),
        None if err.is_authentication() => {
            // A token that could not be had: retried when the failure was a passing one.
            match std::error::Error::source(&err)
                .and_then(|e| e.downcast_ref::<crate::google_auth::CredentialsError>())
            {
                Some(credentials) => super::credentials_error_kind(credentials),
                None => io::ErrorKind::PermissionDenied,
            }
        }
        None => io::ErrorKind::Other,
    };
    io::Error::new(kind, err)
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
        let objects =
            GcsStore::new(endpoint, auth, RETRY_TIME_LIMIT).map_err(|e| Error::Source {
                uri: "gs://".to_string(),
                source: io::Error::other(e),
            })?;
        Ok(Self { storage, objects })
    }

    /// The JSON API client beside the streaming reads: conditional puts, small objects.
    pub fn objects(&self) -> &GcsStore {
        &self.objects
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
        self.objects
            .list_objects(bucket, prefix)
            .await
            .map_err(source_err)
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
impl crate::storage::ObjectSink for GcsSource {
    async fn put_file(&self, uri: &str, path: &std::path::Path) -> io::Result<()> {
        self.objects.upload_file(uri, path).await
    }
}
