//! The local relay's queue has bounds and shows them: a backlog cap and a free-disk watermark
//! past which accepts get 503 with `Retry-After` (nothing stored is touched, accepts resume once
//! drained), its counts on `/healthz` and in `tapline relay status`, and private files.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tapline::webhook_relay::clock::ManualClock;
use tapline::webhook_relay::queue::limits::PAYLOAD_OVERHEAD_BYTES;
use tapline::webhook_relay::queue::sqlite::{QUEUE_FILE, SqliteDeliveryQueue};
use tapline::webhook_relay::queue::{AcceptQueue, DeliveryQueue, IncomingPayload, QueueError};
use tapline::webhook_relay::{Relay, RelayConfig};
use tapline_tests::doubles::receiver::{Receiver, Reply};
use tower::ServiceExt;

const TOKEN: &str = "alerts-token-0123456789abcdef012345";
const SIGNING: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const START_MS: i64 = 1_764_000_000_000;
const MIB: u64 = 1024 * 1024;

/// Route `alerts` (Slack + HTTP) with `extra_settings`, its queue opened with the configured
/// limits (as `tapline relay serve` does) on a manual clock.
struct Bounded {
    relay: Relay,
    queue: Arc<SqliteDeliveryQueue>,
    clock: Arc<ManualClock>,
    _state: tempfile::TempDir,
}

impl Bounded {
    fn new(slack: &Receiver, http: &Receiver, extra_settings: &str) -> Self {
        let text = format!(
            r#"
[settings]
delivery_timeout_secs = 1
{extra_settings}

[[routes]]
name = "alerts"
auth = {{ header = "X-Tapline-Token", secret_env = "ALERTS_TOKEN" }}
[[routes.destinations]]
type = "slack"
url_env = "SLACK_URL"
[[routes.destinations]]
type = "http"
url_env = "HTTP_URL"
signing_secret_env = "SIGNING_KEY"
"#
        );
        let env = HashMap::from([
            ("ALERTS_TOKEN", TOKEN.to_string()),
            ("SLACK_URL", slack.url.clone()),
            ("HTTP_URL", http.url.clone()),
            ("SIGNING_KEY", SIGNING.to_string()),
        ]);
        let config =
            RelayConfig::parse("test", &text, |var| env.get(var).cloned()).expect("valid config");
        let state = tempfile::tempdir().unwrap();
        let queue = Arc::new(
            SqliteDeliveryQueue::open_with_limits(state.path(), config.settings.queue_limits)
                .unwrap(),
        );
        let clock = Arc::new(ManualClock::new(START_MS));
        let relay = Relay::new(&config, queue.clone(), clock.clone()).unwrap();
        Self {
            relay,
            queue,
            clock,
            _state: state,
        }
    }

    /// POSTs `body` to `/hooks/alerts`: status, headers, JSON answer.
    async fn post(&self, body: String) -> (StatusCode, HeaderMap, Value) {
        let request = Request::post("/hooks/alerts")
            .header("content-type", "application/json")
            .header("X-Tapline-Token", TOKEN)
            .body(Body::from(body))
            .unwrap();
        let response = self.relay.router.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (parts.status, parts.headers, json)
    }

    async fn healthz(&self) -> Value {
        let request = Request::get("/healthz").body(Body::empty()).unwrap();
        let response = self.relay.router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }
}

/// A JSON body `{"n":N,"pad":"xx…"}` of exactly `len` bytes.
fn body_of(n: usize, len: usize) -> String {
    let head = format!("{{\"n\":{n},\"pad\":\"");
    let pad = len - head.len() - 2;
    format!("{head}{}\"}}", "x".repeat(pad))
}

/// The `n` of every body a receiver got after its first `skip` requests, with how many times.
fn seen_after(receiver: &Receiver, skip: usize) -> BTreeMap<i64, usize> {
    let mut seen = BTreeMap::new();
    for r in receiver.received().into_iter().skip(skip) {
        let n = serde_json::from_slice::<Value>(&r.body).unwrap()["n"]
            .as_i64()
            .unwrap();
        *seen.entry(n).or_default() += 1;
    }
    seen
}

#[tokio::test]
async fn accepts_past_the_backlog_cap_get_503_with_retry_after_and_resume_once_drained() {
    let (slack, http) = (Receiver::start().await, Receiver::start().await);
    slack.set_default(Reply::Status(503, "down".into()));
    http.set_default(Reply::Status(503, "down".into()));
    let q = Bounded::new(&slack, &http, "max_queue_mib = 1");
    // Each payload costs 256 KiB against the 1 MiB cap: four fit, the fifth does not.
    let len = (256 * 1024 - PAYLOAD_OVERHEAD_BYTES) as usize;
    for n in 0..4 {
        let (status, _, answer) = q.post(body_of(n, len)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let (status, headers, answer) = q.post(body_of(4, len)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "30");
    assert_eq!(
        answer,
        serde_json::json!({"error": "the relay's queue is full, retry later"})
    );
    // Destinations down: one round of attempts fails, nothing accepted is lost or dead.
    let stats = q.relay.worker.run_once().await.unwrap();
    assert_eq!((stats.attempts, stats.retried), (8, 8));
    let health = q.healthz().await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["refused_requests"], 0);
    let queue = &health["queue"];
    assert_eq!(queue["pending"], 8);
    assert_eq!(queue["held"], 8, "waiting for their retry");
    assert_eq!(queue["dead"], 0);
    assert_eq!(queue["backlog_bytes"], MIB);
    assert_eq!(queue["oldest_pending_age_secs"], 0);
    assert!(
        queue["refusing"]
            .as_str()
            .unwrap()
            .contains("the cap is 1048576 (settings.max_queue_mib)"),
        "{queue}"
    );
    assert!(queue["free_disk_bytes"].as_u64().unwrap() > 0);
    assert_eq!(q.queue.counts().await.unwrap().payloads, 4);

    // The destinations come back; the worker drains the backlog and accepts resume.
    let failed = (slack.received().len(), http.received().len());
    assert_eq!(failed, (4, 4));
    slack.set_default(Reply::Ok);
    http.set_default(Reply::Ok);
    let stats = q.relay.worker.run_until_idle().await.unwrap();
    assert_eq!((stats.delivered, stats.dead), (8, 0));
    q.clock.advance(Duration::from_secs(2));
    let queue = q.healthz().await["queue"].clone();
    assert_eq!(
        (
            &queue["pending"],
            &queue["backlog_bytes"],
            &queue["refusing"]
        ),
        (&0.into(), &0.into(), &Value::Null),
        "{queue}"
    );
    let (status, _, answer) = q.post(body_of(4, len)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "accepted");
    q.relay.worker.run_until_idle().await.unwrap();
    let all: BTreeMap<i64, usize> = (0..5).map(|n| (n, 1)).collect();
    assert_eq!(
        seen_after(&http, failed.1),
        all,
        "each payload delivered once, none lost"
    );
    // Slack gets a message built from the payload: one per payload.
    assert_eq!(slack.received().len() - failed.0, 5);
}

#[tokio::test]
async fn accepts_stop_at_the_free_disk_watermark_before_the_disk_is_full() {
    let (slack, http) = (Receiver::start().await, Receiver::start().await);
    // A watermark of 1 PiB is above any free space here: the refusal the relay makes when the
    // disk runs low, without filling it.
    let q = Bounded::new(&slack, &http, "min_free_disk_mib = 1073741824");
    let (status, headers, answer) = q.post(body_of(0, 64)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(headers["retry-after"], "30");
    assert_eq!(
        q.queue.counts().await.unwrap().payloads,
        0,
        "nothing stored"
    );
    let queue = q.healthz().await["queue"].clone();
    let refusing = queue["refusing"].as_str().unwrap();
    assert!(
        refusing.contains("below the watermark of 1125899906842624"),
        "{refusing}"
    );
    // The same relay without a watermark accepts.
    let open = Bounded::new(
        &slack,
        &http,
        "min_free_disk_mib = 0\nmin_free_disk_percent = 0",
    );
    let (status, _, answer) = open.post(body_of(0, 64)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(open.healthz().await["queue"]["refusing"], Value::Null);
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

async fn enqueue_one(queue: &SqliteDeliveryQueue, n: usize, received_at_ms: i64) {
    let payload = IncomingPayload {
        route: "alerts".into(),
        destinations: vec!["slack-1".into()],
        body: body_of(n, 100).into_bytes(),
        received_at_ms,
        paused_until_ms: HashMap::new(),
    };
    queue.enqueue(payload, 0).await.unwrap();
}

#[tokio::test]
async fn the_state_dir_is_0700_and_the_queue_files_0600_and_a_wider_one_is_tightened() {
    let temp = tempfile::tempdir().unwrap();
    let state = temp.path().join("state");
    let queue = SqliteDeliveryQueue::open(&state).unwrap();
    enqueue_one(&queue, 0, START_MS).await;
    assert_eq!(mode(&state), 0o700);
    for file in [
        QUEUE_FILE,
        "relay-queue.sqlite-wal",
        "relay-queue.sqlite-shm",
    ] {
        assert_eq!(mode(&state.join(file)), 0o600, "{file}");
    }
    drop(queue);

    // A state dir and files left open by an earlier version are tightened at the next start.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    for file in [
        QUEUE_FILE,
        "relay-queue.sqlite-wal",
        "relay-queue.sqlite-shm",
    ] {
        let path = state.join(file);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let queue = SqliteDeliveryQueue::open(&state).unwrap();
    enqueue_one(&queue, 1, START_MS).await;
    assert_eq!(mode(&state), 0o700);
    for file in [
        QUEUE_FILE,
        "relay-queue.sqlite-wal",
        "relay-queue.sqlite-shm",
    ] {
        assert_eq!(mode(&state.join(file)), 0o600, "{file}");
    }
    assert_eq!(queue.counts().await.unwrap().payloads, 2, "nothing lost");

    // A shared directory (like /tmp) is refused, not chmod-ed.
    let shared = temp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let err = SqliteDeliveryQueue::open(&shared).unwrap_err();
    assert!(matches!(err, QueueError::StateDir { .. }), "{err:?}");
    let reason = std::error::Error::source(&err).unwrap().to_string();
    assert!(
        reason.starts_with("a shared directory (sticky or writable by others)"),
        "{reason}"
    );
    assert_eq!(mode(&shared), 0o1777, "left as it was");
}

#[tokio::test]
async fn tapline_relay_status_shows_the_queue_counts_as_a_table_and_as_json() {
    let temp = tempfile::tempdir().unwrap();
    let state = temp.path().join("state");
    let queue = SqliteDeliveryQueue::open(&state).unwrap();
    let now = jiff::Timestamp::now().as_millisecond();
    // Two payloads an hour old: one pending, one dead.
    enqueue_one(&queue, 0, now - 3_600_000).await;
    enqueue_one(&queue, 1, now - 3_600_000).await;
    let claimed = queue.claim_due(now, 1, 0).await.unwrap();
    let attempt = tapline::webhook_relay::queue::AttemptRecord {
        attempt: 1,
        at_ms: now,
        duration_ms: 1,
        status: Some(404),
        outcome: "permanent".into(),
        error: Some("HTTP 404".into()),
    };
    queue
        .settle(
            &claimed[0].id,
            attempt,
            tapline::webhook_relay::queue::Settle::Dead,
        )
        .await
        .unwrap();
    drop(queue);

    let status = |args: &[&str]| {
        std::process::Command::new(tapline_tests::bin("tapline"))
            .args(["relay", "status"])
            .args(args)
            .output()
            .expect("run tapline relay status")
    };
    let state_arg = state.to_str().unwrap();
    let out = status(&["--state-dir", state_arg, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            &json["pending"],
            &json["held"],
            &json["dead"],
            &json["delivered"],
            &json["payloads"]
        ),
        (&1.into(), &0.into(), &1.into(), &0.into(), &2.into()),
        "{json}"
    );
    let age = json["oldest_pending_age_secs"].as_u64().unwrap();
    assert!((3_600..3_700).contains(&age), "{age}");
    assert_eq!(json["backlog_bytes"], 2 * (100 + PAYLOAD_OVERHEAD_BYTES));
    assert!(
        json.get("refusing").is_none(),
        "the limits are the server's"
    );

    let out = status(&["--state-dir", state_arg]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\npending         1\n"), "{text}");
    assert!(text.contains("\ndead            1\n"), "{text}");
    assert!(
        text.contains(&format!("\nbacklog         {} bytes\n", 2 * 1124)),
        "{text}"
    );

    let missing = temp.path().join("missing");
    let out = status(&["--state-dir", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no relay queue at"), "{stderr}");
    assert!(!missing.exists(), "status creates nothing");
}

#[test]
fn the_bounds_are_read_from_settings_with_defaults_and_refused_when_unusable() {
    let parse = |settings: &str| {
        let text = format!(
            "[settings]\n{settings}\n[[routes]]\nname = \"alerts\"\n\
             auth = {{ header = \"X-Tapline-Token\", secret_env = \"T\" }}\n\
             [[routes.destinations]]\ntype = \"slack\"\nurl_env = \"U\"\n"
        );
        let env = |var: &str| {
            Some(match var {
                "U" => "https://hooks.slack.com/services/T/B/X".to_string(),
                _ => TOKEN.to_string(),
            })
        };
        RelayConfig::parse("test", &text, env)
    };
    let defaults = parse("").unwrap().settings;
    assert_eq!(
        defaults.dead_letter_retention,
        Duration::from_secs(30 * 86_400)
    );
    assert_eq!(
        defaults.queue_limits,
        tapline::webhook_relay::queue::limits::QueueLimits {
            max_backlog_bytes: 4096 * MIB,
            min_free_disk_percent: 5,
            min_free_disk_bytes: 256 * MIB,
        }
    );
    let set = parse(
        "dead_letter_retention_days = 2\nmax_queue_mib = 10\nmin_free_disk_percent = 0\n\
         min_free_disk_mib = 1024",
    )
    .unwrap()
    .settings;
    assert_eq!(set.dead_letter_retention, Duration::from_secs(2 * 86_400));
    assert_eq!(
        set.queue_limits,
        tapline::webhook_relay::queue::limits::QueueLimits {
            max_backlog_bytes: 10 * MIB,
            min_free_disk_percent: 0,
            min_free_disk_bytes: 1024 * MIB,
        }
    );
    for (settings, reason) in [
        (
            "max_queue_mib = 0",
            "settings.max_queue_mib must be above 0",
        ),
        (
            "min_free_disk_percent = 100",
            "settings.min_free_disk_percent is a share of the disk, 0 to 99",
        ),
        (
            "dead_letter_retention_days = 0.001",
            "settings.dead_letter_retention_days must cover settings.dedupe_window_secs",
        ),
        (
            "dead_letter_retention_days = -1",
            "settings.dead_letter_retention_days must be a number of days",
        ),
        (
            "dead_letter_retention_days = 1e300",
            "settings.dead_letter_retention_days is too many days",
        ),
        (
            "retention_days = 1e300",
            "settings.retention_days is too many days",
        ),
    ] {
        let err = parse(settings).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("route \"*\": {reason}"),
            "{settings}"
        );
    }
}
