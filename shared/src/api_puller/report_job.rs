//! The scheduled `report` job: the completeness page `tapline report` writes
//! ([`crate::reconcile::report_input::gather`], then [`crate::reconcile::report::render`]), put
//! whole at `TAPLINE_REPORT_URI` (an S3 or GCS object, or a local file) through the storage port.

use std::sync::Arc;

use crate::reconcile::relay_letters::{RelayQueue, from_queue};
use crate::reconcile::report::{RelayLetters, render};
use crate::reconcile::report_input::gather;
use crate::reconcile::{ReconcileError, Request};
use crate::storage::{NewObject, ObjectStore, PutMode, StoreError};
use crate::warehouse::Warehouse;

/// Environment variable: where the `report` job writes the page: `s3://BUCKET/KEY.html`,
/// `gs://BUCKET/KEY.html` or a local path.
pub const ENV_REPORT_URI: &str = "TAPLINE_REPORT_URI";

/// Environment variable (optional): the relay's dead-letter queue the page lists, the SQS
/// dead-letter queue's URL or the Pub/Sub dead-letter subscription (`projects/P/subscriptions/S`);
/// see [`crate::reconcile::relay_letters`].
pub const ENV_REPORT_RELAY_QUEUE: &str = "TAPLINE_REPORT_RELAY_QUEUE";

/// Days the scheduled page covers at least, ending with the run's last day (a week: the grid a
/// data lead reads on Monday morning).
pub const REPORT_DAYS: i64 = 7;

/// The page's content type: browsers opening the object render it.
pub const REPORT_CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// `TAPLINE_REPORT_URI` checked and made the uri the store takes: a bucket object as given, a
/// local path as `file:///ABSOLUTE/PATH` (relative to `cwd`).
pub fn report_uri(text: &str, cwd: &std::path::Path) -> Result<String, String> {
    let text = text.trim();
    for scheme in ["s3://", "gs://"] {
        if let Some(rest) = text.strip_prefix(scheme) {
            return match rest.split_once('/') {
                Some((bucket, key))
                    if !bucket.is_empty() && !key.is_empty() && !key.ends_with('/') =>
                {
                    Ok(text.to_string())
                }
                _ => Err(format!(
                    "{text:?} names no object: use {scheme}BUCKET/KEY.html"
                )),
            };
        }
    }
    if text.is_empty() || (text.contains("://") && !text.starts_with("file://")) {
        return Err(format!(
            "{text:?} is not s3://BUCKET/KEY.html, gs://BUCKET/KEY.html or a path"
        ));
    }
    let path = std::path::Path::new(text.strip_prefix("file://").unwrap_or(text));
    // `.` and `..` resolved here, by the text (the file need not exist yet): the store takes
    // only `file:///ABSOLUTE/PATH` without them, and would refuse it at the first write.
    let mut absolute = std::path::PathBuf::from("/");
    for part in cwd.join(path).components() {
        match part {
            std::path::Component::ParentDir => {
                absolute.pop();
            }
            std::path::Component::Normal(name) => absolute.push(name),
            _ => {}
        }
    }
    if absolute.parent().is_none() {
        return Err(format!(
            "{text:?} names no file: use a path such as site/report.html"
        ));
    }
    Ok(format!("file://{}", absolute.display()))
}

/// Where the page goes: the uri and the store built for it once, at start.
#[derive(Clone)]
pub struct ReportTarget {
    /// `s3://…`, `gs://…` or `file:///…`.
    pub uri: String,
    /// The store that takes it.
    pub store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for ReportTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportTarget")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl ReportTarget {
    /// The target for `uri` (from [`report_uri`]) with the store its scheme needs.
    pub async fn for_uri(uri: &str) -> Result<Self, crate::Error> {
        Ok(Self {
            uri: uri.to_string(),
            store: crate::storage::store_for(uri).await?,
        })
    }
}

/// Why the page was not written.
#[derive(Debug, thiserror::Error)]
pub enum ReportJobError {
    /// Its figures could not be read.
    #[error("the report's figures could not be read")]
    Figures(#[from] ReconcileError),
    /// The store refused or could not be reached.
    #[error("the report could not be written")]
    Store(#[from] StoreError),
}

impl ReportJobError {
    /// Whether the next run may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            ReportJobError::Figures(e) => e.is_retryable(),
            ReportJobError::Store(e) => e.is_retryable(),
        }
    }
}

/// What the job wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportWritten {
    /// The object's version (ETag, generation, or size and time).
    pub version: String,
    /// The page's size.
    pub bytes: usize,
    /// (event, day)s on the page.
    pub days: usize,
}

/// Renders the page of `request` (read only: nothing recorded, nothing alerted) and puts it at
/// `target`, replacing the last one; the object appears whole or not at all.
///
/// With `relay_queue`, the page lists the relay's dead letters there; a queue that cannot be
/// read is said so on the page (and logged), and does not keep the rest of the page from
/// being written.
pub async fn write_report(
    warehouse: &dyn Warehouse,
    request: &Request,
    timezone_name: &str,
    target: &ReportTarget,
    relay_queue: Option<&RelayQueue>,
) -> Result<ReportWritten, ReportJobError> {
    let mut input = gather(warehouse, request, timezone_name).await?;
    if let Some(queue) = relay_queue {
        input.relay_dead_letters = Some(match from_queue(queue).await {
            Ok(letters) => letters,
            Err(e) => {
                let reason = crate::error::error_chain(&e);
                tracing::warn!(queue = %queue.describe(), error = %reason, retryable = e.is_retryable(),
                               "The relay's dead letters could not be listed; the page says so.");
                RelayLetters::unreadable(queue.describe(), reason)
            }
        });
    }
    let page = render(&input).into_bytes();
    let bytes = page.len();
    let version = target
        .store
        .put(
            &target.uri,
            NewObject {
                body: page,
                content_type: Some(REPORT_CONTENT_TYPE.to_string()),
                metadata: Default::default(),
            },
            PutMode::Overwrite,
        )
        .await?;
    tracing::info!(uri = %target.uri, bytes, days = input.days.len(), "Report written.");
    Ok(ReportWritten {
        version,
        bytes,
        days: input.days.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_uris_are_objects_or_paths() {
        let cwd = std::path::Path::new("/srv/tapline");
        assert_eq!(
            report_uri("s3://reports/tapline/report.html", cwd).unwrap(),
            "s3://reports/tapline/report.html"
        );
        assert_eq!(
            report_uri(" gs://reports/report.html ", cwd).unwrap(),
            "gs://reports/report.html"
        );
        assert_eq!(
            report_uri("out/report.html", cwd).unwrap(),
            "file:///srv/tapline/out/report.html"
        );
        assert_eq!(
            report_uri("/tmp/r.html", cwd).unwrap(),
            "file:///tmp/r.html"
        );
        assert_eq!(
            report_uri("s3://reports/", cwd).unwrap_err(),
            "\"s3://reports/\" names no object: use s3://BUCKET/KEY.html"
        );
        assert_eq!(
            report_uri("../site/./r.html", cwd).unwrap(),
            "file:///srv/site/r.html"
        );
        assert_eq!(
            report_uri("file:///tmp/a/../r.html", cwd).unwrap(),
            "file:///tmp/r.html"
        );
        assert!(report_uri("../..", cwd).is_err());
        assert!(report_uri("https://example.com/r.html", cwd).is_err());
        assert!(report_uri("", cwd).is_err());
    }
}
