//! The scheduled API pull (what `functions/api-puller` runs per invocation): the configured
//! jobs over a window ending yesterday in the project's time zone, against the CleverTap double
//! and a SQLite warehouse, through `handle_pull_payload` as the Lambda handler calls it.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use tapline::clevertap::{ApiConfig, ClevertapClient};
use tapline::pull::jobs::{PullInvocationError, PullJobs, handle_pull_payload};
use tapline::warehouse::Warehouse;
use tapline::warehouse::sqlite::{Journal, SqliteWarehouse};
use tapline_tests::clevertap_api::{ClevertapApi, event_records};

fn lookup(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<&str, String> = pairs.into_iter().collect();
    move |k| map.get(k).cloned()
}

async fn count(w: &dyn Warehouse, sql: &str) -> String {
    w.query(sql).await.unwrap().rows[0][0].clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_run_pulls_yesterday_with_its_lookback_and_fails_loudly() {
    let api = ClevertapApi::start().await;
    api.set_events("Charged", 20220922, event_records(20220922, 12));
    api.set_events("Charged", 20220923, event_records(20220923, 7));
    api.set_events("Charged", 20220924, event_records(20220924, 99));
    let dir = tempfile::tempdir().unwrap();
    let warehouse: Arc<dyn Warehouse> = Arc::new(
        SqliteWarehouse::open(dir.path().join("w.sqlite"), Journal::Rollback)
            .await
            .unwrap(),
    );
    let client = ClevertapClient::new(ApiConfig::from_lookup(lookup(api.env())).unwrap()).unwrap();
    let jobs = PullJobs::from_lookup(lookup(vec![
        ("TAPLINE_TIMEZONE", "Asia/Kolkata".into()),
        ("TAPLINE_PULL_EVENTS", "Charged".into()),
        ("TAPLINE_PULL_LOOKBACK_DAYS", "2".into()),
    ]))
    .unwrap();
    // 01:30 on the 24th in Kolkata: yesterday is the 23rd, the lookback adds the 22nd.
    let now: jiff::Timestamp = "2022-09-23T20:00:00Z".parse().unwrap();
    let pull = json!({"tapline": "pull"});

    let summary = handle_pull_payload(&pull, &client, warehouse.clone(), &jobs, now)
        .await
        .unwrap();
    assert_eq!(summary["from"], "2022-09-22");
    assert_eq!(summary["to"], "2022-09-23");
    assert_eq!(summary["jobs"], json!(["events", "counts"]));
    assert_eq!(summary["results"]["events Charged 2022-09-22"]["rows"], 12);
    assert_eq!(summary["results"]["events Charged 2022-09-23"]["rows"], 7);
    assert_eq!(summary["results"]["count Charged 2022-09-23"], 7);
    assert_eq!(
        count(warehouse.as_ref(), "SELECT count(*) FROM charged").await,
        "19"
    );
    assert_eq!(
        count(warehouse.as_ref(), "SELECT count(*) FROM event_counts").await,
        "2"
    );

    // The next day's run re-pulls the 23rd (lookback) and adds the 24th: nothing doubles.
    let next_day: jiff::Timestamp = "2022-09-24T20:00:00Z".parse().unwrap();
    handle_pull_payload(&pull, &client, warehouse.clone(), &jobs, next_day)
        .await
        .unwrap();
    assert_eq!(
        count(warehouse.as_ref(), "SELECT count(*) FROM charged").await,
        "118"
    );

    // A backfill names its own window and jobs.
    let backfill =
        json!({"tapline": "pull", "from": "2022-09-22", "to": "2022-09-22", "jobs": ["counts"]});
    let summary = handle_pull_payload(&backfill, &client, warehouse.clone(), &jobs, now)
        .await
        .unwrap();
    assert_eq!(summary["results"], json!({"count Charged 2022-09-22": 12}));

    let err = handle_pull_payload(
        &json!({"tapline": "sweep"}),
        &client,
        warehouse.clone(),
        &jobs,
        now,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "not a pull payload: expected {\"tapline\": \"pull\"}"
    );

    api.refuse_event("Notification Sent");
    let refused =
        json!({"tapline": "pull", "events": ["Notification Sent", "Charged"], "jobs": ["events"]});
    let err = handle_pull_payload(&refused, &client, warehouse.clone(), &jobs, now)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PullInvocationError::Failed {
                failed: 2,
                total: 4,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "2 of 4 pulls failed: events Notification Sent 2022-09-22: POST /1/events.json: CleverTap \
         refused the request (HTTP 200, code Some(400)): Export not allowed for this event"
    );
    assert_eq!(
        count(warehouse.as_ref(), "SELECT count(*) FROM charged").await,
        "118"
    );
}

/// The deployed binary: `functions/api-puller` under cargo-lambda's runtime API emulator,
/// configured as `infra/aws` deploys it (passcode in Secrets Manager, PostgreSQL), invoked with
/// the Scheduler payload plus an explicit window; the passcode never reaches its logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_binary_pulls_under_cargo_lambda_watch() {
    use tapline_tests::clevertap_api::{ACCOUNT, PASSCODE};
    use tapline_tests::lambda_emulator::LambdaEmulator;
    use tapline_tests::pg::PgSchema;
    use tapline_tests::s3::{create_secret, moto};

    let api = ClevertapApi::start().await;
    api.set_events("Charged", 20220922, event_records(20220922, 12));
    api.set_events("Charged", 20220923, event_records(20220923, 7));
    let schema = PgSchema::new("puller_watch");
    let secret = create_secret(
        &format!("tapline-passcode-{}", std::process::id()),
        PASSCODE,
    )
    .await;
    let api_url = api
        .env()
        .into_iter()
        .find(|(k, _)| *k == "CLEVERTAP_API_URL")
        .unwrap()
        .1;
    let (url, endpoint) = (schema.url(), moto());
    let lambda = LambdaEmulator::start(
        "api-puller",
        &[
            ("CLEVERTAP_ACCOUNT_ID", ACCOUNT),
            ("CLEVERTAP_PASSCODE_SECRET_ARN", secret.as_str()),
            ("CLEVERTAP_API_URL", api_url.as_str()),
            ("CLEVERTAP_BACKOFF_MS", "1"),
            ("TAPLINE_WAREHOUSE", url.as_str()),
            ("TAPLINE_TIMEZONE", "Asia/Kolkata"),
            ("TAPLINE_PULL_EVENTS", "Charged"),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ],
    )
    .await;
    let (status, body) = lambda
        .invoke(&json!({"tapline": "pull", "from": "2022-09-22", "to": "2022-09-23"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["results"]["events Charged 2022-09-22"]["rows"], 12,
        "{body}"
    );
    assert_eq!(
        body["results"]["events Charged 2022-09-23"]["rows"], 7,
        "{body}"
    );
    assert_eq!(schema.psql("SELECT count(*) FROM charged"), "19");
    assert_eq!(
        schema.psql("SELECT count FROM event_counts WHERE day = '2022-09-22'"),
        "12"
    );
    // A malformed payload fails the invocation (the Scheduler's retry and DLQ see it).
    let (status, body) = lambda
        .invoke(&json!({"tapline": "pull", "from": "22/09"}))
        .await;
    assert_ne!(status, 200, "{body}");

    let logs = lambda.stop().await;
    assert!(logs.contains("API puller initialised."), "{logs}");
    assert!(
        !logs.contains(PASSCODE),
        "the passcode never reaches a log: {logs}"
    );
}
