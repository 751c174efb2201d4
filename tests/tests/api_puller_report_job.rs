//! The scheduled puller's `report` job: the completeness page `tapline report` makes, put at
//! `TAPLINE_REPORT_URI` through the storage port. The Lambda binary under `cargo lambda watch`
//! writes it to S3 (moto), the Cloud Run binary to GCS (fake-gcs-server), each with PostgreSQL
//! and the CleverTap double; in process, a local path. The object holds the grid, the
//! Content-Security-Policy that forbids every request, and is served as HTML.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tapline::api_puller::jobs::{PullJobs, handle_pull_payload};
use tapline::clevertap::{ApiConfig, ClevertapClient};
use tapline::warehouse::Warehouse;
use tapline::warehouse::sqlite::{Journal, SqliteWarehouse};
use tapline_tests::doubles::clevertap_api::{ACCOUNT, ClevertapApi, PASSCODE, event_records};
use tapline_tests::servers::pg::PgSchema;

const CSP: &str = "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
                   style-src 'unsafe-inline'\">";

/// The grid's cell of Charged on the 22nd: 12 rows pulled, CleverTap counts 12.
const CHARGED_CELL: &str = "<td class=\"ok\" title=\"Charged on 2022-09-22: complete. Chunks 0, \
                            export rows 0, API rows 12, CleverTap 12.\">12</td>";

/// A body the page never shows.
const DEAD_LETTER_BODY: &str = "card-4111111111111111";

/// A delivery the relay's worker gave up on, as it sends it to the SQS dead-letter queue.
const DEAD_LETTER_SQS: &str = r#"{"id":"p1.crm","payload_id":"p1","route":"alerts","destination":"crm","received_at_ms":1764000000000,"body":"{\"card\":\"card-4111111111111111\"}","dead":{"attempt":3,"at_ms":1764000060000,"status":503,"outcome":"retryable","error":"HTTP 503: down"},"attempts":[{"attempt":3,"at_ms":1764000060000,"duration_ms":4,"status":503,"outcome":"retryable","error":"HTTP 503: down"}]}"#;

/// Its row on the page.
const DEAD_LETTER_ROW: &str = "<tr><td class=\"name\">alerts</td><td class=\"name\">crm</td><td>3</td><td class=\"name\">retryable: HTTP 503: down</td><td class=\"name\">2025-11-24T16:01:00Z</td></tr>";

/// The payload: events and counts of the 22nd, then reconcile and the page (listed out of
/// order: the page runs last).
fn payload() -> Value {
    json!({"tapline": "pull", "from": "2022-09-22", "to": "2022-09-22",
           "jobs": ["report", "events", "reconcile", "counts"]})
}

fn api_url(api: &ClevertapApi) -> String {
    api.env()
        .into_iter()
        .find(|(k, _)| *k == "CLEVERTAP_API_URL")
        .unwrap()
        .1
}

/// What every copy of the page holds: the grid with the day's cell, the CSP, no fetch.
fn assert_is_the_page(page: &str) {
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert!(page.contains(CSP), "{page}");
    assert!(page.contains("<table id=\"grid\">"), "{page}");
    assert!(page.contains(CHARGED_CELL), "{page}");
    for fetch in ["src=", "href=", "url(", "@import"] {
        assert!(!page.contains(fetch), "{fetch} in {page}");
    }
}

/// The page of the summary's `report` result, with its size checked against the object's.
fn assert_summary(summary: &Value, uri: &str, bytes: usize) {
    assert_eq!(
        summary["jobs"],
        json!(["events", "counts", "reconcile", "report"]),
        "{summary}"
    );
    // The page covers the week ending with the run's last day.
    assert_eq!(
        summary["results"]["report"],
        json!({"uri": uri, "bytes": bytes, "days": 1}),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_binary_writes_the_report_to_s3_under_cargo_lambda_watch() {
    use tapline_tests::servers::lambda_emulator::LambdaEmulator;
    use tapline_tests::servers::s3::{client, create_secret, moto, new_bucket};

    let api = ClevertapApi::start().await;
    api.set_events("Charged", 20220922, event_records(20220922, 12));
    let s3 = client().await;
    let bucket = new_bucket(&s3, "report-job").await;
    let uri = format!("s3://{bucket}/tapline/report.html");
    let schema = PgSchema::new("puller_report_s3");
    let secret = create_secret(
        &format!("tapline-report-passcode-{}", std::process::id()),
        PASSCODE,
    )
    .await;
    let (api_url, warehouse, endpoint) = (api_url(&api), schema.url(), moto());
    // The relay's dead-letter queue, with one delivery the worker gave up on.
    let sqs = tapline_tests::servers::sqs::client().await;
    let (_, dlq) =
        tapline_tests::servers::sqs::queue_with_dead_letters(&sqs, "report-job", 3).await;
    sqs.send_message()
        .queue_url(&dlq)
        .message_body(DEAD_LETTER_SQS)
        .send()
        .await
        .unwrap();
    let env = [
        ("TAPLINE_REPORT_RELAY_QUEUE", dlq.as_str()),
        ("CLEVERTAP_ACCOUNT_ID", ACCOUNT),
        ("CLEVERTAP_PASSCODE_SECRET_ARN", secret.as_str()),
        ("CLEVERTAP_API_URL", api_url.as_str()),
        ("CLEVERTAP_BACKOFF_MS", "1"),
        ("TAPLINE_WAREHOUSE", warehouse.as_str()),
        ("TAPLINE_TIMEZONE", "Asia/Kolkata"),
        ("TAPLINE_PULL_EVENTS", "Charged"),
        ("TAPLINE_PULL_JOBS", "events,counts,reconcile,report"),
        ("TAPLINE_REPORT_URI", uri.as_str()),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
    ];
    let lambda = LambdaEmulator::start("api-puller", &env).await;
    let (status, summary) = lambda.invoke(&payload()).await;
    assert_eq!(status, 200, "{summary}");

    let object = s3
        .get_object()
        .bucket(&bucket)
        .key("tapline/report.html")
        .send()
        .await
        .expect("the report object");
    assert_eq!(object.content_type(), Some("text/html; charset=utf-8"));
    let body = object.body.collect().await.unwrap().into_bytes();
    let page = String::from_utf8(body.to_vec()).unwrap();
    assert_is_the_page(&page);
    assert_summary(&summary, &uri, page.len());
    assert!(page.contains(DEAD_LETTER_ROW), "{page}");
    assert!(
        page.contains("1 dead letter(s) in the SQS dead-letter queue report-job-"),
        "{page}"
    );
    assert!(!page.contains(DEAD_LETTER_BODY), "{page}");
    // Listed, not taken: the letter is still there, visible at once.
    let again =
        tapline_tests::servers::sqs::receive(&sqs, &dlq, 1, std::time::Duration::from_secs(5))
            .await;
    assert_eq!(again[0].body(), Some(DEAD_LETTER_SQS));
    // Read only: the page's reconcile recorded nothing beyond the reconcile job's verdict.
    assert_eq!(
        schema.psql("SELECT status FROM _tapline_completeness"),
        "complete"
    );

    // A bucket it may not write to fails the run (the scheduler's retry and DLQ see it).
    let (status, body) = lambda
        .invoke(
            &json!({"tapline": "pull", "from": "2022-09-22", "to": "2022-09-22",
                        "jobs": ["report"]}),
        )
        .await;
    assert_eq!(status, 200, "the same page again: {body}");
    s3.delete_object()
        .bucket(&bucket)
        .key("tapline/report.html")
        .send()
        .await
        .unwrap();
    s3.delete_bucket().bucket(&bucket).send().await.unwrap();
    let (status, body) = lambda
        .invoke(
            &json!({"tapline": "pull", "from": "2022-09-22", "to": "2022-09-22",
                        "jobs": ["report"]}),
        )
        .await;
    assert_ne!(status, 200, "{body}");
    let message = body["errorMessage"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("1 of 1 pulls failed: report: the report could not be written: "),
        "{body}"
    );
    let logs = lambda.stop().await;
    assert!(logs.contains("Report written."), "{logs}");
    assert!(!logs.contains(PASSCODE), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloud_run_binary_writes_the_report_to_gcs() {
    use tapline::google_auth::GoogleAuth;
    use tapline::webhook_relay::queue::pubsub::{OutgoingMessage, PubSubPublisher};
    use tapline_tests::doubles::pubsub::PubSubDouble;
    use tapline_tests::servers::cloud_run_service::CloudRunService;
    use tapline_tests::servers::gcs::{gcs_url, new_bucket};

    let api = ClevertapApi::start().await;
    api.set_events("Charged", 20220922, event_records(20220922, 12));
    let bucket = new_bucket("report-job").await;
    let uri = format!("gs://{bucket}/tapline/report.html");
    let schema = PgSchema::new("puller_report_gcs");
    let (api_url, warehouse, gcs) = (api_url(&api), schema.url(), gcs_url());
    let emulator_host = gcs.trim_start_matches("http://").to_string();
    // The relay's dead-letter subscription, with one letter as the push worker publishes it.
    let pubsub = PubSubDouble::start("acme-analytics").await;
    let dead = pubsub.create_topic("dl");
    let subscription = pubsub.pull_subscription("dl-sub", &dead);
    let letter = OutgoingMessage {
        data: format!(r#"{{"card":"{DEAD_LETTER_BODY}"}}"#).into_bytes(),
        attributes: [
            ("tapline_delivery_id", "p1.crm".to_string()),
            ("tapline_payload_id", "p1".to_string()),
            ("tapline_route", "alerts".to_string()),
            ("tapline_destination", "crm".to_string()),
            ("tapline_received_at_ms", "1764000000000".to_string()),
            ("tapline_dead_attempt", "3".to_string()),
            ("tapline_dead_at_ms", "1764000060000".to_string()),
            ("tapline_dead_outcome", "retryable".to_string()),
            (
                "tapline_attempt_1",
                json!({"attempt": 1, "at_ms": 1_764_000_000_000_i64, "duration_ms": 4, "status": 503, "outcome": "retryable", "error": "HTTP 503: down"}).to_string(),
            ),
            (
                "tapline_attempt_2",
                json!({"attempt": 2, "at_ms": 1_764_000_030_000_i64, "duration_ms": 4, "status": 503, "outcome": "retryable", "error": "HTTP 503: down"}).to_string(),
            ),
            (
                "tapline_attempt_3",
                json!({"attempt": 3, "at_ms": 1_764_000_060_000_i64, "duration_ms": 4, "status": 503, "outcome": "retryable", "error": "HTTP 503: down"}).to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    };
    PubSubPublisher::new(
        &format!("http://{}", pubsub.host),
        GoogleAuth::anonymous(),
        dead.clone(),
    )
    .unwrap()
    .publish(&[letter])
    .await
    .unwrap();
    let env = [
        ("TAPLINE_REPORT_RELAY_QUEUE", subscription.as_str()),
        ("PUBSUB_EMULATOR_HOST", pubsub.host.as_str()),
        ("CLEVERTAP_ACCOUNT_ID", ACCOUNT),
        ("CLEVERTAP_PASSCODE", PASSCODE),
        ("CLEVERTAP_API_URL", api_url.as_str()),
        ("CLEVERTAP_BACKOFF_MS", "1"),
        ("TAPLINE_WAREHOUSE", warehouse.as_str()),
        ("TAPLINE_TIMEZONE", "Asia/Kolkata"),
        ("TAPLINE_PULL_EVENTS", "Charged"),
        ("TAPLINE_PULL_JOBS", "events,counts,reconcile,report"),
        ("TAPLINE_REPORT_URI", uri.as_str()),
        ("STORAGE_EMULATOR_HOST", emulator_host.as_str()),
    ];
    let service = CloudRunService::start("api-puller-cloud-run", &env).await;
    let response = reqwest::Client::new()
        .post(format!("{}/", service.url))
        .json(&payload())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let summary: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{summary}");

    let object_url = format!("{gcs}/storage/v1/b/{bucket}/o/tapline%2Freport.html");
    let http = reqwest::Client::new();
    let resource: Value = http
        .get(&object_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        resource["contentType"], "text/html; charset=utf-8",
        "{resource}"
    );
    let page = http
        .get(&object_url)
        .query(&[("alt", "media")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_is_the_page(&page);
    assert_summary(&summary, &uri, page.len());
    assert!(page.contains(DEAD_LETTER_ROW), "{page}");
    assert!(
        page.contains(&format!(
            "1 dead letter(s) in the Pub/Sub subscription {subscription}"
        )),
        "{page}"
    );
    assert!(!page.contains(DEAD_LETTER_BODY), "{page}");
    assert_eq!(
        pubsub.pull_state(&subscription),
        (1, 0, vec![]),
        "listed, not taken"
    );
    let (clean, logs) = service.stop().await;
    assert!(clean, "{logs}");
    assert!(logs.contains("Report written."), "{logs}");
}

fn lookup(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<&str, String> = pairs.into_iter().collect();
    move |k| map.get(k).cloned()
}

/// In process, a local path: the file is replaced whole on each run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_job_writes_a_local_file() {
    let api = ClevertapApi::start().await;
    api.set_events("Charged", 20220922, event_records(20220922, 12));
    let dir = tempfile::tempdir().unwrap();
    let warehouse: Arc<dyn Warehouse> = Arc::new(
        SqliteWarehouse::open(dir.path().join("w.sqlite"), Journal::Rollback)
            .await
            .unwrap(),
    );
    let client = ClevertapClient::new(ApiConfig::from_lookup(lookup(api.env())).unwrap()).unwrap();
    let path = dir.path().join("site/report.html");
    // A dead-letter queue that does not exist (moto's endpoint): the page says so, and is
    // written all the same.
    let gone_queue = format!(
        "{}/123456789012/tapline-gone-dlq-{}",
        tapline_tests::servers::s3::moto(),
        std::process::id()
    );
    let jobs = PullJobs::from_lookup(lookup(vec![
        ("TAPLINE_TIMEZONE", "Asia/Kolkata".into()),
        ("TAPLINE_PULL_EVENTS", "Charged".into()),
        ("TAPLINE_REPORT_URI", path.display().to_string()),
        ("TAPLINE_REPORT_RELAY_QUEUE", gone_queue.clone()),
    ]))
    .unwrap();
    let now: jiff::Timestamp = "2022-09-24T20:00:00Z".parse().unwrap();
    let summary = handle_pull_payload(&payload(), &client, warehouse.clone(), &jobs, now)
        .await
        .unwrap();
    let page = std::fs::read_to_string(&path).unwrap();
    assert_is_the_page(&page);
    assert_summary(&summary, &format!("file://{}", path.display()), page.len());
    let name = gone_queue.rsplit('/').next().unwrap();
    assert!(
        page.contains(&format!(
            "<h2>Relay dead letters</h2><p class=\"bad\">Could not be listed from the SQS \
             dead-letter queue {name}: "
        )),
        "{page}"
    );

    // A setting that is neither a queue URL nor a subscription stops the function at start.
    let err = PullJobs::from_lookup(lookup(vec![
        ("TAPLINE_TIMEZONE", "Asia/Kolkata".into()),
        ("TAPLINE_REPORT_RELAY_QUEUE", "s3://bucket/dlq".into()),
    ]))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "TAPLINE_REPORT_RELAY_QUEUE: \"s3://bucket/dlq\" is neither an SQS queue URL \
         (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME) nor a Pub/Sub subscription \
         (projects/P/subscriptions/S)"
    );
}
