//! The relay's retry schedule end to end on the local relay (what `tapline relay serve` runs):
//! a route's own `retry_schedule` decides when each attempt is made and when the delivery
//! becomes a dead letter, while another route keeps the default schedule (Svix's, ~27.6 h).

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::StatusCode;
use tapline::webhook_relay::clock::ManualClock;
use tapline::webhook_relay::queue::DeliveryQueue;
use tapline::webhook_relay::queue::sqlite::SqliteDeliveryQueue;
use tapline::webhook_relay::{Relay, RelayConfig};
use tapline_tests::doubles::receiver::{Receiver, Reply};
use tapline_tests::doubles::relay_router::post_hook;

// At least 32 bytes: what a route secret must have.
const TOKEN: &str = "schedule-token-0123456789abcdef0123";
const START_MS: i64 = 1_764_000_000_000;

const CONFIG: &str = r#"
[[routes]]
name = "short"
retry_schedule = ["2s", "1m", "5m"]
auth = { header = "X-Tapline-Token", secret_env = "TOKEN" }
[[routes.destinations]]
type = "http"
url_env = "HOOK_URL"
signing_secret_env = "SIGNING_KEY"

[[routes]]
name = "default"
auth = { header = "X-Tapline-Token", secret_env = "TOKEN" }
[[routes.destinations]]
type = "http"
url_env = "OTHER_URL"
signing_secret_env = "SIGNING_KEY"
"#;

#[tokio::test]
async fn a_route_s_own_schedule_times_its_attempts_and_its_dead_letter() {
    let (down, other) = (Receiver::start().await, Receiver::start().await);
    down.set_default(Reply::Status(503, "down".into()));
    let env = HashMap::from([
        ("TOKEN", TOKEN.to_string()),
        ("HOOK_URL", down.url.clone()),
        ("OTHER_URL", other.url.clone()),
        (
            "SIGNING_KEY",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string(),
        ),
    ]);
    let config = RelayConfig::parse("test", CONFIG, |var| env.get(var).cloned()).unwrap();
    assert_eq!(config.settings.retry.max_attempts("short"), 4);
    assert_eq!(config.settings.retry.max_attempts("default"), 8);
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(SqliteDeliveryQueue::open(dir.path()).unwrap());
    let clock = Arc::new(ManualClock::new(START_MS));
    let relay = Relay::new(&config, queue.clone(), clock.clone()).unwrap();
    let auth = Some(("X-Tapline-Token", TOKEN));
    let (status, _) = post_hook(&relay.router, "short", auth, r#"{"n":1}"#).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = post_hook(&relay.router, "default", auth, r#"{"n":2}"#).await;
    assert_eq!(status, StatusCode::OK);

    // The manual clock jumps to each due time: the schedule runs in no time.
    let stats = relay.worker.run_until_idle().await.unwrap();
    assert_eq!(
        (stats.attempts, stats.retried, stats.delivered, stats.dead),
        (5, 3, 1, 1),
        "{stats:?}"
    );
    let dead = queue.dead_letters(&Default::default()).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].delivery.route, "short");
    let at: Vec<i64> = dead[0].attempts.iter().map(|a| a.at_ms).collect();
    assert_eq!(at.len(), 4, "{at:?}");
    assert_eq!(at[0], START_MS, "the first attempt at once");
    // Each wait is the schedule's, within the ±10 % jitter.
    for (gap, wait_ms) in at
        .windows(2)
        .map(|w| w[1] - w[0])
        .zip([2_000, 60_000, 300_000])
    {
        assert!(
            (wait_ms * 9 / 10..=wait_ms * 11 / 10).contains(&gap),
            "gap {gap} ms for a {wait_ms} ms wait: {at:?}"
        );
    }
    assert!(
        dead[0].attempts.iter().all(|a| a.status == Some(503)),
        "{:?}",
        dead[0].attempts
    );
    // Every attempt reached the receiver, with one idempotency key.
    let received = down.received();
    assert_eq!(received.len(), 4);
    let keys: Vec<_> = received
        .iter()
        .map(|r| r.headers["idempotency-key"].clone())
        .collect();
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
    assert_eq!(other.received().len(), 1);
}
