//! Local files and folders: the demo, a laptop, a mounted bucket.
//!
//! Inside a folder only regular files are loaded: symbolic links are not followed (a link
//! named like an export must not load `/etc/…`), FIFOs, sockets and devices are not opened (a
//! FIFO would block the run), and an entry that cannot be read is reported on its own while
//! the rest of the folder loads. A path the user names itself may be a link or a FIFO
//! (`tapline load <(…)`): it is read as named.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use async_trait::async_trait;

use super::{ObjectEntry, ObjectSource};
use crate::Error;

/// Reads exports from the local file system. Locations are paths; folders are walked
/// recursively, without following symbolic links inside them.
#[derive(Debug, Default, Clone)]
pub struct LocalSource;

/// A path that was listed but will not be loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedEntry {
    /// Where it is (`file:///abs/path`, the link itself for a symbolic link).
    pub uri: String,
    /// Its path relative to the listed folder, as keys are.
    pub key: String,
    /// Why it is not loaded.
    pub reason: String,
}

/// What a folder holds: the regular files to load and the entries refused.
#[derive(Debug, Default)]
pub struct LocalListing {
    /// Regular files, in name order.
    pub entries: Vec<ObjectEntry>,
    /// Symbolic links, FIFOs, sockets, devices and unreadable entries, in walk order.
    pub refused: Vec<RefusedEntry>,
}

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

/// The `file://` uri of an entry that may be a link: its folder resolved, its own name kept.
fn link_uri(path: &Path) -> String {
    let resolved = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        })
        .map(|p| p.join(name)),
        _ => std::fs::canonicalize(path),
    };
    format!(
        "file://{}",
        resolved.unwrap_or_else(|_| path.to_path_buf()).display()
    )
}

/// Why a file type is not loaded, or `None` for a regular file or a folder.
fn refusal(file_type: std::fs::FileType) -> Option<&'static str> {
    if file_type.is_file() || file_type.is_dir() {
        None
    } else if file_type.is_symlink() {
        Some("a symbolic link: not followed, only regular files are loaded")
    } else if file_type.is_fifo() {
        Some("a FIFO: only regular files are loaded")
    } else if file_type.is_socket() {
        Some("a socket: only regular files are loaded")
    } else if file_type.is_block_device() || file_type.is_char_device() {
        Some("a device: only regular files are loaded")
    } else {
        Some("not a regular file")
    }
}

fn entry(path: &Path, key: String, meta: &std::fs::Metadata) -> Result<ObjectEntry, Error> {
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
        // A pipe's length is not known before it is read.
        size: (!meta.file_type().is_fifo()).then_some(meta.len()),
    })
}

fn key_of(root: &Path, root_name: &str, path: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path);
    Path::new(root_name)
        .join(relative)
        .to_string_lossy()
        .replace('\\', "/")
}

/// Lists `root`. A missing or unreadable `root` is an error; trouble with anything inside it
/// is a [`RefusedEntry`]. A `root` that is itself a link is followed: the user named it.
fn list_blocking(root: PathBuf) -> Result<LocalListing, Error> {
    let meta = std::fs::metadata(&root).map_err(|e| source_err(&root, e))?;
    let root_name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut listing = LocalListing::default();
    if let Some(reason) = refusal(meta.file_type()).filter(|_| !meta.file_type().is_fifo()) {
        listing.refused.push(RefusedEntry {
            uri: link_uri(&root),
            key: root_name,
            reason: reason.to_string(),
        });
        return Ok(listing);
    }
    if !meta.is_dir() {
        listing.entries.push(entry(&root, root_name, &meta)?);
        return Ok(listing);
    }
    for item in walkdir::WalkDir::new(&root)
        .follow_links(false)
        .sort_by_file_name()
    {
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                let path = e.path().unwrap_or(&root).to_path_buf();
                let reason = match e.io_error() {
                    Some(io) => format!("cannot be read: {io}"),
                    None => format!("cannot be read: {e}"),
                };
                listing.refused.push(RefusedEntry {
                    uri: link_uri(&path),
                    key: key_of(&root, &root_name, &path),
                    reason,
                });
                continue;
            }
        };
        let path = item.path();
        let key = key_of(&root, &root_name, path);
        if let Some(reason) = refusal(item.file_type()) {
            listing.refused.push(RefusedEntry {
                uri: link_uri(path),
                key,
                reason: reason.to_string(),
            });
            continue;
        }
        if item.file_type().is_dir() {
            continue;
        }
        let listed = item
            .metadata()
            .map_err(|e| e.to_string())
            .and_then(|meta| entry(path, key.clone(), &meta).map_err(|e| e.to_string()));
        match listed {
            Ok(entry) => listing.entries.push(entry),
            Err(reason) => listing.refused.push(RefusedEntry {
                uri: link_uri(path),
                key,
                reason: format!("cannot be read: {reason}"),
            }),
        }
    }
    Ok(listing)
}

impl LocalSource {
    /// Lists `location` (a path or `file://` uri): the regular files to load and the entries
    /// refused, each with its reason. Fails only when `location` itself cannot be read.
    pub async fn list_checked(&self, location: &str) -> Result<LocalListing, Error> {
        let root = PathBuf::from(location.strip_prefix("file://").unwrap_or(location));
        tokio::task::spawn_blocking(move || list_blocking(root))
            .await
            .map_err(|e| Error::Source {
                uri: location.to_string(),
                source: std::io::Error::other(e),
            })?
    }
}

#[async_trait]
impl ObjectSource for LocalSource {
    /// The regular files of [`LocalSource::list_checked`]; each refused entry is logged.
    async fn list(&self, location: &str) -> Result<Vec<ObjectEntry>, Error> {
        let listing = self.list_checked(location).await?;
        for refused in &listing.refused {
            tracing::warn!(
                uri = %crate::printable::escaped(&refused.uri),
                reason = %crate::printable::escaped(&refused.reason),
                "Entry not loaded."
            );
        }
        Ok(listing.entries)
    }

    async fn open(&self, entry: &ObjectEntry) -> Result<Box<dyn Read + Send>, Error> {
        let path = PathBuf::from(entry.uri.strip_prefix("file://").unwrap_or(&entry.uri));
        // Between listing and opening the file may have become a link or a FIFO: never follow,
        // never block on opening, and read only what is still a regular file.
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => source_err(
                    &path,
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "a symbolic link: not followed, only regular files are loaded",
                    ),
                ),
                _ => source_err(&path, e),
            })?;
        let meta = file.metadata().map_err(|e| source_err(&path, e))?;
        if meta.is_file() {
            return Ok(Box::new(file));
        }
        // A FIFO the user named on the command line (listed as one: without a size) is read as
        // a pipe, waiting for its writer; a file that became a FIFO after listing never is.
        if meta.file_type().is_fifo() && entry.size.is_none() {
            use std::os::unix::fs::MetadataExt;
            let pipe = File::options()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| source_err(&path, e))?;
            let again = pipe.metadata().map_err(|e| source_err(&path, e))?;
            if (again.dev(), again.ino()) == (meta.dev(), meta.ino()) {
                return Ok(Box::new(pipe));
            }
        }
        let reason = refusal(meta.file_type()).unwrap_or("a folder: only regular files are loaded");
        Err(source_err(
            &path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, reason),
        ))
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

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
    }

    #[tokio::test]
    async fn links_fifos_are_refused_with_reasons_and_regular_files_listed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret.csv"), "root:x:0:0").unwrap();
        let root = dir.path().join("exports");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("a.csv"), "x").unwrap();
        std::os::unix::fs::symlink(outside.join("secret.csv"), root.join("b.csv")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("c")).unwrap();
        mkfifo(&root.join("d.csv"));
        std::fs::write(root.join("e.csv"), "y").unwrap();

        let listing = LocalSource
            .list_checked(root.to_str().unwrap())
            .await
            .unwrap();
        let keys: Vec<_> = listing.entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["exports/a.csv", "exports/e.csv"]);
        let refused: Vec<_> = listing
            .refused
            .iter()
            .map(|r| (r.key.as_str(), r.reason.as_str()))
            .collect();
        assert_eq!(
            refused,
            [
                (
                    "exports/b.csv",
                    "a symbolic link: not followed, only regular files are loaded"
                ),
                (
                    "exports/c",
                    "a symbolic link: not followed, only regular files are loaded"
                ),
                ("exports/d.csv", "a FIFO: only regular files are loaded"),
            ]
        );
        // The link's own address, not its target's.
        assert!(
            listing.refused[0].uri.ends_with("/exports/b.csv"),
            "{:?}",
            listing.refused[0]
        );
        // The trait's listing is the regular files.
        let listed = LocalSource.list(root.to_str().unwrap()).await.unwrap();
        assert_eq!(listed, listing.entries);
    }

    #[tokio::test]
    async fn a_file_swapped_for_a_link_or_fifo_after_listing_is_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        std::fs::write(&path, "x").unwrap();
        let entries = LocalSource
            .list(dir.path().to_str().unwrap())
            .await
            .unwrap();
        assert_eq!(entries.len(), 1);
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &path).unwrap();
        let err = LocalSource.open(&entries[0]).await.err().expect("refused");
        assert!(
            crate::error::chain::error_chain(&err)
                .ends_with("a symbolic link: not followed, only regular files are loaded"),
            "{err}"
        );
        assert!(!err.is_retryable());
        std::fs::remove_file(&path).unwrap();
        mkfifo(&path);
        // Opening must not block on a FIFO with no writer.
        let err = LocalSource.open(&entries[0]).await.err().expect("refused");
        assert!(
            crate::error::chain::error_chain(&err)
                .ends_with("a FIFO: only regular files are loaded"),
            "{err}"
        );
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
