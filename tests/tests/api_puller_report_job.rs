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
    let env = [
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
    use tapline_tests::servers::cloud_run_service::CloudRunService;
    use tapline_tests::servers::gcs::{gcs_url, new_bucket};

    let api = ClevertapApi::start().await;
    api.set_events("Charged", 20220922, event_records(20220922, 12));
    let bucket = new_bucket("report-job").await;
    let uri = format!("gs://{bucket}/tapline/report.html");
    let schema = PgSchema::new("puller_report_gcs");
    let (api_url, warehouse, gcs) = (api_url(&api), schema.url(), gcs_url());
    let emulator_host = gcs.trim_start_matches("http://").to_string();
    let env = [
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
    let jobs = PullJobs::from_lookup(lookup(vec![
        ("TAPLINE_TIMEZONE", "Asia/Kolkata".into()),
        ("TAPLINE_PULL_EVENTS", "Charged".into()),
        ("TAPLINE_REPORT_URI", path.display().to_string()),
    ]))
    .unwrap();
    let now: jiff::Timestamp = "2022-09-24T20:00:00Z".parse().unwrap();
    let summary = handle_pull_payload(&payload(), &client, warehouse.clone(), &jobs, now)
        .await
        .unwrap();
    let page = std::fs::read_to_string(&path).unwrap();
    assert_is_the_page(&page);
    assert_summary(&summary, &format!("file://{}", path.display()), page.len());
}
