//! `tapline load s3://…` against a real S3 API (moto server, started by
//! `tests/scripts/with-moto.sh`, which `make test` uses).

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use tapline_tests::{export_csv, gzip, sqlite_rows, sqlite_value, tapline};

fn moto() -> String {
    std::env::var("TAPLINE_TEST_MOTO_URL").unwrap_or_else(|_| {
        panic!("TAPLINE_TEST_MOTO_URL is not set: run `make test` or tests/scripts/with-moto.sh")
    })
}

async fn client() -> Client {
    let endpoint = moto();
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    Client::from_conf(
        aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .build(),
    )
}

async fn put(client: &Client, bucket: &str, key: &str, body: Vec<u8>) {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .expect("put object");
}

const ORDER: &str = "exports/2022-09-21/1663664837-1663785000-Order-Placed-20220921-0-0.csv.gz";
const SPACED: &str = "exports/manual uploads/1663664837-1663785000-Charged-20220921-0-0.csv.gz";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_a_prefix_once_and_replaces_a_rewritten_object() {
    let s3 = client().await;
    let bucket = format!("tapline-load-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
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
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key(ORDER)
        .send()
        .await
        .unwrap();
    let etag = head.e_tag().unwrap().trim_matches('"').to_string();
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
