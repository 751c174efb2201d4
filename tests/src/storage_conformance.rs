//! The storage conformance suite: what every storage adapter (local files, S3, Cloud Storage)
//! gives through the port alone. Each adapter's test module runs it with
//! [`storage_conformance_tests!`] and a [`StorageHarness`].

use std::io::Read;
use std::sync::Arc;

use async_trait::async_trait;
use tapline::storage::{ObjectEntry, ObjectSource};

/// Places and adapters for the suite.
#[async_trait]
pub trait StorageHarness: Send + Sync {
    /// A fresh, empty root for the case `name` (`file:///…`, `s3://bucket`, `gs://bucket`,
    /// without a trailing slash).
    async fn root(&self, name: &str) -> String;
    /// Writes `body` at `uri` from outside the adapter, the way exports arrive.
    async fn seed(&self, uri: &str, body: &[u8]);
    /// The adapter under test, as a source.
    async fn source(&self) -> Arc<dyn ObjectSource>;
}

async fn read_all(source: &dyn ObjectSource, entry: &ObjectEntry) -> Vec<u8> {
    let mut reader = source.open(entry).await.expect("open");
    tokio::task::spawn_blocking(move || {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map(|_| bytes)
    })
    .await
    .unwrap()
    .expect("read")
}

/// Listing a location gives every object under it, in key order, with sizes and versions, and
/// nothing beside it.
pub async fn list_is_everything_under_the_location_in_order(h: &impl StorageHarness) {
    let root = h.root("list").await;
    let location = format!("{root}/exports");
    for (key, body) in [
        ("exports/d.csv", "dddd"),
        ("exports/a.csv", "a"),
        ("exports/b/c.csv", "cc"),
        ("other/x.csv", "x"),
    ] {
        h.seed(&format!("{root}/{key}"), body.as_bytes()).await;
    }
    let entries = h.source().await.list(&location).await.expect("list");
    let listed: Vec<(&str, Option<u64>)> =
        entries.iter().map(|e| (e.uri.as_str(), e.size)).collect();
    let expected = [
        (format!("{location}/a.csv"), Some(1)),
        (format!("{location}/b/c.csv"), Some(2)),
        (format!("{location}/d.csv"), Some(4)),
    ];
    let expected: Vec<(&str, Option<u64>)> =
        expected.iter().map(|(u, s)| (u.as_str(), *s)).collect();
    assert_eq!(listed, expected);
    assert!(entries.iter().all(|e| e.key.ends_with(".csv")));
    assert!(entries.iter().all(|e| !e.version.is_empty()), "{entries:?}");
}

/// An object reads back byte for byte, and a new content is a new version.
pub async fn read_gives_the_bytes_and_a_rewrite_a_new_version(h: &impl StorageHarness) {
    let root = h.root("read").await;
    let uri = format!("{root}/exports/a.csv.gz");
    let body: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    h.seed(&uri, &body).await;
    let source = h.source().await;
    let first = source.list(&uri).await.expect("list").remove(0);
    assert_eq!(first.uri, uri);
    assert_eq!(read_all(source.as_ref(), &first).await, body);

    h.seed(&uri, b"rewritten").await;
    let second = source.list(&uri).await.expect("list").remove(0);
    assert_ne!(second.version, first.version);
    assert_eq!(read_all(source.as_ref(), &second).await, b"rewritten");
}

/// Reading an object that is not there is "not found", which retrying cannot fix.
pub async fn read_of_a_missing_object_is_not_found(h: &impl StorageHarness) {
    let root = h.root("missing").await;
    h.seed(&format!("{root}/exports/present.csv"), b"x").await;
    let entry = ObjectEntry {
        uri: format!("{root}/exports/missing.csv"),
        key: "exports/missing.csv".into(),
        version: String::new(),
        size: None,
    };
    let err = h.source().await.open(&entry).await.err().expect("missing");
    match &err {
        tapline::Error::Source { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{err:?}")
        }
        other => panic!("not a source error: {other:?}"),
    }
    assert!(!err.is_retryable());
}

/// Runs every case of the suite as its own test against the harness `$harness` builds.
#[macro_export]
macro_rules! storage_conformance_tests {
    ($harness:expr) => {
        $crate::storage_conformance_tests!(@cases $harness;
            list_is_everything_under_the_location_in_order,
            read_gives_the_bytes_and_a_rewrite_a_new_version,
            read_of_a_missing_object_is_not_found,
        );
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $harness;
                $crate::storage_conformance::$case(&harness).await;
            }
        )*
    };
}
