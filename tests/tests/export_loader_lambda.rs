//! The export loader on Lambda: a warehouse outage (messages come back, then load once),
//! scheduled sweeps, and the real binary under `cargo lambda watch` with AWS's documented SQS
//! event and with failures named by their `errorType`. Against moto (S3) and PostgreSQL, which
//! `make test` starts.

use std::process::Stdio;

use serde_json::{Value, json};
use tapline::config::LoadConfig;
use tapline::export_loader::lambda::handle_lambda_payload;
use tapline::storage::s3::S3Source;
use tapline_tests::doubles::proxy::CuttableProxy;
use tapline_tests::servers::lambda_emulator::LambdaEmulator;
use tapline_tests::servers::pg::PgSchema;
use tapline_tests::servers::s3::{
    bucket_with_export, client, create_secret, moto, new_bucket, notification, put,
};
use tapline_tests::servers::sqs::sqs_event;
use tapline_tests::{export_csv, gzip, postgres_url};

const CHARGED: &str = "exports/1663664837-1663785000-Charged-20220921-0-0.csv.gz";
const LAUNCHED: &str = "exports/1663664837-1663785000-App Launched-20220921-0-0.csv.gz";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_warehouse_outage_messages_come_back_and_later_load_once() {
    let s3 = client().await;
    let (bucket, tag) = bucket_with_export(&s3, "outage", CHARGED, "Charged", 40).await;
    let schema = PgSchema::new("lambda_outage");
    let proxy = CuttableProxy::start(&CuttableProxy::target_of(&postgres_url())).await;
    // The function's warehouse, opened at cold start while the database was up.
    let warehouse = tapline::warehouse::open::open(&proxy.rewrite_url(&schema.url()))
        .await
        .unwrap();
    let source = S3Source::new(s3.clone());
    let config = LoadConfig::default();
    let payload = sqs_event(&[
        ("m-1", notification(&bucket, CHARGED, &tag)),
        ("m-2", notification(&bucket, CHARGED, &tag)),
    ]);

    proxy.cut();
    let answer = handle_lambda_payload(payload.clone(), &source, warehouse.as_ref(), &config)
        .await
        .unwrap();
    assert_eq!(
        answer,
        json!({ "batchItemFailures": [{ "itemIdentifier": "m-1" }, { "itemIdentifier": "m-2" }] }),
        "both messages go back to the queue"
    );
    assert_eq!(
        schema.psql("SELECT count(*) FROM _tapline_loads WHERE status = 'loaded'"),
        "0"
    );

    // SQS redelivers after the visibility timeout; the database is back by then.
    proxy.restore();
    let answer = handle_lambda_payload(payload.clone(), &source, warehouse.as_ref(), &config)
        .await
        .unwrap();
    assert_eq!(answer, json!({ "batchItemFailures": [] }));
    assert_eq!(schema.psql("SELECT count(*) FROM charged"), "40");
    assert_eq!(
        schema.psql("SELECT count(*) FROM _tapline_loads WHERE status = 'loaded'"),
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_sweeps_load_objects_whose_events_were_lost() {
    let s3 = client().await;
    let bucket = new_bucket(&s3, "sweep").await;
    put(
        &s3,
        &bucket,
        CHARGED,
        gzip(export_csv("Charged", 3).as_bytes()),
    )
    .await;
    put(
        &s3,
        &bucket,
        LAUNCHED,
        gzip(export_csv("App Launched", 2).as_bytes()),
    )
    .await;
    let schema = PgSchema::new("lambda_sweep");
    let warehouse = tapline::warehouse::open::open(&schema.url()).await.unwrap();
    let source = S3Source::new(s3.clone());
    let config = LoadConfig::default();
    // What EventBridge Scheduler sends (infra/aws wires it), with the rolling window off: the
    // fixtures are dated 2022.
    let payload =
        json!({ "tapline": "sweep", "uri": format!("s3://{bucket}/exports/"), "window_days": 0 });
    let sweep = || async {
        handle_lambda_payload(payload.clone(), &source, warehouse.as_ref(), &config).await
    };
    let first = sweep().await.unwrap();
    assert_eq!(
        (first["loaded"].as_u64(), first["already_loaded"].as_u64()),
        (Some(2), Some(0)),
        "{first}"
    );
    let second = sweep().await.unwrap();
    assert_eq!(
        (second["loaded"].as_u64(), second["already_loaded"].as_u64()),
        (Some(0), Some(2)),
        "{second}"
    );
    assert_eq!(schema.psql("SELECT count(*) FROM charged"), "3");

    let broken = json!({ "tapline": "sweep", "prefix": "x" });
    let err = handle_lambda_payload(broken, &source, warehouse.as_ref(), &config)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing field `uri`"), "{err}");
    assert_eq!(
        (err.kind(), err.is_retryable()),
        ("InvalidLoadPayload", false)
    );
    let missing = json!({ "tapline": "sweep", "uri": "s3://tapline-no-such-bucket/x/" });
    let err = handle_lambda_payload(missing, &source, warehouse.as_ref(), &config)
        .await
        .unwrap_err();
    let chain = tapline::error::error_chain(&err);
    assert!(
        chain.contains("sweep of s3://tapline-no-such-bucket/x/ could not list it"),
        "{chain}"
    );
    assert!(chain.contains("NoSuchBucket"), "{chain}");
    assert_eq!(
        (err.kind(), err.is_retryable()),
        ("SweepLocationRefused", false)
    );
}

/// The Lambda binary (the workspace build of `export-loader`) against cargo-lambda's Lambda
/// runtime API emulator (`cargo lambda watch --only-lambda-apis`), invoked over the Lambda Invoke
/// API with AWS's documented SQS event shape. The function is started the way the emulator
/// documents (its `AWS_LAMBDA_*` variables), so no second build of the function is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_binary_under_cargo_lambda_watch() {
    let s3 = client().await;
    let (bucket, tag) = bucket_with_export(&s3, "watch", CHARGED, "Charged", 12).await;
    let schema = PgSchema::new("lambda_watch");
    // As infra/aws deploys it: the URL without a password, the password in Secrets Manager.
    let secret = create_secret(
        &format!("tapline-watch-{}", std::process::id()),
        "s3cr3t-pw",
    )
    .await;
    let (url, endpoint) = (schema.url(), moto());
    let lambda = LambdaEmulator::start(
        "export-loader",
        &[
            ("TAPLINE_WAREHOUSE", url.as_str()),
            ("TAPLINE_WAREHOUSE_SECRET_ARN", secret.as_str()),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ],
    )
    .await;
    let event = sqs_event(&[
        ("m-1", notification(&bucket, CHARGED, &tag)),
        ("m-2", notification(&bucket, CHARGED, &tag)),
        (
            "m-3",
            notification(
                &bucket,
                "exports/1663664837-1663785000-Charged-20220921-9-0.csv.gz",
                "0123",
            ),
        ),
    ]);
    let (status, body) = lambda.invoke(&event).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "batchItemFailures": [{ "itemIdentifier": "m-3" }] }),
        "the duplicate loads once, the missing object fails alone"
    );
    assert_eq!(schema.psql("SELECT count(*) FROM charged"), "12");

    let logs = lambda.stop().await;
    let init = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "Export loader initialised.")
        .unwrap_or_else(|| panic!("no initialisation log line in {logs}"));
    // A figure for the notes (debug build), not an assertion.
    println!("export-loader cold start: init_ms = {}", init["init_ms"]);
    assert_eq!(init["level"], "INFO", "{init}");
    assert!(
        !logs.contains("s3cr3t-pw"),
        "the password never reaches a log: {logs}"
    );
}

/// The Lambda binary names each failure in its `errorType` (what the relay, CloudWatch metric
/// filters and a scheduler's dead letters go by): a payload it cannot use is refused with a
/// kind no retry fixes, and nothing is loaded; a warehouse out of reach is a kind a retry fixes,
/// and the retry loads the object once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_binary_names_a_refused_payload_and_a_retryable_failure() {
    let s3 = client().await;
    let (bucket, _) = bucket_with_export(&s3, "kinds", CHARGED, "Charged", 6).await;
    let schema = PgSchema::new("lambda_kinds");
    let proxy = CuttableProxy::start(&CuttableProxy::target_of(&postgres_url())).await;
    let (url, endpoint) = (proxy.rewrite_url(&schema.url()), moto());
    let lambda = LambdaEmulator::start(
        "export-loader",
        &[
            ("TAPLINE_WAREHOUSE", url.as_str()),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ],
    )
    .await;
    let sweep =
        json!({ "tapline": "sweep", "uri": format!("s3://{bucket}/exports/"), "window_days": 0 });
    // (errorType, errorMessage) of a failed invocation.
    let failure = |(status, body): (u16, Value)| {
        assert_ne!(status, 200, "{body}");
        (
            body["errorType"].as_str().unwrap_or_default().to_string(),
            body["errorMessage"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };

    let refused = [
        (
            json!({ "tapline": "sweep", "prefix": "exports/" }),
            "InvalidLoadPayload",
            "not a recognised event: sweep payload: missing field `uri`",
        ),
        (
            json!({ "tapline": "sweep", "uri": format!("s3://{bucket}/exports/"), "request_id": "12ab" }),
            "InvalidLoadPayload",
            "request_id must be the export request id's digits (at most 20)",
        ),
        (
            json!({ "hello": "world" }),
            "InvalidLoadPayload",
            "not a recognised event: expected an S3, SQS, SNS or EventBridge event; top-level keys: [\"hello\"]",
        ),
        (
            json!({ "tapline": "sweep", "uri": format!("gs://{bucket}/exports/") }),
            "SweepLocationRefused",
            "could not list it or read the ledger: cannot read gs://",
        ),
        (
            json!({ "tapline": "sweep", "uri": "s3://tapline-no-such-bucket/exports/" }),
            "SweepLocationRefused",
            "NoSuchBucket",
        ),
    ];
    for (payload, kind, message) in refused {
        let (error_type, error_message) = failure(lambda.invoke(&payload).await);
        assert_eq!(error_type, kind, "{payload}: {error_message}");
        assert!(
            error_message.contains(message),
            "{payload}: {error_message}"
        );
    }
    assert_eq!(
        schema.psql("SELECT to_regclass('_tapline_loads') IS NULL OR (SELECT count(*) = 0 FROM _tapline_loads)"),
        "t",
        "nothing was tried"
    );

    // The warehouse out of reach: the ledger read fails, retryably; nothing is loaded.
    proxy.cut();
    let (error_type, error_message) = failure(lambda.invoke(&sweep).await);
    proxy.restore();
    assert_eq!(error_type, "LoadFailedRetryable", "{error_message}");
    assert_eq!(schema.psql("SELECT to_regclass('charged') IS NULL"), "t");
    // The retry the kind asks for loads the object, once.
    let (status, body) = lambda.invoke(&sweep).await;
    assert_eq!((status, body["loaded"].as_u64()), (200, Some(1)), "{body}");
    assert_eq!(schema.psql("SELECT count(*) FROM charged"), "6");

    let logs = lambda.stop().await;
    let kinds: Vec<String> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "Invocation failed.")
        .map(|l| format!("{} {}", l["kind"], l["retryable"]))
        .collect();
    assert_eq!(
        kinds,
        [
            "\"InvalidLoadPayload\" false",
            "\"InvalidLoadPayload\" false",
            "\"InvalidLoadPayload\" false",
            "\"SweepLocationRefused\" false",
            "\"SweepLocationRefused\" false",
            "\"LoadFailedRetryable\" true",
        ],
        "each failure logged once with its kind: {logs}"
    );
}

/// A warehouse secret that cannot be read fails the cold start, naming the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_warehouse_secret_fails_the_cold_start() {
    let schema = PgSchema::new("lambda_nosecret");
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:tapline-missing-AbCdEf";
    let out = tokio::process::Command::new(tapline_tests::bin("export-loader"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "_")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_RUNTIME_API", "http://127.0.0.1:9/.rt")
        .env("TAPLINE_WAREHOUSE", schema.url())
        .env("TAPLINE_WAREHOUSE_SECRET_ARN", arn)
        .env("AWS_ENDPOINT_URL", moto())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run export-loader");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot read secret {arn}")) || stderr.contains(arn),
        "{stderr}"
    );
    assert!(stderr.contains("ResourceNotFoundException"), "{stderr}");
}
