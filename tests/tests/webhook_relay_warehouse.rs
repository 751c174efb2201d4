//! The relay's warehouse destination: payloads appended to `webhook_events` exactly once, on
//! SQLite through the local relay (what `tapline relay serve` runs), on PostgreSQL through
//! the AWS path (SQS on moto, the worker's handler) and on BigQuery (our double and
//! bqemulator), each with a redelivery that must not add a row.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use tapline::webhook_relay::clock::{ManualClock, SystemClock};
use tapline::webhook_relay::destinations::DeliveryAttempt;
use tapline::webhook_relay::queue::DeliveryQueue;
use tapline::webhook_relay::queue::sqlite::SqliteDeliveryQueue;
use tapline::webhook_relay::{Relay, RelayConfig};
use tapline_tests::doubles::relay_router::post_hook;

// At least 32 bytes: what a route secret must have.
const TOKEN: &str = "alerts-token-0123456789abcdef0123";
const START_MS: i64 = 1_764_000_000_000;

/// CleverTap's documented webhook sample (a triggered webhook: one profile).
const CLEVERTAP_SAMPLE: &str = r#"{"targetId":1659684581,"key_values":{"SomeKey1":"SomeValue1"},
 "profiles":[{"key_values":{},"email":"nick@example.com","identity":"u-42","all_identities":["u-42"],
   "objectId":"__Webhook227","event_name":"Charged","name":"Nick",
   "event_properties":{"Product Id":1,"CT Source":"Mobile"},"session_props":{}}]}"#;

const CONFIG: &str = r#"
[settings]
max_attempts = 3
backoff_base_ms = 10

[[routes]]
name = "alerts"
auth = { header = "X-Tapline-Token", secret_env = "ALERTS_TOKEN" }
[[routes.destinations]]
type = "warehouse"
name = "wh"
url_env = "WAREHOUSE_URL"
"#;

fn config(warehouse_url: &str) -> RelayConfig {
    let env = HashMap::from([
        ("ALERTS_TOKEN", TOKEN.to_string()),
        ("WAREHOUSE_URL", warehouse_url.to_string()),
    ]);
    RelayConfig::parse("test", CONFIG, |var| env.get(var).cloned()).expect("valid config")
}

async fn post(router: &axum::Router, body: &str) -> (StatusCode, Value) {
    post_hook(router, "alerts", Some(("X-Tapline-Token", TOKEN)), body).await
}

const COLUMNS: &str = "delivery_id, payload_id, route, received_at, received_at_ms, target_id, \
                       event, identity, profiles, is_test, body";

#[tokio::test]
async fn payloads_land_in_webhook_events_on_sqlite_once_per_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.sqlite");
    let url = format!("sqlite://{}", db.display());
    let config = config(&url);
    let clock = Arc::new(ManualClock::new(START_MS));
    let queue = Arc::new(SqliteDeliveryQueue::open(&dir.path().join("state")).unwrap());
    let relay = Relay::new(&config, queue.clone(), clock).unwrap();

    let (status, answer) = post(&relay.router, CLEVERTAP_SAMPLE).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, other) = post(&relay.router, r#"{"type":"subscription.renewed"}"#).await;
    assert!(!db.exists(), "the answer never waits on the warehouse");
    let stats = relay.worker.run_until_idle().await.unwrap();
    assert_eq!((stats.delivered, stats.retried, stats.dead), (2, 0, 0));

    let rows = tapline_tests::sqlite_rows(
        &db,
        &format!("SELECT {COLUMNS} FROM webhook_events ORDER BY target_id IS NULL"),
    );
    let id = answer["id"].as_str().unwrap();
    let ms = START_MS.to_string();
    assert_eq!(
        rows[0],
        [
            Some(format!("{id}.wh")),
            Some(id.to_string()),
            Some("alerts".into()),
            Some("2025-11-24T16:00:00.000Z".into()),
            Some(ms.clone()),
            Some("1659684581".into()),
            Some("Charged".into()),
            Some("u-42".into()),
            Some("1".into()),
            Some("0".into()),
            Some(CLEVERTAP_SAMPLE.into()),
        ]
    );
    let other_id = other["id"].as_str().unwrap();
    assert_eq!(
        rows[1][0].as_deref(),
        Some(format!("{other_id}.wh").as_str())
    );
    assert!(rows[1][5..10].iter().all(Option::is_none), "{:?}", rows[1]);
    assert_eq!(rows.len(), 2);

    // The same delivery written again (a worker that died after the commit, before settling;
    // a replay): still one row for it.
    let destinations = tapline::webhook_relay::relay::destinations(
        &config,
        &tapline::webhook_relay::relay::http_client(Duration::from_secs(1)).unwrap(),
    )
    .unwrap();
    let destination = &destinations[&("alerts".to_string(), "wh".to_string())];
    let again = DeliveryAttempt {
        delivery_id: &format!("{id}.wh"),
        payload_id: id,
        received_at_ms: START_MS,
        route: "alerts",
        body: CLEVERTAP_SAMPLE.as_bytes(),
        now_ms: START_MS + 60_000,
    };
    assert_eq!(destination.deliver(again).await.unwrap(), 200);
    assert_eq!(
        tapline_tests::sqlite_value(&db, "SELECT count(*) FROM webhook_events"),
        Some("2".into())
    );
    assert_eq!(queue.counts().await.unwrap().delivered, 2);
}

#[tokio::test]
async fn an_unreachable_warehouse_is_retried_then_dead_lettered_never_lost() {
    let dir = tempfile::tempdir().unwrap();
    // Under a regular file: the warehouse cannot be opened (retryable: the path may be fixed).
    std::fs::write(dir.path().join("file"), b"").unwrap();
    let url = format!("sqlite://{}/file/w.sqlite", dir.path().display());
    let config = config(&url);
    let queue = Arc::new(SqliteDeliveryQueue::open(&dir.path().join("state")).unwrap());
    let relay = Relay::new(&config, queue.clone(), Arc::new(ManualClock::new(START_MS))).unwrap();
    let (status, _) = post(&relay.router, CLEVERTAP_SAMPLE).await;
    assert_eq!(status, StatusCode::OK);
    let stats = relay.worker.run_until_idle().await.unwrap();
    assert_eq!((stats.attempts, stats.retried, stats.dead), (3, 2, 1));
    let dead = queue.dead_letters(&Default::default()).await.unwrap();
    assert_eq!(dead[0].delivery.body, CLEVERTAP_SAMPLE.as_bytes());
    let record = &dead[0].attempts[0];
    assert_eq!(record.outcome, "retryable");
    assert!(
        record
            .error
            .as_deref()
            .unwrap()
            .contains("cannot open warehouse"),
        "{record:?}"
    );
}

/// The worker Lambda's path: accepts into SQS (moto), the handler delivers into PostgreSQL, and
/// the same messages handed over again (SQS redelivers a message whose deletion was lost) leave
/// one row per delivery.
#[tokio::test]
async fn on_aws_the_worker_writes_postgres_once_even_when_sqs_redelivers() {
    use tapline::webhook_relay::queue::sqs::{SqsAcceptQueue, SqsDeliveryHandler, SqsEvent};
    use tapline::webhook_relay::relay::{destinations, http_client};
    use tapline::webhook_relay::router::accept_router;
    use tapline_tests::servers::pg::PgSchema;
    use tapline_tests::servers::sqs;

    let schema = PgSchema::new("relay_warehouse");
    let config = config(&schema.url());
    let client = sqs::client().await;
    let (queue, dlq) = sqs::queue_with_dead_letters(&client, "relay-warehouse", 3).await;
    let router = accept_router(
        &config,
        Arc::new(SqsAcceptQueue::new(client.clone(), &queue)),
        Arc::new(SystemClock),
    );
    let (status, answer) = post(&router, CLEVERTAP_SAMPLE).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let messages = sqs::receive(&client, &queue, 1, Duration::from_secs(10)).await;

    let http = http_client(config.settings.delivery_timeout).unwrap();
    let handler = Arc::new(SqsDeliveryHandler::new(
        destinations(&config, &http).unwrap(),
        config.settings.retry.clone(),
        Arc::new(SystemClock),
        client.clone(),
        &queue,
        &dlq,
    ));
    for round in 0..2 {
        let event: SqsEvent = serde_json::from_value(sqs::lambda_event(&messages)).unwrap();
        let response = handler.handle(event).await;
        assert_eq!(response, json!({"batchItemFailures": []}), "round {round}");
    }
    let id = answer["id"].as_str().unwrap();
    assert_eq!(
        schema.psql(
            "SELECT delivery_id, route, target_id, event, identity, profiles, is_test \
             FROM webhook_events"
        ),
        format!("{id}.wh|alerts|1659684581|Charged|u-42|1|0")
    );
    assert_eq!(
        schema.psql("SELECT body::json->>'targetId' FROM webhook_events"),
        "1659684581",
        "the raw body is kept as JSON text"
    );
}

/// Another session holding `table` of `schema` locked (ACCESS EXCLUSIVE) until dropped: a
/// destination stuck for good. A psql process in an open transaction.
struct TableLock(std::process::Child);

impl TableLock {
    fn hold(schema: &tapline_tests::servers::pg::PgSchema, table: &str) -> Self {
        use std::io::Write;
        let mut child = std::process::Command::new("psql")
            .args([tapline_tests::postgres_url().as_str(), "-qX"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("psql");
        let sql = format!(
            "BEGIN; LOCK TABLE {}.{table} IN ACCESS EXCLUSIVE MODE;\n",
            schema.schema
        );
        child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
        let held = format!(
            "SELECT count(*) FROM pg_locks WHERE relation = '{table}'::regclass \
             AND mode = 'AccessExclusiveLock' AND granted"
        );
        wait_for_psql(schema, &held, "1");
        Self(child)
    }
}

impl Drop for TableLock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `sql` until it answers `expected` (each run is a psql process: no sleep needed);
/// panics after 30 s.
fn wait_for_psql(schema: &tapline_tests::servers::pg::PgSchema, sql: &str, expected: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = schema.psql(sql);
        if got == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{sql}: {got}, expected {expected}"
        );
    }
}

/// A warehouse destination whose table another session keeps locked for good does not stall
/// the relay: another route's deliveries go out and settle while its attempt waits, and the
/// attempt ends at PostgreSQL's `lock_timeout` (half of `delivery_timeout_secs`) as a retryable
/// failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_locked_for_good_stalls_no_other_route_and_times_out_retryably() {
    use tapline_tests::doubles::receiver::Receiver;
    use tapline_tests::servers::pg::PgSchema;
    use tokio::sync::watch;

    let schema = PgSchema::new("relay_locked");
    let receiver = Receiver::start().await;
    let text = r#"
[settings]
max_attempts = 1
delivery_timeout_secs = 4

[[routes]]
name = "alerts"
auth = { header = "X-Tapline-Token", secret_env = "ALERTS_TOKEN" }
[[routes.destinations]]
type = "warehouse"
name = "wh"
url_env = "WAREHOUSE_URL"

[[routes]]
name = "crm"
auth = { header = "X-Tapline-Token", secret_env = "ALERTS_TOKEN" }
[[routes.destinations]]
type = "http"
name = "hook"
url_env = "HOOK_URL"
signing_secret_env = "SIGNING_KEY"
"#;
    let env = HashMap::from([
        ("ALERTS_TOKEN", TOKEN.to_string()),
        ("WAREHOUSE_URL", schema.url()),
        ("HOOK_URL", receiver.url.clone()),
        (
            "SIGNING_KEY",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string(),
        ),
    ]);
    let config = RelayConfig::parse("test", text, |var| env.get(var).cloned()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::local(&config, dir.path()).unwrap();
    // A first payload creates the table; then another session locks it.
    let (status, _) = post(&relay.router, r#"{"n":0}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(relay.worker.run_until_idle().await.unwrap().delivered, 1);
    let lock = TableLock::hold(&schema, "webhook_events");

    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn({
        let (worker, wake) = (relay.worker.clone(), relay.wake.clone());
        async move { worker.run(wake, stopped).await }
    });
    let (_, stuck) = post(&relay.router, r#"{"n":1}"#).await;
    // The attempt is in flight, waiting on the lock.
    let waiting = "SELECT count(*) FROM pg_locks WHERE relation = 'webhook_events'::regclass \
                   AND NOT granted";
    tokio::task::block_in_place(|| wait_for_psql(&schema, waiting, "1"));
    for n in 0..3 {
        let (status, _) = post_hook(
            &relay.router,
            "crm",
            Some(("X-Tapline-Token", TOKEN)),
            &format!("{{\"crm\":{n}}}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    receiver.wait_for(3, Duration::from_secs(30)).await;
    // Settled as delivered while the warehouse attempt still waits: nothing waited for it.
    let delivered = loop {
        let counts = relay.queue.counts().await.unwrap();
        if counts.delivered == 4 {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((delivered.pending, delivered.dead), (1, 0), "{delivered:?}");

    let dead = loop {
        let dead = relay.queue.dead_letters(&Default::default()).await.unwrap();
        if !dead.is_empty() {
            break dead;
        }
        // Polling the queue's state, not waiting for time to pass.
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.send(true).unwrap();
    running.await.unwrap();
    drop(lock);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].delivery.payload_id, stuck["id"].as_str().unwrap());
    let record = &dead[0].attempts[0];
    assert_eq!(record.outcome, "retryable", "{record:?}");
    assert!(
        record.error.as_deref().unwrap().contains("lock timeout"),
        "{record:?}"
    );
    assert_eq!(receiver.received().len(), 3, "each once");
    assert_eq!(schema.psql("SELECT count(*) FROM webhook_events"), "1");
}

/// The warehouse destination on BigQuery (`bigquery://…`), on our double and on bqemulator:
/// a CleverTap webhook and another payload land in `webhook_events` with their columns, and the
/// same delivery written again (a replay, a worker that died before settling) adds no row.
async fn payloads_land_in_webhook_events_on_bigquery_once_per_delivery(
    target: tapline_tests::doubles::bigquery::target::BigQueryTarget,
) {
    use tapline::webhook_relay::destinations::Destination;
    use tapline::webhook_relay::destinations::warehouse::WarehouseDestination;
    let destination = WarehouseDestination::with_warehouse(target.open().await);
    let attempt =
        |delivery_id: &'static str, payload_id: &'static str, body: &'static str| DeliveryAttempt {
            delivery_id,
            payload_id,
            received_at_ms: START_MS,
            route: "alerts",
            body: body.as_bytes(),
            now_ms: START_MS,
        };
    let other = r#"{"type":"subscription.renewed"}"#;
    for (delivery, payload, body) in [
        ("p1.wh", "p1", CLEVERTAP_SAMPLE),
        ("p2.wh", "p2", other),
        ("p1.wh", "p1", CLEVERTAP_SAMPLE),
    ] {
        let delivered = destination.deliver(attempt(delivery, payload, body)).await;
        assert_eq!(delivered.unwrap(), 200, "{delivery}");
    }
    let rows = target
        .rows(&format!(
            "SELECT {COLUMNS} FROM webhook_events ORDER BY delivery_id"
        ))
        .await;
    assert_eq!(
        rows,
        vec![
            vec![
                Some("p1.wh".into()),
                Some("p1".into()),
                Some("alerts".into()),
                Some("2025-11-24T16:00:00.000Z".into()),
                Some(START_MS.to_string()),
                Some("1659684581".into()),
                Some("Charged".into()),
                Some("u-42".into()),
                Some("1".into()),
                Some("0".into()),
                Some(CLEVERTAP_SAMPLE.into()),
            ],
            vec![
                Some("p2.wh".into()),
                Some("p2".into()),
                Some("alerts".into()),
                Some("2025-11-24T16:00:00.000Z".into()),
                Some(START_MS.to_string()),
                None,
                None,
                None,
                None,
                None,
                Some(other.into()),
            ],
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_land_in_webhook_events_on_the_bigquery_double_once_per_delivery() {
    use tapline_tests::doubles::bigquery::target::BigQueryTarget;
    payloads_land_in_webhook_events_on_bigquery_once_per_delivery(
        BigQueryTarget::double("relay").await,
    )
    .await;
}

/// On bqemulator (`TAPLINE_TEST_BQEMULATOR_URL`, started by `make test`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_land_in_webhook_events_on_bqemulator_once_per_delivery() {
    use tapline_tests::doubles::bigquery::target::BigQueryTarget;
    payloads_land_in_webhook_events_on_bigquery_once_per_delivery(
        BigQueryTarget::emulator("relay").await,
    )
    .await;
}
