//! The storage conformance suite: what every storage adapter (local files, S3, Cloud Storage)
//! gives through the port alone. Each adapter's test module runs it with
//! [`storage_conformance_tests!`] and a [`StorageHarness`].

use std::io::Read;
use std::sync::Arc;

use async_trait::async_trait;
use tapline::storage::{NewObject, ObjectEntry, ObjectSource, ObjectStore, PutMode, StoreError};

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
    /// The adapter under test, as a store of small objects.
    async fn store(&self) -> Arc<dyn ObjectStore>;
    /// Whether it keeps custom metadata (buckets do, local files do not).
    fn keeps_metadata(&self) -> bool {
        true
    }
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
        created_at: None,
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

fn object(body: &str) -> NewObject {
    NewObject {
        body: body.as_bytes().to_vec(),
        content_type: Some("application/json".into()),
        metadata: Default::default(),
    }
}

fn refused(result: Result<String, StoreError>) -> bool {
    match result {
        Err(StoreError::Precondition { .. }) => true,
        other => panic!("expected a refused precondition, got {other:?}"),
    }
}

/// A create happens once: the second is refused and the first object stays as written.
pub async fn put_if_absent_twice_refuses_the_second(h: &impl StorageHarness) {
    let root = h.root("create").await;
    let store = h.store().await;
    let uri = format!("{root}/dedupe/r/d/k");
    let first = store
        .put(&uri, object(r#"{"p":1}"#), PutMode::Create)
        .await
        .expect("first create");
    assert!(!first.is_empty());
    assert!(refused(
        store.put(&uri, object(r#"{"p":2}"#), PutMode::Create).await
    ));
    let stored = store.get(&uri).await.expect("get");
    assert_eq!(stored.body, br#"{"p":1}"#);
    assert_eq!(stored.meta.version, first);
    assert_eq!(store.head(&uri).await.expect("head").version, first);
}

/// A replace names the version it read: a stale or missing one is refused, the right one wins
/// once, and an overwrite needs no version.
pub async fn put_if_version_needs_the_current_version(h: &impl StorageHarness) {
    let root = h.root("replace").await;
    let store = h.store().await;
    let uri = format!("{root}/dedupe/r/d/k");
    assert!(refused(
        store
            .put(&uri, object("{}"), PutMode::Replace("1".into()))
            .await
    ));
    let v1 = store
        .put(&uri, object(r#"{"p":1}"#), PutMode::Create)
        .await
        .unwrap();
    let stale = format!("{v1}0");
    assert!(refused(
        store
            .put(&uri, object(r#"{"p":2}"#), PutMode::Replace(stale))
            .await
    ));
    // Same size as the first: the version must change with the content, not only the size.
    let v2 = store
        .put(&uri, object(r#"{"p":3}"#), PutMode::Replace(v1.clone()))
        .await
        .expect("replace at the version read");
    assert_ne!(v2, v1);
    assert!(
        refused(
            store
                .put(&uri, object(r#"{"p":4}"#), PutMode::Replace(v1))
                .await
        ),
        "the second replace of one version loses"
    );
    assert_eq!(store.get(&uri).await.unwrap().body, br#"{"p":3}"#);
    let v3 = store
        .put(&uri, object(r#"{"p":5}"#), PutMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(store.head(&uri).await.unwrap().version, v3);
}

/// Reading a missing object is "not found", which retrying cannot fix; deleting one is not an
/// error; a deleted object can be created again.
pub async fn missing_objects_and_deletes(h: &impl StorageHarness) {
    let root = h.root("delete").await;
    let store = h.store().await;
    let uri = format!("{root}/payloads/p1.json");
    for err in [
        store.get(&uri).await.expect_err("missing"),
        store.head(&uri).await.expect_err("missing"),
    ] {
        assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
        assert!(!err.is_retryable());
    }
    store.delete(&uri).await.expect("delete of nothing");
    store
        .put(&uri, object("{}"), PutMode::Create)
        .await
        .unwrap();
    store.delete(&uri).await.expect("delete");
    assert!(matches!(
        store.get(&uri).await,
        Err(StoreError::NotFound { .. })
    ));
    store
        .put(&uri, object("{}"), PutMode::Create)
        .await
        .expect("created again");
}

/// Listing a prefix gives the objects under it in key order, not its neighbours'.
pub async fn list_by_prefix_in_key_order(h: &impl StorageHarness) {
    let root = h.root("prefix").await;
    let store = h.store().await;
    for key in [
        "attempts/p1/2.json",
        "attempts/p1/1.json",
        "attempts/p10/1.json",
    ] {
        store
            .put(&format!("{root}/{key}"), object(key), PutMode::Overwrite)
            .await
            .unwrap();
    }
    let listed = store
        .list_prefix(&format!("{root}/attempts/p1/"))
        .await
        .unwrap();
    let uris: Vec<&str> = listed.iter().map(|e| e.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            format!("{root}/attempts/p1/1.json"),
            format!("{root}/attempts/p1/2.json")
        ]
    );
    assert_eq!(listed[0].size, Some("attempts/p1/1.json".len() as u64));
    let none = store
        .list_prefix(&format!("{root}/attempts/none/"))
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
}

/// Custom metadata comes back as written where the store keeps it, and is refused (never
/// dropped silently) where it does not.
pub async fn metadata_is_kept_or_refused(h: &impl StorageHarness) {
    let root = h.root("metadata").await;
    let store = h.store().await;
    let uri = format!("{root}/dedupe/r/d/m");
    let mut with_metadata = object("{}");
    with_metadata
        .metadata
        .insert("payload-id".into(), "p1".into());
    with_metadata
        .metadata
        .insert("received-at-ms".into(), "5".into());
    let written = store
        .put(&uri, with_metadata.clone(), PutMode::Create)
        .await;
    if !h.keeps_metadata() {
        let err = written.expect_err("refused");
        assert!(!err.is_retryable(), "{err:?}");
        assert!(matches!(
            store.head(&uri).await,
            Err(StoreError::NotFound { .. })
        ));
        return;
    }
    let version = written.expect("put");
    let head = store.head(&uri).await.unwrap();
    assert_eq!(
        (head.version, head.metadata),
        (version, with_metadata.metadata.clone())
    );
    assert_eq!(
        store.get(&uri).await.unwrap().meta.metadata,
        with_metadata.metadata
    );
}

/// Runs every case of the suite as its own test against the harness `$harness` builds.
#[macro_export]
macro_rules! storage_conformance_tests {
    ($harness:expr) => {
        $crate::storage_conformance_tests!(@cases $harness;
            list_is_everything_under_the_location_in_order,
            read_gives_the_bytes_and_a_rewrite_a_new_version,
            read_of_a_missing_object_is_not_found,
            put_if_absent_twice_refuses_the_second,
            put_if_version_needs_the_current_version,
            missing_objects_and_deletes,
            list_by_prefix_in_key_order,
            metadata_is_kept_or_refused,
        );
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $harness;
                $crate::conformance::storage::$case(&harness).await;
            }
        )*
    };
}
