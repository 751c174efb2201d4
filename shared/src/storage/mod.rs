//! The object source port: list export objects under a location and stream one; and the
//! object sink port: put a finished file into a bucket, whole.
//!
//! Reads are synchronous `Read`s because parsing is: cloud adapters bridge their async byte
//! streams into a reader on a blocking thread, so memory stays flat.

#[cfg(feature = "gcs")]
pub mod gcs;
pub mod local;
#[cfg(feature = "s3")]
pub mod s3;

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
