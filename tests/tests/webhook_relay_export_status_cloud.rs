//! The relay's `export-status` destination in cloud mode: on CleverTap's documented `Completed`
//! status, the relay asks the export loader to sweep that request's objects and the API puller
//! to reconcile the days they cover, holding no warehouse URL and reading no bucket itself.
//! AWS: the real `export-loader` and `api-puller` Lambda binaries under `cargo lambda watch`
//! (the Invoke API), exports in moto's S3. GCP: the Cloud Run binaries run locally, exports in
//! fake-gcs-server. Both write to PostgreSQL. A sweep that fails (the loader's database cut)
//! fails the delivery retryably; the retry loads everything exactly once. A sweep the loader
//! refuses (a bucket that does not exist) is dead-lettered after one attempt.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use tapline::webhook_relay::clock::ManualClock;
use tapline::webhook_relay::queue::sqlite::SqliteDeliveryQueue;
use tapline::webhook_relay::{Relay, RelayConfig};
use tapline_tests::doubles::clevertap_api::ClevertapApi;
use tapline_tests::doubles::proxy::CuttableProxy;
use tapline_tests::doubles::relay_router::post_hook;
use tapline_tests::servers::cloud_run_service::CloudRunService;
use tapline_tests::servers::lambda_emulator::LambdaEmulator;
use tapline_tests::servers::pg::PgSchema;
use tapline_tests::{export_csv, gzip, postgres_url};

const TOKEN: &str = "exports-token-0123456789abcdef0123";
const START_MS: i64 = 1_764_000_000_000;

/// CleverTap's documented export status payload.
const COMPLETED: &str = r#"{"Export Request Id": 1690283492, "Partner": "Google Cloud Storage", "Type": "Events", "Status": "Completed", "Frequency": "One Time", "Date and Time": "25/07/2023 4:50:52 PM"}"#;

/// The request's two chunks of 2022-09-21 (4 and 3 rows, dated as `export_csv` dates its
/// rows), and another request's object.
const OBJECTS: [(&str, usize); 3] = [
    (
        "exports/1690283492-1690300000-Charged-20220921-0-0.csv.gz",
        4,
    ),
    (
        "exports/1690283492-1690300000-Charged-20220921-1-0.csv.gz",
        3,
    ),
    (
        "exports/1111111111-1690300000-Charged-20220921-0-0.csv.gz",
        5,
    ),
];

/// A relay whose `export-status` destination invokes `loader` and `puller`: a failed attempt is
/// retried a minute later, and the dedupe window is a second, so that CleverTap's repeated
/// status is delivered again a minute later.
fn relay(
    source: &str,
    loader: &str,
    puller: &str,
    extra_env: &[(&str, &str)],
    state: &std::path::Path,
) -> (Relay, Arc<ManualClock>, Arc<SqliteDeliveryQueue>) {
    let text = format!(
        r#"
[settings]
retry_schedule = ["1m", "1m"]
dedupe_window_secs = 1
delivery_timeout_secs = 120

[[routes]]
name = "exports"
auth = {{ header = "X-Tapline-Token", secret_env = "EXPORTS_TOKEN" }}
[[routes.destinations]]
type = "export-status"
name = "sweep"
source = "{source}"
loader = "{loader}"
puller = "{puller}"
"#
    );
    let mut env: HashMap<String, String> = HashMap::from([
        ("EXPORTS_TOKEN".to_string(), TOKEN.to_string()),
        ("TAPLINE_TIMEZONE".to_string(), "UTC".to_string()),
    ]);
    env.extend(
        extra_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    // No warehouse variable at all: the cloud mode never asks for one.
    let config =
        RelayConfig::parse("relay.toml", &text, |var| env.get(var).cloned()).expect("valid config");
    let clock = Arc::new(ManualClock::new(START_MS));
    let queue = Arc::new(SqliteDeliveryQueue::open(state).unwrap());
    let relay = Relay::new(&config, queue.clone(), clock.clone()).unwrap();
    (relay, clock, queue)
}

/// Posts `COMPLETED` (accepted: 200).
async fn post(relay: &Relay) {
    let (status, answer) = post_hook(
        &relay.router,
        "exports",
        Some(("X-Tapline-Token", TOKEN)),
        COMPLETED,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// Attempts what is due once: (delivered, retried, dead).
async fn attempt_once(relay: &Relay) -> (u64, u64, u64) {
    let stats = relay.worker.run_once().await.unwrap();
    (stats.delivered, stats.retried, stats.dead)
}

/// Runs the worker until nothing is pending (the manual clock jumps to each retry): (delivered,
/// retried, dead).
async fn run(relay: &Relay) -> (u64, u64, u64) {
    let stats = relay.worker.run_until_idle().await.unwrap();
    (stats.delivered, stats.retried, stats.dead)
}

/// The attempts of every dead letter, for a failure's message.
async fn dead_letters(queue: &SqliteDeliveryQueue) -> String {
    use tapline::webhook_relay::queue::{DeadLetterFilter, DeliveryQueue};
    let dead = queue
        .dead_letters(&DeadLetterFilter::default())
        .await
        .unwrap();
    let errors: Vec<String> = dead
        .iter()
        .flat_map(|d| d.attempts.iter())
        .map(|a| format!("{:?} {:?}", a.status, a.error))
        .collect();
    errors.join("\n")
}

/// What the warehouse holds: (rows of `charged`, loaded objects of the request, of the other
/// request, the completeness row of 2022-09-21).
fn holdings(schema: &PgSchema) -> (String, String, String, String) {
    (
        schema.psql("SELECT count(*) FROM charged"),
        schema.psql(
            "SELECT count(*) FROM _tapline_loads WHERE status = 'loaded' AND uri LIKE '%/1690283492-%'",
        ),
        schema.psql("SELECT count(*) FROM _tapline_loads WHERE uri LIKE '%/1111111111-%'"),
        schema.psql(
            "SELECT event_name || ' ' || day || ' ' || status || ' ' || export_chunks || ' ' \
             || export_rows FROM _tapline_completeness",
        ),
    )
}

/// After one delivered `Completed`: the request's 7 rows once, the other request untouched, and
/// its day reconciled (both chunks, no CleverTap count to check them by).
fn assert_loaded_once(schema: &PgSchema) {
    assert_eq!(
        holdings(schema),
        (
            "7".to_string(),
            "2".to_string(),
            "0".to_string(),
            "Charged 2022-09-21 no count 2 7".to_string()
        )
    );
}

/// The API puller's environment: the CleverTap double (the reconcile job never calls it) and
/// the warehouse.
fn puller_env(api: &ClevertapApi, warehouse: &str) -> Vec<(&'static str, String)> {
    let mut env = api.env();
    env.push(("TAPLINE_WAREHOUSE", warehouse.to_string()));
    env.push(("TAPLINE_TIMEZONE", "UTC".to_string()));
    env
}

fn pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_aws_the_relay_invokes_the_loader_and_puller_lambdas() {
    use tapline_tests::servers::s3::{client, moto, new_bucket, put};
    let s3 = client().await;
    let bucket = new_bucket(&s3, "status-cloud").await;
    for (key, rows) in OBJECTS {
        put(
            &s3,
            &bucket,
            key,
            gzip(export_csv("Charged", rows).as_bytes()),
        )
        .await;
    }
    let schema = PgSchema::new("relay_status_aws");
    // The loader reaches PostgreSQL through a proxy the test can cut.
    let proxy = CuttableProxy::start(&CuttableProxy::target_of(&postgres_url())).await;
    let loader_url = proxy.rewrite_url(&schema.url());
    let endpoint = moto();
    let mut lambdas = LambdaEmulator::start_named(
        "export-loader",
        "export-loader",
        &[
            ("TAPLINE_WAREHOUSE", loader_url.as_str()),
            ("TAPLINE_TIMEZONE", "UTC"),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ],
    )
    .await;
    let api = ClevertapApi::start().await;
    let puller = puller_env(&api, &schema.url());
    lambdas.attach("api-puller", "api-puller", &pairs(&puller));
    let state = tempfile::tempdir().unwrap();
    let lambda_endpoint = lambdas.endpoint();
    let (relay, clock, queue) = relay(
        &format!("s3://{bucket}/exports/"),
        "lambda:export-loader",
        "lambda:api-puller",
        &[("AWS_ENDPOINT_URL_LAMBDA", &lambda_endpoint)],
        state.path(),
    );

    // Its cold start (opening the warehouse) is over once it has answered an invocation.
    let warm_up = serde_json::json!({"tapline": "sweep", "uri": format!("s3://{bucket}/none/"), "window_days": 0});
    let (status, answer) = lambdas.invoke_function("export-loader", &warm_up).await;
    assert_eq!(
        (status, answer["loaded"].as_u64()),
        (200, Some(0)),
        "{answer}"
    );

    // The loader's database is down: its sweep fails, and so does the delivery, retryably.
    proxy.cut();
    post(&relay).await;
    assert_eq!(attempt_once(&relay).await, (0, 1, 0));
    proxy.restore();
    assert_eq!(
        schema.psql("SELECT to_regclass('charged') IS NULL"),
        "t",
        "nothing was loaded"
    );

    // The retry, a minute later: the sweep loads the request's chunks, the puller reconciles
    // their day.
    assert_eq!(
        run(&relay).await,
        (1, 0, 0),
        "{}",
        dead_letters(&queue).await
    );
    assert_loaded_once(&schema);

    // CleverTap says it again: delivered again, and nothing new is loaded.
    clock.advance(Duration::from_secs(60));
    post(&relay).await;
    assert_eq!(run(&relay).await, (1, 0, 0));
    assert_loaded_once(&schema);
    lambdas.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_google_cloud_the_relay_posts_to_the_loader_and_puller_services() {
    use tapline_tests::servers::gcs::{gcs_url, new_bucket, put};
    let bucket = new_bucket("status-cloud").await;
    for (key, rows) in OBJECTS {
        put(&bucket, key, gzip(export_csv("Charged", rows).as_bytes())).await;
    }
    let schema = PgSchema::new("relay_status_gcp");
    let proxy = CuttableProxy::start(&CuttableProxy::target_of(&postgres_url())).await;
    let loader_url = proxy.rewrite_url(&schema.url());
    let storage = gcs_url();
    let loader = CloudRunService::start(
        "export-loader-cloud-run",
        &[
            ("TAPLINE_WAREHOUSE", loader_url.as_str()),
            ("TAPLINE_TIMEZONE", "UTC"),
            ("STORAGE_EMULATOR_HOST", storage.as_str()),
        ],
    )
    .await;
    let api = ClevertapApi::start().await;
    let puller_env = puller_env(&api, &schema.url());
    let puller = CloudRunService::start("api-puller-cloud-run", &pairs(&puller_env)).await;
    let state = tempfile::tempdir().unwrap();
    // Loopback services are sent no ID token (on Cloud Run the metadata server gives one).
    let (relay, clock, queue) = relay(
        &format!("gs://{bucket}/exports/"),
        &loader.url,
        &puller.url,
        &[],
        state.path(),
    );

    proxy.cut();
    post(&relay).await;
    assert_eq!(attempt_once(&relay).await, (0, 1, 0));
    proxy.restore();
    assert_eq!(schema.psql("SELECT to_regclass('charged') IS NULL"), "t");
    assert_eq!(
        run(&relay).await,
        (1, 0, 0),
        "{}",
        dead_letters(&queue).await
    );
    assert_loaded_once(&schema);

    clock.advance(Duration::from_secs(60));
    post(&relay).await;
    assert_eq!(run(&relay).await, (1, 0, 0));
    assert_loaded_once(&schema);
}

/// The one dead letter `queue` holds: its attempts as (outcome, error).
async fn the_dead_letter(queue: &SqliteDeliveryQueue) -> Vec<(String, String)> {
    use tapline::webhook_relay::queue::{DeadLetterFilter, DeliveryQueue};
    let dead = queue
        .dead_letters(&DeadLetterFilter::default())
        .await
        .unwrap();
    assert_eq!(dead.len(), 1, "one dead letter");
    dead[0]
        .attempts
        .iter()
        .map(|a| (a.outcome.clone(), a.error.clone().unwrap_or_default()))
        .collect()
}

/// A destination whose `source` names a bucket that does not exist: the loader refuses the
/// sweep with a kind no retry fixes (`SweepLocationRefused`), so the relay dead-letters the
/// status after its first attempt instead of retrying it to the last, and asks the puller
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_aws_a_sweep_the_loader_refuses_is_dead_lettered_after_one_attempt() {
    use tapline_tests::servers::s3::moto;
    let schema = PgSchema::new("relay_status_refused_aws");
    let (url, endpoint) = (schema.url(), moto());
    let lambdas = LambdaEmulator::start_named(
        "export-loader",
        "export-loader",
        &[
            ("TAPLINE_WAREHOUSE", url.as_str()),
            ("TAPLINE_TIMEZONE", "UTC"),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ],
    )
    .await;
    let state = tempfile::tempdir().unwrap();
    let lambda_endpoint = lambdas.endpoint();
    // No puller is attached: invoking it would fail retryably, and the test would see it.
    let (relay, _clock, queue) = relay(
        "s3://tapline-no-such-bucket/exports/",
        "lambda:export-loader",
        "lambda:api-puller",
        &[("AWS_ENDPOINT_URL_LAMBDA", &lambda_endpoint)],
        state.path(),
    );

    post(&relay).await;
    assert_eq!(attempt_once(&relay).await, (0, 0, 1));
    let attempts = the_dead_letter(&queue).await;
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].0, "permanent", "{attempts:?}");
    assert!(
        attempts[0].1.starts_with(
            "export-status refused it: Lambda export-loader failed (SweepLocationRefused): "
        ),
        "{attempts:?}"
    );
    assert!(attempts[0].1.contains("NoSuchBucket"), "{attempts:?}");
    assert_eq!(run(&relay).await, (0, 0, 0), "nothing left to retry");
    lambdas.stop().await;
}

/// The same on Google Cloud: the loader's `POST /sweep` answers 400 with `"retry": false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_google_cloud_a_sweep_the_loader_refuses_is_dead_lettered_after_one_attempt() {
    use tapline_tests::servers::gcs::gcs_url;
    let schema = PgSchema::new("relay_status_refused_gcp");
    let (url, storage) = (schema.url(), gcs_url());
    let loader = CloudRunService::start(
        "export-loader-cloud-run",
        &[
            ("TAPLINE_WAREHOUSE", url.as_str()),
            ("TAPLINE_TIMEZONE", "UTC"),
            ("STORAGE_EMULATOR_HOST", storage.as_str()),
        ],
    )
    .await;
    let state = tempfile::tempdir().unwrap();
    // Nothing listens at the puller's address: asking it would fail retryably.
    let (relay, _clock, queue) = relay(
        "gs://tapline-no-such-bucket/exports/",
        &loader.url,
        "http://127.0.0.1:9",
        &[],
        state.path(),
    );

    post(&relay).await;
    assert_eq!(attempt_once(&relay).await, (0, 0, 1));
    let attempts = the_dead_letter(&queue).await;
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].0, "permanent", "{attempts:?}");
    let error = &attempts[0].1;
    assert!(
        error.starts_with(&format!(
            "export-status refused it: Cloud Run {} answered 400 (SweepLocationRefused), not to \
             be retried: ",
            loader.url
        )),
        "{attempts:?}"
    );
    assert_eq!(run(&relay).await, (0, 0, 0), "nothing left to retry");
}

/// A cloud destination's settings are checked at start, each mistake named.
#[test]
fn cloud_settings_are_checked_at_start() {
    let parse = |fields: &str, extra: &[(&str, &str)]| {
        let text = format!(
            r#"
[[routes]]
name = "exports"
auth = {{ header = "X-Tapline-Token", secret_env = "EXPORTS_TOKEN" }}
[[routes.destinations]]
type = "export-status"
source = "s3://b/exports/"
{fields}
"#
        );
        let mut env = HashMap::from([("EXPORTS_TOKEN".to_string(), TOKEN.to_string())]);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        RelayConfig::parse("relay.toml", &text, |var| env.get(var).cloned())
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let lambdas =
        "loader = \"lambda:tapline-export-loader\"\npuller = \"lambda:tapline-api-puller\"";
    assert_eq!(parse(lambdas, &[]), Ok(()), "no warehouse variable needed");
    let services = "loader = \"https://loader-x.a.run.app\"\npuller = \"https://puller-x.a.run.app\"\nreconcile_days = 3";
    assert_eq!(parse(services, &[]), Ok(()));
    let refused = [
        (
            "loader = \"lambda:tapline-export-loader\"",
            "set both `loader` and `puller` (the cloud mode), or neither",
        ),
        (
            "loader = \"lambda:l\"\npuller = \"https://puller-x.a.run.app\"",
            "`loader` and `puller` are both Lambda functions (lambda:NAME) or both Cloud Run \
             services (https://…)",
        ),
        (
            "loader = \"lambda:a/b\"\npuller = \"lambda:p\"",
            "export-status `loader`: a Lambda function name is 1 to 64 letters, digits, '-' and '_'",
        ),
        (
            "loader = \"http://loader.example.com\"\npuller = \"https://p.a.run.app\"",
            "export-status `loader`: expected lambda:FUNCTION_NAME or a Cloud Run service URL \
             (https://HOST), without path, query or credentials (http:// only on loopback)",
        ),
        (
            "loader = \"lambda:l\"\npuller = \"lambda:p\"\nurl_env = \"WAREHOUSE_URL\"",
            "with `loader` and `puller` the relay needs no warehouse: remove `url_env`",
        ),
        (
            "loader = \"lambda:l\"\npuller = \"lambda:p\"\nreconcile_days = 0",
            "export-status `reconcile_days` is from 1 to 366",
        ),
        (
            "url_env = \"WAREHOUSE_URL\"\nreconcile_days = 3",
            "`reconcile_days` is for the cloud mode",
        ),
    ];
    for (fields, expected) in refused {
        let err = parse(fields, &[("WAREHOUSE_URL", "sqlite://w.sqlite")]).unwrap_err();
        assert!(err.contains(expected), "{fields}: {err}");
    }
    // What Terraform sets: the targets in variables the destination names.
    let from_env =
        "loader_env = \"TAPLINE_EXPORT_LOADER_TARGET\"\npuller_env = \"TAPLINE_API_PULLER_TARGET\"";
    let targets = [
        (
            "TAPLINE_EXPORT_LOADER_TARGET",
            "lambda:tapline-export-loader",
        ),
        ("TAPLINE_API_PULLER_TARGET", "lambda:tapline-api-puller"),
    ];
    assert_eq!(parse(from_env, &targets), Ok(()));
    let err = parse(from_env, &targets[1..]).unwrap_err();
    assert!(
        err.contains("export-status `loader_env`: TAPLINE_EXPORT_LOADER_TARGET is not set"),
        "{err}"
    );
    let both = format!("{from_env}\nloader = \"lambda:l\"");
    let err = parse(&both, &targets).unwrap_err();
    assert!(
        err.contains("export-status: set `loader` or `loader_env`, not both"),
        "{err}"
    );
    let err = parse(lambdas, &[("AWS_ENDPOINT_URL_LAMBDA", "localhost:9000")]).unwrap_err();
    assert!(
        err.contains("AWS_ENDPOINT_URL_LAMBDA is not an http(s):// URL"),
        "{err}"
    );
}
