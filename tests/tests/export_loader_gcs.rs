//! Google Cloud Storage: `tapline load|sweep gs://…` through Google's official crate, and the
//! Cloud Run service (Eventarc CloudEvents, sweeps) in-process and as its binary. Against a real
//! GCS JSON API (fake-gcs-server, started by `tests/scripts/with-fake-gcs.sh`) and a real
//! PostgreSQL (`tests/scripts/with-postgres.sh`); `make test` starts both.

use std::sync::Arc;

use serde_json::{Value, json};
use tapline::config::LoadConfig;
use tapline::export_loader::cloud_run::{ServiceState, router};
use tapline::google_auth::GoogleAuth;
use tapline::storage::gcs::GcsSource;
use tapline_tests::doubles::proxy::CuttableProxy;
use tapline_tests::servers::gcs::{delete, gcs_url, new_bucket, put};
use tapline_tests::servers::pg::PgSchema;
use tapline_tests::{bin, export_csv, gzip, postgres_url, sqlite_rows, sqlite_value};

const CHARGED: &str = "events/1663664837-1663785000-Charged-20220921-0-0.csv.gz";
const LAUNCHED: &str = "events/1663664837-1663785000-App Launched-20220921-0-0.csv.gz";

fn export(event: &str, rows: usize) -> Vec<u8> {
    gzip(export_csv(event, rows).as_bytes())
}

fn sqlite_url(dir: &tempfile::TempDir) -> (String, std::path::PathBuf) {
    let path = dir.path().join("w.sqlite");
    (format!("sqlite://{}", path.display()), path)
}

/// `tapline` with the emulator's address in `STORAGE_EMULATOR_HOST`, as a user would run it.
fn tapline_gcs(args: &[&str]) -> tapline_tests::Run {
    tapline_tests::tapline_command()
        .args(args)
        .env("STORAGE_EMULATOR_HOST", gcs_url())
        .output()
        .expect("run tapline")
        .into()
}

#[tokio::test]
async fn load_and_sweep_a_prefix_with_generations_as_versions() {
    let bucket = new_bucket("sweep").await;
    let g_charged = put(&bucket, CHARGED, export("Charged", 3)).await;
    put(&bucket, LAUNCHED, export("App Launched", 2)).await;
    put(&bucket, "events/_SUCCESS", Vec::new()).await;
    put(
        &bucket,
        "elsewhere/1663664837-1663785000-Charged-20220921-1-0.csv.gz",
        export("Charged", 7),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (url, db) = sqlite_url(&dir);
    let prefix = format!("gs://{bucket}/events/");

    let run = tapline_gcs(&["load", &prefix, "--warehouse", &url]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        sqlite_value(&db, "SELECT count(*) FROM charged").as_deref(),
        Some("3")
    );
    assert_eq!(
        sqlite_value(&db, "SELECT count(*) FROM app_launched").as_deref(),
        Some("2")
    );
    assert_eq!(
        sqlite_rows(
            &db,
            "SELECT uri, version, status FROM _tapline_loads WHERE uri LIKE '%Charged%'"
        ),
        vec![vec![
            Some(format!("gs://{bucket}/{CHARGED}")),
            Some(g_charged),
            Some("loaded".to_string())
        ]]
    );
    assert_eq!(
        sqlite_value(&db, "SELECT DISTINCT _source_uri FROM charged"),
        Some(format!("gs://{bucket}/{CHARGED}"))
    );

    let run = tapline_gcs(&["sweep", &prefix, "--warehouse", &url]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("Sweep: 0 new objects loaded; 2 already in the ledger, skipped."),
        "{}",
        run.stdout
    );

    // An object whose event was lost: the next sweep finds it, and only it.
    put(
        &bucket,
        "events/1663664837-1663785000-Charged-20220921-2-0.csv.gz",
        export("Charged", 4),
    )
    .await;
    let run = tapline_gcs(&["sweep", &prefix, "--warehouse", &url]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("Sweep: 1 new objects loaded; 2 already in the ledger, skipped."),
        "{}",
        run.stdout
    );
    assert_eq!(
        sqlite_value(&db, "SELECT count(*) FROM charged").as_deref(),
        Some("7")
    );
}

#[tokio::test]
async fn a_new_generation_replaces_the_rows_of_the_old_one() {
    let bucket = new_bucket("generation").await;
    let first = put(&bucket, CHARGED, export("Charged", 3)).await;
    let dir = tempfile::tempdir().unwrap();
    let (url, db) = sqlite_url(&dir);
    let uri = format!("gs://{bucket}/{CHARGED}");
    assert_eq!(tapline_gcs(&["load", &uri, "--warehouse", &url]).code, 0);

    let second = put(&bucket, CHARGED, export("Charged", 5)).await;
    assert_ne!(first, second, "a rewrite makes a new generation");
    let run = tapline_gcs(&["load", &uri, "--warehouse", &url]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        sqlite_value(&db, "SELECT count(*) FROM charged").as_deref(),
        Some("5")
    );
    assert_eq!(
        sqlite_rows(
            &db,
            "SELECT version, status FROM _tapline_loads ORDER BY load_id"
        ),
        vec![
            vec![Some(first), Some("replaced".to_string())],
            vec![Some(second), Some("loaded".to_string())],
        ]
    );
}

#[test]
fn a_missing_bucket_stops_the_run_before_anything_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let (url, db) = sqlite_url(&dir);
    let run = tapline_gcs(&[
        "load",
        "gs://tapline-no-such-bucket/events/",
        "--warehouse",
        &url,
    ]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("gs://tapline-no-such-bucket/events/"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("HTTP 404"), "{}", run.stderr);
    assert!(!db.exists(), "no warehouse was created");
}

/// The Cloud Run service in-process, reading the emulator, writing PostgreSQL through a proxy
/// the test can cut.
struct Service {
    base: String,
    schema: PgSchema,
    proxy: CuttableProxy,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Service {
    async fn start(test: &str) -> Self {
        let schema = PgSchema::new(&format!("gcs_{test}"));
        let proxy = CuttableProxy::start(&CuttableProxy::target_of(&postgres_url())).await;
        let warehouse = tapline::warehouse::open::open(&proxy.rewrite_url(&schema.url()))
            .await
            .expect("warehouse");
        let source = GcsSource::new(&gcs_url(), GoogleAuth::anonymous())
            .await
            .unwrap();
        let state = ServiceState {
            source: Arc::new(source),
            warehouse: Arc::from(warehouse),
            config: Arc::new(LoadConfig::new("UTC", 0.01).unwrap()),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(tapline::export_loader::cloud_run::serve(
            listener,
            router(state),
        ));
        Self {
            base,
            schema,
            proxy,
            server,
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Google's documented `object.finalized` CloudEvent (structured), for `bucket/key` at
/// `generation`.
fn finalized_event(bucket: &str, key: &str, generation: &str) -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/events/gcs_finalized_structured.json"
    ))
    .unwrap();
    let mut event: Value = serde_json::from_str(&text).unwrap();
    event["source"] = json!(format!(
        "//storage.googleapis.com/projects/_/buckets/{bucket}"
    ));
    event["subject"] = json!(format!("objects/{key}"));
    event["data"]["bucket"] = json!(bucket);
    event["data"]["name"] = json!(key);
    event["data"]["generation"] = json!(generation);
    event
}

/// Posts `event` in binary content mode, as Eventarc does: attributes as `ce-*` headers, the
/// StorageObjectData as the body.
async fn post_binary(base: &str, event: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/"))
        .header("ce-specversion", "1.0")
        .header("ce-type", event["type"].as_str().unwrap())
        .header("ce-source", event["source"].as_str().unwrap())
        .header("ce-subject", event["subject"].as_str().unwrap())
        .header("ce-id", event["id"].as_str().unwrap())
        .header("ce-time", event["time"].as_str().unwrap())
        .header("content-type", "application/json")
        .body(event["data"].to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn ten_deliveries_of_one_event_load_the_file_once() {
    let service = Service::start("dup").await;
    let bucket = new_bucket("dup").await;
    let generation = put(&bucket, CHARGED, export("Charged", 6)).await;
    let event = finalized_event(&bucket, CHARGED, &generation);
    let mut outcomes = Vec::new();
    for _ in 0..10 {
        let (status, body) = post_binary(&service.base, &event).await;
        assert_eq!(status, 200, "{body}");
        outcomes.push(body["objects"][0]["outcome"].as_str().unwrap().to_string());
    }
    assert_eq!(outcomes[0], "loaded");
    assert!(
        outcomes[1..].iter().all(|o| o == "already loaded"),
        "{outcomes:?}"
    );
    assert_eq!(service.schema.psql("SELECT count(*) FROM charged"), "6");
    assert_eq!(
        service
            .schema
            .psql("SELECT version || ' ' || status FROM _tapline_loads"),
        format!("{generation} loaded")
    );
}

#[tokio::test]
async fn structured_mode_events_load_too() {
    let service = Service::start("structured").await;
    let bucket = new_bucket("structured").await;
    let generation = put(&bucket, LAUNCHED, export("App Launched", 4)).await;
    let response = reqwest::Client::new()
        .post(format!("{}/", service.base))
        .header(
            "content-type",
            "application/cloudevents+json; charset=utf-8",
        )
        .body(finalized_event(&bucket, LAUNCHED, &generation).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["objects"][0]["outcome"], "loaded", "{body}");
    assert_eq!(
        service.schema.psql("SELECT count(*) FROM app_launched"),
        "4"
    );
}

#[tokio::test]
async fn a_missing_object_is_reported_without_asking_for_redelivery() {
    let service = Service::start("missing").await;
    let bucket = new_bucket("missing").await;
    let generation = put(&bucket, CHARGED, export("Charged", 2)).await;
    delete(&bucket, CHARGED).await;
    let (status, body) = post_binary(
        &service.base,
        &finalized_event(&bucket, CHARGED, &generation),
    )
    .await;
    assert_eq!(
        status, 200,
        "redelivery cannot bring the object back: {body}"
    );
    let object = &body["objects"][0];
    assert_eq!(object["outcome"], "failed", "{body}");
    assert_eq!(object["retryable"], false, "{body}");
    assert!(
        object["error"].as_str().unwrap().contains(CHARGED),
        "{body}"
    );
    assert_eq!(
        service.schema.psql("SELECT status FROM _tapline_loads"),
        "failed",
        "the ledger keeps the failure for `tapline status`"
    );
}

#[tokio::test]
async fn a_warehouse_outage_asks_for_redelivery_and_the_retry_loads_once() {
    let service = Service::start("outage").await;
    let bucket = new_bucket("outage").await;
    let generation = put(&bucket, CHARGED, export("Charged", 5)).await;
    let event = finalized_event(&bucket, CHARGED, &generation);

    service.proxy.cut();
    let (status, body) = post_binary(&service.base, &event).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["objects"][0]["retryable"], true, "{body}");

    service.proxy.restore();
    let (status, body) = post_binary(&service.base, &event).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["objects"][0]["outcome"], "loaded", "{body}");
    let (status, body) = post_binary(&service.base, &event).await;
    assert_eq!(
        (status, body["objects"][0]["outcome"].as_str()),
        (200, Some("already loaded"))
    );
    assert_eq!(service.schema.psql("SELECT count(*) FROM charged"), "5");
}

#[tokio::test]
async fn bad_requests_and_other_event_types() {
    let service = Service::start("bad").await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/", service.base))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("ce-type"),
        "{body}"
    );

    let mut deleted = finalized_event("tapline-any", CHARGED, "1");
    deleted["type"] = json!("google.cloud.storage.object.v1.deleted");
    let (status, body) = post_binary(&service.base, &deleted).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["objects"][0]["ignored"]
            .as_str()
            .unwrap()
            .contains("deleted"),
        "{body}"
    );

    let health = client
        .get(format!("{}/healthz", service.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn scheduled_sweeps_load_what_events_missed() {
    let service = Service::start("sched").await;
    let bucket = new_bucket("sched").await;
    put(&bucket, CHARGED, export("Charged", 3)).await;
    put(&bucket, LAUNCHED, export("App Launched", 1)).await;
    let client = reqwest::Client::new();
    let sweep = |body: Value| {
        let request = client.post(format!("{}/sweep", service.base)).json(&body);
        async move {
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let (status, body) =
        sweep(json!({ "uri": format!("gs://{bucket}/events/"), "window_days": 0 })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["loaded"].as_u64(), body["already_loaded"].as_u64()),
        (Some(2), Some(0)),
        "{body}"
    );
    let (status, body) =
        sweep(json!({ "uri": format!("gs://{bucket}/events/"), "window_days": 0 })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["loaded"].as_u64(), body["already_loaded"].as_u64()),
        (Some(0), Some(2)),
        "{body}"
    );
    assert_eq!(service.schema.psql("SELECT count(*) FROM charged"), "3");

    // What the loader refuses: 400, named as on Lambda, not to be retried.
    let (status, body) = sweep(json!({ "prefix": "x" })).await;
    assert_eq!(
        (status, &body["errorType"], &body["retry"]),
        (400, &json!("InvalidLoadPayload"), &json!(false)),
        "{body}"
    );
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("sweep payload: missing field `uri`"),
        "{body}"
    );
    for location in [
        "gs://tapline-no-such-bucket/",
        "s3://tapline-elsewhere/events/",
    ] {
        let (status, body) = sweep(json!({ "uri": location })).await;
        assert_eq!(
            (status, &body["errorType"], &body["retry"]),
            (400, &json!("SweepLocationRefused"), &json!(false)),
            "{body}"
        );
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .starts_with(&format!("sweep of {location} could not list it")),
            "{body}"
        );
    }
    assert_eq!(
        service.schema.psql("SELECT count(*) FROM _tapline_loads"),
        "2",
        "nothing more was tried"
    );

    // The warehouse out of reach: 503, a retry may help.
    put(
        &bucket,
        "events/1663664837-1663785000-Charged-20220921-1-0.csv.gz",
        export("Charged", 2),
    )
    .await;
    service.proxy.cut();
    let (status, body) =
        sweep(json!({ "uri": format!("gs://{bucket}/events/"), "window_days": 0 })).await;
    service.proxy.restore();
    assert_eq!(
        (status, &body["errorType"], &body["retry"]),
        (503, &json!("LoadFailedRetryable"), &json!(true)),
        "{body}"
    );
    let (status, body) =
        sweep(json!({ "uri": format!("gs://{bucket}/events/"), "window_days": 0 })).await;
    assert_eq!((status, body["loaded"].as_u64()), (200, Some(1)), "{body}");
    assert_eq!(service.schema.psql("SELECT count(*) FROM charged"), "5");
}

/// The Cloud Run binary as deployed: `PORT`, env configuration, SIGTERM.
#[tokio::test]
async fn the_cloud_run_binary_serves_events_and_stops_on_sigterm() {
    let schema = PgSchema::new("gcs_binary");
    let bucket = new_bucket("binary").await;
    let generation = put(&bucket, CHARGED, export("Charged", 2)).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::from(tapline_tests::command_without_user_env(bin(
        "export-loader-cloud-run",
    )))
    .env("PORT", port.to_string())
    .env("TAPLINE_LISTEN_HOST", "127.0.0.1")
    .env("TAPLINE_WAREHOUSE", schema.url())
    // As infra/gcp deploys it: Cloud Run injects the password from Secret Manager.
    .env("TAPLINE_WAREHOUSE_PASSWORD", "gcp-s3cr3t-pw")
    .env("STORAGE_EMULATOR_HOST", gcs_url())
    .stdout(std::process::Stdio::piped())
    .spawn()
    .expect("start export-loader-cloud-run");
    let base = format!("http://127.0.0.1:{port}");
    // Ready when /healthz answers (bounded: a broken start fails the test, not hangs it).
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..300 {
        if client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the service exited at start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready, "the service did not answer /healthz");

    let (status, body) = post_binary(&base, &finalized_event(&bucket, CHARGED, &generation)).await;
    assert_eq!(
        (status, body["objects"][0]["outcome"].as_str()),
        (200, Some("loaded")),
        "{body}"
    );
    assert_eq!(schema.psql("SELECT count(*) FROM charged"), "2");

    let pid = child.id().unwrap();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "graceful shutdown exits 0: {status}");
    let mut logs = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stdout.take().unwrap(), &mut logs)
        .await
        .unwrap();
    assert!(logs.contains("Export loader listening."), "{logs}");
    assert!(
        !logs.contains("gcp-s3cr3t-pw"),
        "the password never reaches a log: {logs}"
    );
}

/// The GCP deployment's default path: Eventarc → Cloud Run loader → BigQuery (the REST double).
/// A BigQuery outage answers 503 (Eventarc redelivers); the redelivery loads once; duplicates
/// after that are "already loaded".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventarc_to_bigquery_loads_once_through_an_outage() {
    use tapline::warehouse::bigquery::BigQueryWarehouse;
    use tapline_tests::doubles::bigquery::BigQueryDouble;

    let double = BigQueryDouble::start("acme-analytics", &["clevertap"]).await;
    let warehouse = BigQueryWarehouse::open_at(
        "bigquery://acme-analytics/clevertap",
        Some(&double.endpoint),
        GoogleAuth::anonymous(),
    )
    .await
    .unwrap();
    let state = ServiceState {
        source: Arc::new(
            GcsSource::new(&gcs_url(), GoogleAuth::anonymous())
                .await
                .unwrap(),
        ),
        warehouse: Arc::new(warehouse),
        config: Arc::new(LoadConfig::new("UTC", 0.01).unwrap()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(tapline::export_loader::cloud_run::serve(
        listener,
        router(state),
    ));

    let bucket = new_bucket("bq").await;
    let generation = put(&bucket, CHARGED, export("Charged", 5)).await;
    let event = finalized_event(&bucket, CHARGED, &generation);
    // Every try of the ledger read fails: the load cannot start, Eventarc must retry.
    for _ in 0..5 {
        double.fail_next("jobs.query", 503, "backendError");
    }
    let (status, body) = post_binary(&base, &event).await;
    assert_eq!(status, 503, "{body}");
    assert!(!double.tables("clevertap").contains(&"charged".to_string()));
    for _ in 0..3 {
        let (status, body) = post_binary(&base, &event).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        double.rows(
            "clevertap",
            "SELECT count(*), min(_source_uri) FROM charged"
        ),
        vec![vec![
            Some("5".to_string()),
            Some(format!("gs://{bucket}/{CHARGED}"))
        ]]
    );
    assert_eq!(
        double.rows(
            "clevertap",
            "SELECT version, status FROM _tapline_loads WHERE status = 'loaded'"
        ),
        vec![vec![Some(generation), Some("loaded".to_string())]]
    );
    server.abort();
}
