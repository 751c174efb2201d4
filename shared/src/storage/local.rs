//! Local files and folders: the demo, a laptop, a mounted bucket.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use async_trait::async_trait;

use super::{ObjectEntry, ObjectSource};
use crate::Error;

/// Reads exports from the local file system. Locations are paths; folders are walked
/// recursively.
#[derive(Debug, Default, Clone)]
pub struct LocalSource;

fn source_err(path: &Path, source: std::io::Error) -> Error {
    Error::Source {
        uri: path.display().to_string(),
        source,
    }
}

/// The `file://` uri of a path, absolute and with `.`/`..` resolved, so the same file always
/// has the same ledger key whatever the working directory.
pub fn file_uri(path: &Path) -> std::io::Result<String> {
    let absolute = std::fs::canonicalize(path)?;
    Ok(format!("file://{}", absolute.display()))
}

fn entry(path: &Path, key: String) -> Result<ObjectEntry, Error> {
    let meta = std::fs::metadata(path).map_err(|e| source_err(path, e))?;
    // Size and modification time stand in for a content version, like rsync's quick check:
    // rewriting a file makes a new version whose rows replace the old ones.
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(ObjectEntry {
        uri: file_uri(path).map_err(|e| source_err(path, e))?,
        key,
        version: format!("{}-{}", meta.len(), mtime),
        size: Some(meta.len()),
    })
}

fn list_blocking(root: PathBuf) -> Result<Vec<ObjectEntry>, Error> {
    let meta = std::fs::metadata(&root).map_err(|e| source_err(&root, e))?;
    let root_name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !meta.is_dir() {
        return Ok(vec![entry(&root, root_name)?]);
    }
    let mut out = Vec::new();
    for item in walkdir::WalkDir::new(&root)
        .follow_links(true)
        .sort_by_file_name()
    {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(&root).to_path_buf();
            source_err(&path, e.into())
        })?;
        if item.file_type().is_dir() {
            continue;
        }
        let relative = item.path().strip_prefix(&root).unwrap_or(item.path());
        let key = Path::new(&root_name).join(relative);
        out.push(entry(
            item.path(),
            key.to_string_lossy().replace('\\', "/"),
        )?);
    }
    Ok(out)
}

#[async_trait]
impl ObjectSource for LocalSource {
    async fn list(&self, location: &str) -> Result<Vec<ObjectEntry>, Error> {
        let root = PathBuf::from(location.strip_prefix("file://").unwrap_or(location));
        tokio::task::spawn_blocking(move || list_blocking(root))
            .await
            .map_err(|e| Error::Source {
                uri: location.to_string(),
                source: std::io::Error::other(e),
            })?
    }

    async fn open(&self, entry: &ObjectEntry) -> Result<Box<dyn Read + Send>, Error> {
        let path = PathBuf::from(entry.uri.strip_prefix("file://").unwrap_or(&entry.uri));
        let file = File::open(&path).map_err(|e| source_err(&path, e))?;
        Ok(Box::new(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn folders_are_walked_in_order_with_relative_keys() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("exports");
        std::fs::create_dir_all(root.join("2022-09-21")).unwrap();
        std::fs::write(root.join("b.csv"), "x").unwrap();
        std::fs::write(root.join("2022-09-21/a.csv"), "xy").unwrap();
        let entries = LocalSource.list(root.to_str().unwrap()).await.unwrap();
        let keys: Vec<_> = entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["exports/2022-09-21/a.csv", "exports/b.csv"]);
        assert!(
            entries[0].uri.starts_with("file:///")
                && entries[0].uri.ends_with("/exports/2022-09-21/a.csv")
        );
        assert_eq!(entries[0].size, Some(2));
        let mut text = String::new();
        LocalSource
            .open(&entries[1])
            .await
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "x");
    }

    #[tokio::test]
    async fn a_missing_path_is_a_source_error() {
        let err = LocalSource.list("/nonexistent/tapline").await.unwrap_err();
        assert!(matches!(err, Error::Source { .. }));
        assert!(
            !err.is_retryable(),
            "a missing path will not appear by retrying"
        );
    }
}
