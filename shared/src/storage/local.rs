//! Local files and folders: the demo, a laptop, a mounted bucket.
//!
//! Inside a folder only regular files are loaded: symbolic links are not followed (a link
//! named like an export must not load `/etc/…`), FIFOs, sockets and devices are not opened (a
//! FIFO would block the run), and an entry that cannot be read is reported on its own while
//! the rest of the folder loads. A path the user names itself may be a link or a FIFO
//! (`tapline load <(…)`): it is read as named.
//!
//! As an [`ObjectStore`], writes go to a temporary file beside the object, then appear whole
//! (`link` for a create, which fails if the name exists; `rename` otherwise), under an
//! exclusive `flock` of the folder so a version check and its write are one step.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;

use super::{
    NewObject, ObjectEntry, ObjectMeta, ObjectSource, ObjectStore, PutMode, StoreError,
    StoredObject,
};
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

/// The modification time in nanoseconds since the epoch (0 when unknown).
fn mtime_nanos(meta: &std::fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Size and modification time stand in for a content version, like rsync's quick check:
/// rewriting a file makes a new version whose rows replace the old ones.
fn version_of(meta: &std::fs::Metadata) -> String {
    format!("{}-{}", meta.len(), mtime_nanos(meta))
}

fn entry(path: &Path, key: String, meta: &std::fs::Metadata) -> Result<ObjectEntry, Error> {
    Ok(ObjectEntry {
        uri: file_uri(path).map_err(|e| source_err(path, e))?,
        key,
        version: version_of(meta),
        // A pipe's length is not known before it is read.
        size: (!meta.file_type().is_fifo()).then_some(meta.len()),
        // A file has no creation time everywhere; its mtime is when its content was written.
        created_at: meta
            .modified()
            .ok()
            .and_then(|t| jiff::Timestamp::try_from(t).ok()),
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

/// The path of a `file://` uri (or an absolute path): absolute, without `.` or `..`, so a key
/// cannot climb out of the folder it names.
fn store_path(uri: &str) -> Result<PathBuf, StoreError> {
    let path = PathBuf::from(uri.strip_prefix("file://").unwrap_or(uri));
    let plain = path.is_absolute()
        && path.file_name().is_some()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if plain {
        return Ok(path);
    }
    Err(invalid(
        uri,
        "expected file:///ABSOLUTE/PATH without . or ..",
    ))
}

fn invalid(uri: &str, detail: &str) -> StoreError {
    StoreError::Failed {
        uri: uri.to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, detail.to_string()),
    }
}

const NOT_REGULAR: &str = "not a regular file: links are not followed";

/// The object's metadata without following a link; `None` when there is none.
fn current(uri: &str, path: &Path) -> Result<Option<std::fs::Metadata>, StoreError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => Ok(Some(meta)),
        Ok(_) => Err(invalid(uri, NOT_REGULAR)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::from_io(uri, e)),
    }
}

/// An exclusive lock of `folder`, released when the handle is dropped.
fn lock_folder(folder: &Path) -> std::io::Result<File> {
    let handle = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(folder)?;
    // SAFETY: a valid open descriptor; flock only takes an advisory lock on it.
    if unsafe { libc::flock(handle.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(handle)
}

/// Temporary names never collide within a process; the pid separates processes.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);
const TEMP_MARK: &str = ".tapline-part-";

fn put_blocking(uri: &str, object: NewObject, mode: PutMode) -> Result<String, StoreError> {
    let path = store_path(uri)?;
    if !object.metadata.is_empty() {
        return Err(invalid(uri, "local files keep no custom metadata"));
    }
    let failed = |e: std::io::Error| StoreError::from_io(uri, e);
    let folder = path
        .parent()
        .expect("an absolute path with a name has a parent");
    std::fs::create_dir_all(folder).map_err(failed)?;
    let _lock = lock_folder(folder).map_err(failed)?;
    let before = current(uri, &path)?;
    let refused = match (&mode, &before) {
        (PutMode::Create, Some(_)) => true,
        (PutMode::Replace(version), Some(meta)) => *version != version_of(meta),
        (PutMode::Replace(_), None) => true,
        _ => false,
    };
    if refused {
        return Err(StoreError::Precondition {
            uri: uri.to_string(),
        });
    }
    let name = path.file_name().expect("checked").to_string_lossy();
    let temp = folder.join(format!(
        ".{name}{TEMP_MARK}{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temp)?;
        file.write_all(&object.body)?;
        // File times are coarse (a clock tick): a rewrite of the same size could keep the old
        // version, so each write's mtime is later than the one it replaces.
        if let Some(before) = &before {
            let mtime = file.metadata()?;
            if mtime_nanos(&mtime) <= mtime_nanos(before) {
                let later = mtime_nanos(before) + 1;
                file.set_modified(UNIX_EPOCH + Duration::from_nanos(later as u64))?;
            }
        }
        file.sync_all()?;
        let version = version_of(&file.metadata()?);
        match mode {
            PutMode::Create => std::fs::hard_link(&temp, &path)?,
            _ => std::fs::rename(&temp, &path)?,
        }
        Ok(version)
    })();
    let _ = std::fs::remove_file(&temp);
    written.map_err(|e: std::io::Error| match e.kind() {
        std::io::ErrorKind::AlreadyExists => StoreError::Precondition {
            uri: uri.to_string(),
        },
        _ => failed(e),
    })
}

fn get_blocking(uri: &str) -> Result<StoredObject, StoreError> {
    let path = store_path(uri)?;
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => invalid(uri, NOT_REGULAR),
            _ => StoreError::from_io(uri, e),
        })?;
    let meta = file.metadata().map_err(|e| StoreError::from_io(uri, e))?;
    if !meta.is_file() {
        return Err(invalid(uri, NOT_REGULAR));
    }
    let mut body = Vec::new();
    file.read_to_end(&mut body)
        .map_err(|e| StoreError::from_io(uri, e))?;
    Ok(StoredObject {
        meta: ObjectMeta {
            version: version_of(&meta),
            metadata: Default::default(),
        },
        body,
    })
}

fn delete_blocking(uri: &str) -> Result<(), StoreError> {
    let path = store_path(uri)?;
    let folder = path
        .parent()
        .expect("an absolute path with a name has a parent");
    let _lock = match lock_folder(folder) {
        Ok(lock) => lock,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::from_io(uri, e)),
    };
    // Removes a link itself, never what it points at.
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::from_io(uri, e)),
        _ => Ok(()),
    }
}

/// The regular files whose uri starts with `prefix`, in uri order; a missing folder is empty.
fn list_prefix_blocking(prefix: &str) -> Result<Vec<ObjectEntry>, StoreError> {
    let raw = prefix.strip_prefix("file://").unwrap_or(prefix);
    let (folder, rest) = match raw.rsplit_once('/') {
        Some((folder, rest)) if !folder.is_empty() => (folder, rest),
        _ => ("/", raw.trim_start_matches('/')),
    };
    store_path(&format!("{folder}/x"))?;
    let folder = match std::fs::canonicalize(folder) {
        Ok(folder) => folder,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::from_io(prefix, e)),
    };
    let wanted = format!("file://{}/{rest}", folder.display());
    let listing = list_blocking(folder).map_err(|e| match e {
        Error::Source { source, .. } => StoreError::from_io(prefix, source),
        other => StoreError::Failed {
            uri: prefix.to_string(),
            source: std::io::Error::other(other.to_string()),
        },
    })?;
    let mut entries: Vec<ObjectEntry> = listing
        .entries
        .into_iter()
        .filter(|e| e.uri.starts_with(&wanted) && !e.uri.contains(TEMP_MARK))
        .collect();
    entries.sort_by(|a, b| a.uri.cmp(&b.uri));
    Ok(entries)
}

/// Runs a blocking file operation off the async threads.
async fn blocking<T: Send + 'static>(
    uri: &str,
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Failed {
            uri: uri.to_string(),
            source: std::io::Error::other(e),
        })?
}

/// Local files as small objects named by `file://` uri. Custom metadata is not kept (a
/// non-empty one is refused); versions are size and modification time, as listed.
#[async_trait]
impl ObjectStore for LocalSource {
    async fn put(&self, uri: &str, object: NewObject, mode: PutMode) -> Result<String, StoreError> {
        let owned = uri.to_string();
        blocking(uri, move || put_blocking(&owned, object, mode)).await
    }

    async fn head(&self, uri: &str) -> Result<ObjectMeta, StoreError> {
        let owned = uri.to_string();
        blocking(uri, move || {
            let path = store_path(&owned)?;
            match current(&owned, &path)? {
                Some(meta) => Ok(ObjectMeta {
                    version: version_of(&meta),
                    metadata: Default::default(),
                }),
                None => Err(StoreError::NotFound { uri: owned }),
            }
        })
        .await
    }

    async fn get(&self, uri: &str) -> Result<StoredObject, StoreError> {
        let owned = uri.to_string();
        blocking(uri, move || get_blocking(&owned)).await
    }

    async fn delete(&self, uri: &str) -> Result<(), StoreError> {
        let owned = uri.to_string();
        blocking(uri, move || delete_blocking(&owned)).await
    }

    async fn list_prefix(&self, prefix: &str) -> Result<Vec<ObjectEntry>, StoreError> {
        let owned = prefix.to_string();
        blocking(prefix, move || list_prefix_blocking(&owned)).await
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
