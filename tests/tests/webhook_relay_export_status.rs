//! The relay's `export-status` destination through the local relay (what `tapline relay serve`
//! runs): CleverTap's documented export status payload, on `Completed`, loads that export
//! request's objects from the export folder (and no other request's) and reconciles the days they
//! cover into `_tapline_completeness`; `Initiated` does nothing; a body that is no export status
//! is dead-lettered at once.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::Value;
use tapline::webhook_relay::clock::ManualClock;
use tapline::webhook_relay::queue::DeliveryQueue;
use tapline::webhook_relay::queue::sqlite::SqliteDeliveryQueue;
use tapline::webhook_relay::{Relay, RelayConfig};
use tapline_tests::doubles::relay_router::post_hook;
use tapline_tests::{export_csv, gzip, sqlite_rows};

const TOKEN: &str = "exports-token-0123456789abcdef0123";
const START_MS: i64 = 1_764_000_000_000;

/// CleverTap's documented export status payload.
const COMPLETED: &str = r#"{"Export Request Id": 1690283492, "Partner": "Google Cloud Storage", "Type": "Events", "Status": "Completed", "Frequency": "One Time", "Date and Time": "25/07/2023 4:50:52 PM"}"#;

fn config(source: &str, warehouse_url: &str) -> RelayConfig {
    let text = format!(
        r#"
[settings]
max_attempts = 3
backoff_base_ms = 10

[[routes]]
name = "exports"
auth = {{ header = "X-Tapline-Token", secret_env = "EXPORTS_TOKEN" }}
[[routes.destinations]]
type = "export-status"
name = "sweep"
source = "{source}"
url_env = "WAREHOUSE_URL"
"#
    );
    let env = HashMap::from([
        ("EXPORTS_TOKEN", TOKEN.to_string()),
        ("WAREHOUSE_URL", warehouse_url.to_string()),
        ("TAPLINE_TIMEZONE", "UTC".to_string()),
    ]);
    RelayConfig::parse("test", &text, |var| env.get(var).cloned()).expect("valid config")
}

async fn post(router: &axum::Router, body: &str) -> (StatusCode, Value) {
    post_hook(router, "exports", Some(("X-Tapline-Token", TOKEN)), body).await
}

#[tokio::test]
async fn a_completed_export_is_swept_and_its_days_reconciled() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    std::fs::create_dir_all(&exports).unwrap();
    let write = |name: &str, rows: usize| {
        std::fs::write(
            exports.join(name),
            gzip(export_csv("Charged", rows).as_bytes()),
        )
        .unwrap()
    };
    // The request's two chunks of 2022-09-21, and another request's object.
    write("1690283492-1690300000-Charged-20220921-0-0.csv.gz", 4);
    write("1690283492-1690300000-Charged-20220921-1-0.csv.gz", 3);
    write("1111111111-1690300000-Charged-20220921-0-0.csv.gz", 5);
    let db = dir.path().join("w.sqlite");
    let url = format!("sqlite://{}", db.display());
    let config = config(&exports.display().to_string(), &url);
    let clock = Arc::new(ManualClock::new(START_MS));
    let queue = Arc::new(SqliteDeliveryQueue::open(&dir.path().join("state")).unwrap());
    let relay = Relay::new(&config, queue.clone(), clock).unwrap();

    // Initiated: acknowledged, nothing loaded.
    let initiated = COMPLETED.replace("Completed", "Initiated");
    let (status, answer) = post(&relay.router, &initiated).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let stats = relay.worker.run_until_idle().await.unwrap();
    assert_eq!((stats.delivered, stats.retried, stats.dead), (1, 0, 0));
    assert!(!db.exists(), "an Initiated status opens no warehouse");

    // Completed: the request's chunks are loaded, the other request's object is not.
    let (status, answer) = post(&relay.router, COMPLETED).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let stats = relay.worker.run_until_idle().await.unwrap();
    assert_eq!((stats.delivered, stats.retried, stats.dead), (1, 0, 0));
    let loads = sqlite_rows(
        &db,
        "SELECT substr(uri, length(uri) - 48), status, rows_loaded FROM _tapline_loads ORDER BY uri",
    );
    let text = |s: &str| Some(s.to_string());
    assert_eq!(
        loads,
        [
            vec![
                text("1690283492-1690300000-Charged-20220921-0-0.csv.gz"),
                text("loaded"),
                text("4")
            ],
            vec![
                text("1690283492-1690300000-Charged-20220921-1-0.csv.gz"),
                text("loaded"),
                text("3")
            ],
        ]
    );
    // Its day is reconciled: both chunks, seven rows, and no CleverTap count to check them by.
    assert_eq!(
        sqlite_rows(
            &db,
            "SELECT event_name, day, status, export_chunks, export_rows, notified \
             FROM _tapline_completeness"
        ),
        [vec![
            text("Charged"),
            text("2022-09-21"),
            text("no count"),
            text("2"),
            text("7"),
            text("no"),
        ]]
    );

    // The same status again (CleverTap retries): the relay's dedupe window takes it as the same
    // payload, and nothing loads twice.
    post(&relay.router, COMPLETED).await;
    relay.worker.run_until_idle().await.unwrap();
    assert_eq!(
        tapline_tests::sqlite_value(&db, "SELECT count(*) FROM charged"),
        Some("7".into())
    );

    // Not an export status: refused for good, dead-lettered without a retry.
    let (status, _) = post(&relay.router, r#"{"hello": "world"}"#).await;
    assert_eq!(status, StatusCode::OK);
    let stats = relay.worker.run_until_idle().await.unwrap();
    assert_eq!((stats.delivered, stats.retried, stats.dead), (0, 0, 1));
    assert_eq!(queue.counts().await.unwrap().delivered, 2);
}

#[test]
fn an_export_status_destination_needs_a_source() {
    let env = HashMap::from([
        ("EXPORTS_TOKEN", TOKEN.to_string()),
        ("WAREHOUSE_URL", "sqlite://w.sqlite".to_string()),
    ]);
    let text = r#"
[[routes]]
name = "exports"
auth = { header = "X-Tapline-Token", secret_env = "EXPORTS_TOKEN" }
[[routes.destinations]]
type = "export-status"
source = " "
url_env = "WAREHOUSE_URL"
"#;
    let err = RelayConfig::parse("relay.toml", text, |var| env.get(var).cloned()).unwrap_err();
    assert!(
        err.to_string().contains(
            "an export-status destination needs `source`: where the exports land \
             (s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or a folder)"
        ),
        "{err}"
    );
}
