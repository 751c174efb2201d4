//! `tapline load s3://…` against a real S3 API (moto server, started by
//! `tests/scripts/with-moto.sh`, which `make test` uses).

use tapline_tests::servers::s3::{bucket_with_export, client, etag, new_bucket, notification, put};
use tapline_tests::{export_csv, gzip, sqlite_rows, sqlite_value, tapline};

/// A SQLite warehouse in a file.
async fn sqlite(db: &std::path::Path) -> tapline::warehouse::sqlite::SqliteWarehouse {
    tapline::warehouse::sqlite::SqliteWarehouse::open(db, Default::default())
        .await
        .unwrap()
}

const ORDER: &str = "exports/2022-09-21/1663664837-1663785000-Order-Placed-20220921-0-0.csv.gz";
const SPACED: &str = "exports/manual uploads/1663664837-1663785000-Charged-20220921-0-0.csv.gz";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_a_prefix_once_and_replaces_a_rewritten_object() {
    let s3 = client().await;
    let bucket = new_bucket(&s3, "load").await;
    put(
        &s3,
        &bucket,
        ORDER,
        gzip(export_csv("Order Placed", 300).as_bytes()),
    )
    .await;
    put(
        &s3,
        &bucket,
        SPACED,
        gzip(export_csv("Charged", 40).as_bytes()),
    )
    .await;
    put(
        &s3,
        &bucket,
        "exports/README.txt",
        b"not an export".to_vec(),
    )
    .await;
    put(
        &s3,
        &bucket,
        "elsewhere/1-2-Charged-20220921-0-0.csv.gz",
        b"outside the prefix".to_vec(),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.sqlite");
    let wh = format!("sqlite://{}", db.display());
    let prefix = format!("s3://{bucket}/exports/");
    let run = tapline(&["load", &prefix, "--warehouse", &wh]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        sqlite_value(&db, "SELECT count(*) FROM order_placed").as_deref(),
        Some("300")
    );
    assert_eq!(
        sqlite_value(&db, "SELECT count(*) FROM charged").as_deref(),
        Some("40")
    );
    let etag = etag(&s3, &bucket, ORDER).await;
    assert_eq!(
        sqlite_rows(
            &db,
            &format!("SELECT version FROM _tapline_loads WHERE uri = 's3://{bucket}/{ORDER}'")
        ),
        vec![vec![Some(etag)]],
        "the ledger records the ETag that was read"
    );
    assert!(
        run.stdout
            .contains("not a CleverTap export name: README.txt"),
        "{}",
        run.stdout
    );

    // Again: nothing new. Then a corrected re-export of one object replaces its rows.
    let again = tapline(&["load", &prefix, "--warehouse", &wh]);
    assert_eq!(again.code, 0);
    assert_eq!(
        sqlite_value(&db, "SELECT count(*) FROM order_placed").as_deref(),
        Some("300")
    );
    put(
        &s3,
        &bucket,
        ORDER,
        gzip(export_csv("Order Placed", 120).as_bytes()),
    )
    .await;
    let replaced = tapline(&["load", &prefix, "--warehouse", &wh]);
    assert_eq!(replaced.code, 0, "{}", replaced.stdout);
    assert_eq!(
        sqlite_value(&db, "SELECT count(*) FROM order_placed").as_deref(),
        Some("120")
    );
    assert_eq!(
        sqlite_value(&db, "SELECT group_concat(status, ',') FROM (SELECT status FROM _tapline_loads WHERE uri LIKE '%Order-Placed%' ORDER BY load_id)").as_deref(),
        Some("replaced,loaded")
    );
}

#[test]
fn a_missing_bucket_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let wh = format!("sqlite://{}", dir.path().join("w.sqlite").display());
    let run = tapline(&[
        "load",
        "s3://tapline-no-such-bucket/exports/",
        "--warehouse",
        &wh,
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("cannot read s3://tapline-no-such-bucket/exports/: NoSuchBucket"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_batch_loads_once_and_fails_only_its_bad_messages() {
    use tapline::triggers::{SqsMessage, from_message_body};
    let s3 = client().await;
    let (bucket, etag) = bucket_with_export(&s3, "batch", ORDER, "Order Placed", 300).await;

    let message = |id: &str, body: &str| SqsMessage {
        message_id: id.to_string(),
        notices: from_message_body(body),
    };
    // The same event delivered ten times, a test event, an event for an object that is gone,
    // and a body that is not an event.
    let mut messages: Vec<SqsMessage> = (0..10)
        .map(|i| message(&format!("dup-{i}"), &notification(&bucket, ORDER, &etag)))
        .collect();
    messages.push(message(
        "test",
        r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#,
    ));
    let missing = "exports/1663664837-1663785000-Charged-20220921-9-0.csv.gz";
    messages.push(message(
        "missing",
        &notification(&bucket, missing, "0123456789abcdef"),
    ));
    messages.push(message("garbage", "not json"));

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.sqlite");
    let warehouse = sqlite(&db).await;
    let source = tapline::storage::s3::S3Source::new(s3.clone());
    let outcome = tapline::export_loader::lambda::load_sqs_batch(
        &source,
        &warehouse,
        messages,
        &tapline::config::LoadConfig::default(),
    )
    .await;
    assert_eq!(outcome.failed_message_ids, ["missing", "garbage"]);
    assert_eq!(
        sqlite_value(&db, "SELECT count(*) FROM order_placed").as_deref(),
        Some("300")
    );
    assert_eq!(
        sqlite_value(&db, "SELECT count(*) || ' ' || min(status) FROM _tapline_loads WHERE uri LIKE '%Order-Placed%'").as_deref(),
        Some("1 loaded")
    );
    let labels: Vec<&str> = outcome.reports.iter().map(|r| r.outcome.label()).collect();
    assert_eq!(labels[0], "loaded");
    assert!(
        labels[1..10].iter().all(|l| *l == "already loaded"),
        "{labels:?}"
    );
    let gone = outcome.reports.last().unwrap();
    match &gone.outcome {
        tapline::export_loader::load::FileOutcome::Failed { error, retryable } => {
            assert!(error.contains("NoSuchKey"), "{error}");
            assert!(!retryable, "a missing object will not appear by retrying");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// The Lambda handler's answers: a partial batch response for SQS, a failed invocation for a
/// direct event whose object is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_payloads_answer_with_partial_batch_responses() {
    let s3 = client().await;
    let (bucket, etag) = bucket_with_export(&s3, "lambda", SPACED, "Charged", 25).await;
    let missing = "exports/1663664837-1663785000-Charged-20220921-7-0.csv.gz";
    let record = |id: &str, body: String| {
        serde_json::json!({
            "messageId": id, "receiptHandle": "AQEB…", "body": body,
            "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
            "md5OfBody": "x", "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:111122223333:exports", "awsRegion": "us-east-1"
        })
    };
    let batch = serde_json::json!({ "Records": [
        record("ok", notification(&bucket, SPACED, &etag)),
        record("again", notification(&bucket, SPACED, &etag)),
        record("gone", notification(&bucket, missing, "0123456789abcdef")),
    ]});
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.sqlite");
    let warehouse = sqlite(&db).await;
    let source = tapline::storage::s3::S3Source::new(s3.clone());
    let config = tapline::config::LoadConfig::default();
    let answer =
        tapline::export_loader::lambda::handle_lambda_payload(batch, &source, &warehouse, &config)
            .await
            .unwrap();
    assert_eq!(
        answer,
        serde_json::json!({ "batchItemFailures": [{ "itemIdentifier": "gone" }] })
    );
    assert_eq!(
        sqlite_value(&db, "SELECT count(*) FROM charged").as_deref(),
        Some("25")
    );

    // A direct S3 event for the missing object fails the invocation, naming the object.
    let direct = notification(&bucket, missing, "0123456789abcdef");
    let err = tapline::export_loader::lambda::handle_lambda_payload(
        serde_json::from_str(&direct).unwrap(),
        &source,
        &warehouse,
        &config,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(&format!(
            "1 of 1 objects failed: s3://{bucket}/{missing}: cannot read"
        )),
        "{err}"
    );
    assert!(err.contains("NoSuchKey"), "{err}");
}

/// Every call a sweep makes on the warehouse port, by name, passed on to the real warehouse.
struct CountingWarehouse {
    inner: Box<dyn tapline::warehouse::Warehouse>,
    calls: std::sync::Mutex<Vec<&'static str>>,
}

impl CountingWarehouse {
    fn note(&self, call: &'static str) {
        self.calls.lock().unwrap().push(call);
    }

    fn count(&self, call: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| **c == call)
            .count()
    }

    fn total(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

impl tapline::warehouse::Warehouse for CountingWarehouse {
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[async_trait::async_trait]
impl tapline::warehouse::LoadLedger for CountingWarehouse {
    fn max_columns(&self) -> usize {
        self.inner.max_columns()
    }
    async fn begin_load(
        &self,
        object: &tapline::warehouse::SourceObject,
        retry_quarantined: bool,
    ) -> Result<tapline::warehouse::Begin, tapline::warehouse::WarehouseError> {
        self.note("begin_load");
        self.inner.begin_load(object, retry_quarantined).await
    }
    async fn record_failure(
        &self,
        object: &tapline::warehouse::SourceObject,
        error: &str,
    ) -> Result<(), tapline::warehouse::WarehouseError> {
        self.note("record_failure");
        self.inner.record_failure(object, error).await
    }
    async fn recent_loads(
        &self,
        limit: usize,
    ) -> Result<Vec<tapline::warehouse::LoadRecord>, tapline::warehouse::WarehouseError> {
        self.note("recent_loads");
        self.inner.recent_loads(limit).await
    }
    async fn ledger_versions(
        &self,
        uri_prefix: &str,
    ) -> Result<Vec<tapline::warehouse::LedgerVersion>, tapline::warehouse::WarehouseError> {
        self.note("ledger_versions");
        self.inner.ledger_versions(uri_prefix).await
    }
    async fn commits_since(
        &self,
        since: &str,
        limit: usize,
    ) -> Result<Vec<tapline::warehouse::LoadRecord>, tapline::warehouse::WarehouseError> {
        self.note("commits_since");
        self.inner.commits_since(since, limit).await
    }
}

#[async_trait::async_trait]
impl tapline::warehouse::SqlQuery for CountingWarehouse {
    async fn query(
        &self,
        sql: &str,
    ) -> Result<tapline::warehouse::QueryResult, tapline::warehouse::WarehouseError> {
        self.note("query");
        self.inner.query(sql).await
    }
}

#[async_trait::async_trait]
impl tapline::warehouse::Checkpoints for CountingWarehouse {
    async fn get_state(
        &self,
        key: &str,
    ) -> Result<Option<String>, tapline::warehouse::WarehouseError> {
        self.note("get_state");
        self.inner.get_state(key).await
    }
    async fn put_state(
        &self,
        key: &str,
        value: &str,
    ) -> Result<(), tapline::warehouse::WarehouseError> {
        self.note("put_state");
        self.inner.put_state(key, value).await
    }
}

#[async_trait::async_trait]
impl tapline::warehouse::FixedTables for CountingWarehouse {
    async fn replace_rows(
        &self,
        table: &tapline::warehouse::FixedTable,
        rows: &[Vec<Option<String>>],
    ) -> Result<u64, tapline::warehouse::WarehouseError> {
        self.note("replace_rows");
        self.inner.replace_rows(table, rows).await
    }
}

/// A scheduled sweep over 5,000 listed objects of which 3 are new reads the ledger once and
/// begins 3 loads: its warehouse calls are bounded by 1 + the new objects, whatever the
/// listing holds (before, each listed object cost a ledger query). It loads exactly the 3,
/// newest first, and counts the rest as already loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_of_five_thousand_objects_reads_the_ledger_once() {
    const LISTED: usize = 5_000;
    let s3 = client().await;
    let bucket = new_bucket(&s3, "sweep5k").await;
    let date = |i: usize| format!("2022{:02}{:02}", 1 + i % 12, 1 + i % 28);
    let key = |i: usize| {
        format!(
            "exports/{}-1663785000-Charged-{}-{i}-0.csv.gz",
            1_663_000_000 + i,
            date(i)
        )
    };
    // Rows dated the day the name says, as CleverTap writes them.
    let body = |i: usize| {
        gzip(
            export_csv("Charged", 2)
                .replace("20220921", &date(i))
                .as_bytes(),
        )
    };
    for chunk in (0..LISTED).collect::<Vec<_>>().chunks(100) {
        let mut puts = tokio::task::JoinSet::new();
        for &i in chunk {
            let (s3, bucket, key, body) = (s3.clone(), bucket.clone(), key(i), body(i));
            puts.spawn(async move { put(&s3, &bucket, &key, body).await });
        }
        while let Some(done) = puts.join_next().await {
            done.unwrap();
        }
    }
    let source = tapline::storage::s3::S3Source::new(s3.clone());
    let prefix = format!("s3://{bucket}/exports/");
    let listed = tapline::storage::ObjectSource::list(&source, &prefix)
        .await
        .unwrap();
    assert_eq!(listed.len(), LISTED);

    // The ledger already holds every object but three, as earlier events loaded them.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.sqlite");
    drop(sqlite(&db).await);
    let new: Vec<String> = [17, 2_500, 4_999].iter().map(|&i| key(i)).collect();
    {
        let mut conn = rusqlite::Connection::open(&db).unwrap();
        let tx = conn.transaction().unwrap();
        for entry in listed.iter().filter(|e| !new.contains(&e.key)) {
            tx.execute(
                "INSERT INTO _tapline_loads (uri, version, status, rows_loaded, started_at, finished_at)
                 VALUES (?1, ?2, 'loaded', 2, '2022-09-22T00:00:00Z', '2022-09-22T00:00:01Z')",
                rusqlite::params![entry.uri, entry.version],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let warehouse = CountingWarehouse {
        inner: Box::new(sqlite(&db).await),
        calls: Default::default(),
    };
    let request = tapline::export_loader::sweep::SweepRequest {
        uri: prefix.clone(),
        since: None,
        window_days: Some(0),
        request_id: None,
    };
    let report = tapline::export_loader::sweep::sweep(
        &source,
        &warehouse,
        &request,
        &tapline::config::LoadConfig::default(),
    )
    .await
    .unwrap();
    let counts = report.counts();
    assert_eq!(
        (counts.loaded, counts.already_loaded, counts.failed),
        (3, LISTED - 3, 0),
        "{}",
        report.to_json()
    );
    // The bound: one ledger read for the prefix, one begin per new object, nothing else.
    assert_eq!(warehouse.count("ledger_versions"), 1);
    assert_eq!(warehouse.count("begin_load"), 3);
    assert_eq!(warehouse.total(), 1 + 3);
    // Newest first: 4999 is dated 2022-08-16, 17 2022-06-18, 2500 2022-05-09.
    let loaded: Vec<&str> = report
        .reports
        .iter()
        .map(|r| r.entry.key.as_str())
        .collect();
    assert_eq!(loaded, [new[2].as_str(), new[0].as_str(), new[1].as_str()]);
    assert_eq!(
        sqlite_value(&db, "SELECT count(*) FROM charged").as_deref(),
        Some("6")
    );
    assert_eq!(
        report.to_json()["listed"].as_u64(),
        Some(LISTED as u64),
        "{}",
        report.to_json()
    );
}
