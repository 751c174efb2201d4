//! The object source port: list export objects under a location and stream one.
//!
//! Reads are synchronous `Read`s because parsing is: cloud adapters bridge their async byte
//! streams into a reader on a blocking thread, so memory stays flat.

pub mod local;

use std::io::Read;

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
