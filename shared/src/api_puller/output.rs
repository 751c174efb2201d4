//! `pull events --output jsonl|csv --output-dir DIR`: one file per event per day, like
//! CleverTap's own downloader, but lossless and safe to resume.
//!
//! Each page is written (to a temporary name, then renamed) under
//! `DIR/.tapline-parts/EVENT/DAY/PULL_ID/page-NNNNN.jsonl` before its rows reach the warehouse,
//! so a resumed pull rewrites the page it stopped at and keeps the others. When the slice
//! completes, its pages are joined in order into `DIR/EVENT/DAY.jsonl` (or `.csv`), again
//! through a temporary name, and the parts are removed: a finished file is always whole, and
//! a day pulled again replaces its file.
//!
//! With a bucket (`--output-dir s3://bucket/prefix` or `gs://…`), `DIR` is a local staging
//! folder: the parts and the joined file stay there, and only the finished day file is put
//! into the bucket (one upload, which the bucket shows whole or not at all) before the parts
//! go. A bucket never holds a partial file; a run killed before the upload resumes from the
//! staged parts and uploads on completion.
//!
//! JSONL keeps each record exactly as the API returned it. CSV flattens records the way the
//! export loader reads JSON exports (`profile.identity`, `eventProps.Amount`; arrays as JSON
//! text), with the union of every record's columns as its header, in first-seen order.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::civil::Date;
use serde_json::Value;

use super::page_load::event_record_as_export;
use crate::export::json_rows::flatten_record;
use crate::storage::ObjectSink;

/// The file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// One JSON record per line, as the API returned it.
    Jsonl,
    /// Flattened columns with a header.
    Csv,
}

impl OutputFormat {
    fn extension(self) -> &'static str {
        match self {
            OutputFormat::Jsonl => "jsonl",
            OutputFormat::Csv => "csv",
        }
    }
}

/// Where pulled events are also written.
#[derive(Debug, Clone)]
pub struct FileOutput {
    /// The folder: the destination, or the staging folder when [`Self::bucket`] is set.
    pub dir: PathBuf,
    /// The format.
    pub format: OutputFormat,
    /// The bucket finished files are put into, when the destination is one.
    pub bucket: Option<BucketOutput>,
}

/// A bucket prefix (`s3://bucket/prefix`, `gs://bucket/prefix`) and the sink that writes it.
#[derive(Clone)]
pub struct BucketOutput {
    /// The prefix, without a trailing `/`.
    pub prefix: String,
    /// Puts finished files.
    pub sink: Arc<dyn ObjectSink>,
}

impl std::fmt::Debug for BucketOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketOutput")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The staging folder for a bucket prefix under `temp`: stable across runs (so a killed run's
/// parts are found by the next one), one per prefix, inside `temp/tapline-output-UID`, a folder
/// of this user's only (see [`private_dir`]): `$TMPDIR` is shared, and anyone could plant a
/// link where a predictable path would be written.
pub fn staging_dir(temp: &Path, prefix: &str) -> io::Result<PathBuf> {
    let name: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let private = temp.join(format!("tapline-output-{uid}"));
    private_dir(&private, uid)?;
    Ok(private.join(name))
}

/// Creates `path` as a folder only `uid` can enter (mode 0700), or checks that the one there is
/// such a folder: a real folder (not a link), owned by `uid`, closed to group and others.
/// Refuses anything else with the reason and what to do.
pub fn private_dir(path: &Path, uid: u32) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "staging folder {} {why}: refusing to stage there (remove it, or set TMPDIR to a \
                 folder of your own)",
                path.display()
            ),
        ))
    };
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return refuse("is a symbolic link".to_string());
    }
    if !meta.is_dir() {
        return refuse("is not a folder".to_string());
    }
    if meta.uid() != uid {
        return refuse(format!("belongs to user id {}, not {uid}", meta.uid()));
    }
    if meta.mode() & 0o077 != 0 {
        return refuse(format!(
            "is open to other users (mode {:o})",
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

/// A file or folder name for an event: path separators and leading dots replaced.
fn safe_name(event: &str) -> String {
    let name: String = event
        .chars()
        .map(|c| {
            if matches!(c, '/' | '\\' | '\0') {
                '_'
            } else {
                c
            }
        })
        .collect();
    match name.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None => name,
    }
}

impl FileOutput {
    fn parts_of_slice(&self, event: &str, day: Date) -> PathBuf {
        self.dir
            .join(".tapline-parts")
            .join(safe_name(event))
            .join(day.to_string())
    }

    /// The finished (or, with a bucket, staged) file of a slice.
    pub fn file_of(&self, event: &str, day: Date) -> PathBuf {
        self.dir
            .join(safe_name(event))
            .join(format!("{day}.{}", self.format.extension()))
    }

    /// Where the slice's file ends up: the bucket object's uri, or the local file.
    pub fn destination_of(&self, event: &str, day: Date) -> String {
        match &self.bucket {
            Some(bucket) => format!(
                "{}/{}/{day}.{}",
                bucket.prefix,
                safe_name(event),
                self.format.extension()
            ),
            None => self.file_of(event, day).display().to_string(),
        }
    }

    /// A new pull of the slice starts: parts of earlier pulls go.
    pub fn start(&self, event: &str, day: Date) -> io::Result<()> {
        self.discard_parts(event, day)
    }

    fn discard_parts(&self, event: &str, day: Date) -> io::Result<()> {
        match fs::remove_dir_all(self.parts_of_slice(event, day)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Joins the slice's `pages` pages into its file ([`Self::join`]); with a bucket, puts the
    /// file there and removes the staged copy. The parts go only once the file is in place, so
    /// a failed upload is retried from them. Returns where the file is.
    pub async fn complete(
        &self,
        event: &str,
        day: Date,
        pull_id: &str,
        pages: u64,
    ) -> io::Result<String> {
        let file = self.join(event, day, pull_id, pages)?;
        if let Some(bucket) = &self.bucket {
            let uri = self.destination_of(event, day);
            bucket.sink.put_file(&uri, &file).await?;
            fs::remove_file(&file)?;
        }
        self.discard_parts(event, day)?;
        Ok(self.destination_of(event, day))
    }

    /// Writes one page's records (replacing a page of the same index written before a kill).
    pub fn write_page(
        &self,
        event: &str,
        day: Date,
        pull_id: &str,
        page: u64,
        records: &[Value],
    ) -> io::Result<()> {
        let dir = self.parts_of_slice(event, day).join(pull_id);
        fs::create_dir_all(&dir)?;
        let path = dir.join(format!("page-{page:05}.jsonl"));
        write_atomically(&path, |out| {
            for record in records {
                serde_json::to_writer(&mut *out, record)?;
                out.write_all(b"\n")?;
            }
            Ok(())
        })
    }

    /// Whether the parts of pages `0..pages` of a pull are all staged (a resumed pull needs
    /// them to write a whole file).
    pub fn has_parts(&self, event: &str, day: Date, pull_id: &str, pages: u64) -> bool {
        let parts_dir = self.parts_of_slice(event, day).join(pull_id);
        (0..pages).all(|i| parts_dir.join(format!("page-{i:05}.jsonl")).is_file())
    }

    /// Joins the slice's pages into its (local) file, keeping the parts; refuses when a part of
    /// pages `0..pages` is missing (a staging folder cleared between runs), since the file
    /// would silently lack records. Returns the file.
    pub fn join(&self, event: &str, day: Date, pull_id: &str, pages: u64) -> io::Result<PathBuf> {
        let parts_dir = self.parts_of_slice(event, day).join(pull_id);
        let (pages, missing): (Vec<PathBuf>, Vec<PathBuf>) = (0..pages)
            .map(|i| parts_dir.join(format!("page-{i:05}.jsonl")))
            .partition(|part| part.is_file());
        if !missing.is_empty() {
            let names: Vec<String> = missing
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect();
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} of {} is missing (cleared between runs?): the file would lack its \
                     records; pull the day again",
                    names.join(", "),
                    parts_dir.display()
                ),
            ));
        }
        let file = self.file_of(event, day);
        if let Some(parent) = file.parent() {
            fs::create_dir_all(parent)?;
        }
        match self.format {
            OutputFormat::Jsonl => write_atomically(&file, |out| {
                for page in &pages {
                    io::copy(&mut File::open(page)?, out)?;
                }
                Ok(())
            })?,
            OutputFormat::Csv => write_csv(&file, &pages, event)?,
        }
        Ok(file)
    }
}

/// Writes `path` through a temporary file in the same folder, renamed when complete. The
/// temporary file is created new (mode 0600, never through a link left at its name), and the
/// rename replaces whatever is at `path` without following it.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("part")
    ));
    // A killed run's temporary file (or anything planted there) goes; removing a link removes
    // the link, not its target.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let file = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    let mut out = BufWriter::new(file);
    write(&mut out)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    fs::rename(&tmp, path)
}

/// Every record of the pages, flattened as the export loader reads JSON exports.
fn flattened(
    pages: &[PathBuf],
    event: &str,
    mut each: impl FnMut(Vec<(String, Option<String>)>) -> io::Result<()>,
) -> io::Result<()> {
    for page in pages {
        for line in BufReader::new(File::open(page)?).lines() {
            let record: Value = serde_json::from_str(&line?)?;
            if let Value::Object(map) = event_record_as_export(record, event) {
                each(flatten_record(map))?;
            }
        }
    }
    Ok(())
}

fn write_csv(file: &Path, pages: &[PathBuf], event: &str) -> io::Result<()> {
    // Two passes over the parts: the header is every column any record has.
    let mut header: Vec<String> = Vec::new();
    let mut known = std::collections::HashSet::new();
    flattened(pages, event, |fields| {
        for (name, _) in fields {
            if known.insert(name.clone()) {
                header.push(name);
            }
        }
        Ok(())
    })?;
    let index: std::collections::HashMap<&str, usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| (h.as_str(), i))
        .collect();
    write_atomically(file, |out| {
        let mut csv = csv::Writer::from_writer(out);
        csv.write_record(&header)?;
        flattened(pages, event, |fields| {
            let mut row = vec![String::new(); header.len()];
            for (name, value) in fields {
                row[index[name.as_str()]] = value.unwrap_or_default();
            }
            csv.write_record(&row).map_err(io::Error::other)
        })?;
        csv.flush()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn day() -> Date {
        jiff::civil::date(2022, 9, 22)
    }

    #[tokio::test]
    async fn pages_join_in_order_and_a_rewritten_page_replaces_its_part() {
        let dir = tempfile::tempdir().unwrap();
        let out = FileOutput {
            dir: dir.path().to_path_buf(),
            format: OutputFormat::Jsonl,
            bucket: None,
        };
        out.start("Charged", day()).unwrap();
        out.write_page("Charged", day(), "p1", 1, &[json!({"ts": 2})])
            .unwrap();
        out.write_page(
            "Charged",
            day(),
            "p1",
            0,
            &[json!({"ts": 0}), json!({"ts": 1})],
        )
        .unwrap();
        // A resumed run writes page 1 again.
        out.write_page("Charged", day(), "p1", 1, &[json!({"ts": 2})])
            .unwrap();
        assert!(out.has_parts("Charged", day(), "p1", 2));
        assert!(!out.has_parts("Charged", day(), "p1", 3));
        let err = out.join("Charged", day(), "p1", 3).unwrap_err();
        assert!(err.to_string().starts_with("page-00002.jsonl of "), "{err}");
        let file = out.complete("Charged", day(), "p1", 2).await.unwrap();
        let file = PathBuf::from(file);
        assert_eq!(file, dir.path().join("Charged/2022-09-22.jsonl"));
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            "{\"ts\":0}\n{\"ts\":1}\n{\"ts\":2}\n"
        );
        assert!(
            !dir.path()
                .join(".tapline-parts/Charged/2022-09-22")
                .exists()
        );
    }

    #[test]
    fn csv_has_every_column_flattened_like_an_export() {
        let dir = tempfile::tempdir().unwrap();
        let out = FileOutput {
            dir: dir.path().to_path_buf(),
            format: OutputFormat::Csv,
            bucket: None,
        };
        let records = [
            json!({"ts": 20220922000100i64, "profile": {"identity": "u1"}, "event_props": {"Amount": 5}}),
            json!({"ts": 20220922000200i64, "profile": {"identity": "u2, \"x\""}, "event_props": {"Coupon": "A"}}),
        ];
        out.write_page("Charged", day(), "p1", 0, &records).unwrap();
        let file = out.join("Charged", day(), "p1", 1).unwrap();
        let text = fs::read_to_string(file).unwrap();
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        assert!(header.contains("profile.identity"), "{header}");
        assert!(header.contains("eventProps.Amount"), "{header}");
        assert!(header.contains("eventProps.Coupon"), "{header}");
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains("\"u2, \"\"x\"\"\""), "{text}");
    }

    fn uid() -> u32 {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    }

    #[test]
    fn staging_folders_are_one_per_bucket_prefix_in_a_private_folder() {
        use std::os::unix::fs::PermissionsExt;
        let temp = tempfile::tempdir().unwrap();
        let private = temp.path().join(format!("tapline-output-{}", uid()));
        assert_eq!(
            staging_dir(temp.path(), "s3://acme-exports/api/events").unwrap(),
            private.join("s3___acme-exports_api_events")
        );
        assert_eq!(
            fs::metadata(&private).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_ne!(
            staging_dir(temp.path(), "s3://a/b").unwrap(),
            staging_dir(temp.path(), "gs://a/b").unwrap()
        );
    }

    #[test]
    fn a_planted_link_or_an_open_folder_is_refused_and_its_target_untouched() {
        use std::os::unix::fs::PermissionsExt;
        let temp = tempfile::tempdir().unwrap();
        let target = temp.path().join("victim");
        fs::create_dir(&target).unwrap();
        let private = temp.path().join(format!("tapline-output-{}", uid()));
        std::os::unix::fs::symlink(&target, &private).unwrap();
        let err = staging_dir(temp.path(), "s3://a/b").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(
            err.to_string(),
            format!(
                "staging folder {} is a symbolic link: refusing to stage there (remove it, or \
                 set TMPDIR to a folder of your own)",
                private.display()
            )
        );
        assert_eq!(fs::read_dir(&target).unwrap().count(), 0);

        fs::remove_file(&private).unwrap();
        fs::create_dir(&private).unwrap();
        fs::set_permissions(&private, fs::Permissions::from_mode(0o777)).unwrap();
        let err = staging_dir(temp.path(), "s3://a/b").unwrap_err();
        assert!(
            err.to_string()
                .contains("is open to other users (mode 777)"),
            "{err}"
        );
        assert!(private_dir(&private, uid() + 1).is_err());
    }

    #[test]
    fn output_files_are_private_and_never_written_through_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        fs::write(&victim, "keep").unwrap();
        let out = FileOutput {
            dir: dir.path().join("out"),
            format: OutputFormat::Jsonl,
            bucket: None,
        };
        out.write_page("Charged", day(), "p1", 0, &[json!({"ts": 0})])
            .unwrap();
        let file = out.file_of("Charged", day());
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        // Links planted at the temporary name and at the file itself.
        std::os::unix::fs::symlink(&victim, file.with_extension("jsonl.tmp")).unwrap();
        std::os::unix::fs::symlink(&victim, &file).unwrap();
        let joined = out.join("Charged", day(), "p1", 1).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        let meta = fs::symlink_metadata(&joined).unwrap();
        assert!(meta.is_file(), "the link was replaced by the file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&joined).unwrap(), "{\"ts\":0}\n");
        let part = out
            .parts_of_slice("Charged", day())
            .join("p1/page-00000.jsonl");
        assert_eq!(
            fs::metadata(part).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn event_names_cannot_leave_the_folder() {
        assert_eq!(safe_name("../etc/passwd"), "_._etc_passwd");
        assert_eq!(safe_name("App Launched"), "App Launched");
    }
}
