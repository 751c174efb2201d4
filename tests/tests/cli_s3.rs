//! `tapline load s3://…` against a real S3 API (moto server, started by
//! `tests/scripts/with-moto.sh`, which `make test` uses).

use tapline_tests::s3::{bucket_with_export, client, etag, new_bucket, notification, put};
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
    let outcome = tapline::load::load_sqs_batch(
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
        tapline::load::FileOutcome::Failed { error, retryable } => {
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
    let payload = serde_json::to_vec(&batch).unwrap();
    let answer = tapline::load::handle_lambda_payload(&payload, &source, &warehouse, &config)
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
    let err = tapline::load::handle_lambda_payload(direct.as_bytes(), &source, &warehouse, &config)
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
