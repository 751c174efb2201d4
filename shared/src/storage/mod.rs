//! The storage ports: [`ObjectSource`] lists export objects and streams one, [`ObjectSink`] puts
//! a finished file into a bucket whole, and [`ObjectStore`] keeps small objects with conditional
//! writes (create only if absent, replace only at the version read) for the relay's claims.
//!
//! Reads are synchronous `Read`s because parsing is: cloud adapters bridge their async byte
//! streams into a reader on a blocking thread, so memory stays flat.

#[cfg(feature = "gcs-objects")]
pub mod gcs;
pub mod local;
#[cfg(feature = "s3")]
pub mod s3;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use async_trait::async_trait;

use crate::Error;

/// One object a source can stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    /// Its full address (`file:///abs/path`, `s3://bucket/key`): the ledger key.
    pub uri: String,
    /// The path used to recognise it: the object key, or a local path relative to the folder
    /// that was listed (folder names such as `events/` are hints).
    pub key: String,
    /// What changes when the content does: ETag, generation, or size and mtime.
    pub version: String,
    /// Size in bytes, when known.
    pub size: Option<u64>,
    /// When the object was created in its bucket, as the store says (S3 `LastModified`, GCS
    /// `timeCreated`, a local file's mtime); `None` when unknown. Untrusted: read it through
    /// [`Self::plausible_created_at`].
    pub created_at: Option<jiff::Timestamp>,
}

/// How far past now a creation time may be and still be believed: clocks of a store and of the
/// loader differ by seconds, not minutes.
pub const MAX_CLOCK_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

/// The earliest creation time believed (2010-01-01T00:00:00Z): CleverTap exports are younger;
/// an earlier time is a default or a forged value (a file touched to 1970).
pub const EARLIEST_CREATION_SECOND: i64 = 1_262_304_000;

impl ObjectEntry {
    /// [`Self::created_at`] when it is believable at `now`: from 2010 on and no more than
    /// [`MAX_CLOCK_SKEW`] ahead; otherwise unknown. Never an error: a hostile time costs the
    /// freshness figure, not the load.
    pub fn plausible_created_at(&self, now: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let at = self.created_at?;
        let latest = now.checked_add(MAX_CLOCK_SKEW).ok()?;
        (at.as_second() >= EARLIEST_CREATION_SECOND && at <= latest).then_some(at)
    }
}

/// A place export objects are read from.
#[async_trait]
pub trait ObjectSource: Send + Sync {
    /// Every object at `location` (a single object, or everything under a folder or prefix),
    /// in a stable order.
    async fn list(&self, location: &str) -> Result<Vec<ObjectEntry>, Error>;

    /// A reader over the object's bytes as stored (still compressed).
    async fn open(&self, entry: &ObjectEntry) -> Result<Box<dyn Read + Send>, Error>;
}

/// The source for a location: `s3://…` (with the `s3` feature), `gs://…` (with the `gcs`
/// feature), otherwise a local path.
pub async fn source_for(location: &str) -> Result<std::sync::Arc<dyn ObjectSource>, Error> {
    if location.starts_with("s3://") {
        #[cfg(feature = "s3")]
        return Ok(std::sync::Arc::new(s3::S3Source::from_env().await));
        #[cfg(not(feature = "s3"))]
        return Err(Error::Source {
            uri: location.to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "this build reads no S3 (the `s3` feature is off)",
            ),
        });
    }
    if location.starts_with("gs://") {
        #[cfg(feature = "gcs")]
        return Ok(std::sync::Arc::new(gcs::GcsSource::from_env().await?));
        #[cfg(not(feature = "gcs"))]
        return Err(Error::Source {
            uri: location.to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "this build reads no Google Cloud Storage (the `gcs` feature is off)",
            ),
        });
    }
    Ok(std::sync::Arc::new(local::LocalSource))
}

/// A place finished files are put, whole: the object appears complete or not at all (a single
/// S3 PutObject, a single GCS upload), so a reader never sees part of a file.
#[async_trait]
pub trait ObjectSink: Send + Sync {
    /// Uploads the local file at `path` as the object `uri` (`s3://bucket/key`,
    /// `gs://bucket/name`), replacing an object of that name.
    async fn put_file(&self, uri: &str, path: &Path) -> std::io::Result<()>;
}

/// The sink for a bucket location: `s3://…` (with the `s3` feature) or `gs://…` (with the
/// `gcs` feature); anything else is not a bucket.
pub async fn sink_for(location: &str) -> Result<std::sync::Arc<dyn ObjectSink>, Error> {
    let unsupported = |detail: &str| Error::Source {
        uri: location.to_string(),
        source: std::io::Error::new(std::io::ErrorKind::Unsupported, detail.to_string()),
    };
    if location.starts_with("s3://") {
        #[cfg(feature = "s3")]
        return Ok(std::sync::Arc::new(s3::S3Source::from_env().await));
        #[cfg(not(feature = "s3"))]
        return Err(unsupported(
            "this build writes no S3 (the `s3` feature is off)",
        ));
    }
    if location.starts_with("gs://") {
        #[cfg(feature = "gcs")]
        return Ok(std::sync::Arc::new(gcs::GcsSource::from_env().await?));
        #[cfg(not(feature = "gcs"))]
        return Err(unsupported(
            "this build writes no Google Cloud Storage (the `gcs` feature is off)",
        ));
    }
    Err(unsupported(
        "not a bucket: use s3://BUCKET/PREFIX or gs://BUCKET/PREFIX",
    ))
}

/// The [`ObjectStore`] for an object's uri: `s3://…` (with the `s3` feature), `gs://…` (with the
/// `gcs-objects` feature, `STORAGE_EMULATOR_HOST` or Application Default Credentials), else
/// local files (`file:///ABSOLUTE/PATH`). Build it once and keep it.
pub async fn store_for(uri: &str) -> Result<std::sync::Arc<dyn ObjectStore>, Error> {
    let failed = |source: std::io::Error| Error::Source {
        uri: uri.to_string(),
        source,
    };
    if uri.starts_with("s3://") {
        #[cfg(feature = "s3")]
        return Ok(std::sync::Arc::new(s3::S3Source::from_env().await));
        #[cfg(not(feature = "s3"))]
        return Err(failed(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "this build writes no S3 (the `s3` feature is off)",
        )));
    }
    if uri.starts_with("gs://") {
        // A small object per call: a minute is ample, and a stuck call does not hold a run.
        #[cfg(feature = "gcs-objects")]
        return gcs::GcsStore::from_env(std::time::Duration::from_secs(60))
            .map(|store| std::sync::Arc::new(store) as std::sync::Arc<dyn ObjectStore>)
            .map_err(|e| failed(std::io::Error::other(e)));
        #[cfg(not(feature = "gcs-objects"))]
        return Err(failed(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "this build writes no Google Cloud Storage (the `gcs-objects` feature is off)",
        )));
    }
    Ok(std::sync::Arc::new(local::LocalSource))
}

/// When a [`ObjectStore::put`] may happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutMode {
    /// Whatever is there (last writer wins).
    Overwrite,
    /// Only if no object has the name (S3 `If-None-Match: *`, GCS `ifGenerationMatch=0`).
    Create,
    /// Only if the object is still at this version (S3 `If-Match`, GCS `ifGenerationMatch`).
    Replace(String),
}

/// A small object to put: its bytes, content type and custom metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewObject {
    /// The content.
    pub body: Vec<u8>,
    /// `Content-Type`, when it matters to readers.
    pub content_type: Option<String>,
    /// Custom metadata (S3 `x-amz-meta-*`, GCS `metadata`); names in lower case.
    pub metadata: BTreeMap<String, String>,
}

/// What a store holds for an object, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The version a [`PutMode::Replace`] names: ETag, generation, or size and mtime.
    pub version: String,
    /// Its custom metadata.
    pub metadata: BTreeMap<String, String>,
}

/// An object read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Its version and metadata.
    pub meta: ObjectMeta,
    /// Its bytes.
    pub body: Vec<u8>,
}

/// Why an [`ObjectStore`] call did not do what was asked, grouped by meaning.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No object has that name.
    #[error("{uri} does not exist")]
    NotFound {
        /// The object.
        uri: String,
    },
    /// A conditional put was refused: the object exists ([`PutMode::Create`]) or is no longer
    /// at the version named ([`PutMode::Replace`]).
    #[error("{uri} exists or changed since it was read")]
    Precondition {
        /// The object.
        uri: String,
    },
    /// The store could not be asked or refused for another reason.
    #[error("{uri}: {source}")]
    Failed {
        /// The object or prefix.
        uri: String,
        /// What the store said; its kind tells whether retrying can help.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// Sorts an I/O error: not found and precondition kinds become their own variants.
    pub fn from_io(uri: &str, source: std::io::Error) -> Self {
        let uri = uri.to_string();
        match source.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound { uri },
            _ => StoreError::Failed { uri, source },
        }
    }

    /// Whether the same call may succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::NotFound { .. } | StoreError::Precondition { .. } => false,
            StoreError::Failed { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::InvalidInput
                    | std::io::ErrorKind::Unsupported
            ),
        }
    }
}

/// A place small objects are kept and changed only on conditions, so that two writers never
/// both win: the relay's dedupe claims, attempt records and large bodies. Objects are named by
/// uri (`s3://bucket/key`, `gs://bucket/name`, `file:///path`) and read whole: keep them small.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Puts `object` at `uri` when `mode` allows; the new version.
    async fn put(&self, uri: &str, object: NewObject, mode: PutMode) -> Result<String, StoreError>;
    /// The object's version and metadata.
    async fn head(&self, uri: &str) -> Result<ObjectMeta, StoreError>;
    /// The object with its bytes.
    async fn get(&self, uri: &str) -> Result<StoredObject, StoreError>;
    /// Removes the object; removing one that is not there is not an error.
    async fn delete(&self, uri: &str) -> Result<(), StoreError>;
    /// The objects whose uri starts with `prefix`, in key order.
    async fn list_prefix(&self, prefix: &str) -> Result<Vec<ObjectEntry>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plausible_creation_times_are_believed() {
        let now: jiff::Timestamp = "2026-12-07T12:00:00Z".parse().unwrap();
        let believed = |t: &str| {
            ObjectEntry {
                uri: "s3://b/k".into(),
                key: "k".into(),
                version: "v".into(),
                size: None,
                created_at: Some(t.parse().unwrap()),
            }
            .plausible_created_at(now)
            .map(|t| t.to_string())
        };
        assert_eq!(
            believed("2026-12-07T11:00:00.75Z").as_deref(),
            Some("2026-12-07T11:00:00.75Z")
        );
        assert_eq!(
            believed("2026-12-07T12:05:00Z").as_deref(),
            Some("2026-12-07T12:05:00Z")
        );
        assert_eq!(believed("2026-12-07T12:05:01Z"), None, "in the future");
        assert_eq!(believed("2009-12-31T23:59:59Z"), None, "before 2010");
        assert_eq!(believed("1970-01-01T00:00:00Z"), None);
        assert_eq!(
            believed("2010-01-01T00:00:00Z").as_deref(),
            Some("2010-01-01T00:00:00Z")
        );
    }
}
