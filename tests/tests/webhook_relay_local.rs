//! The webhook relay: the Router in-process (auth, limits, parsing, accept = persist), the
//! worker driven deterministically with a manual clock against a Slack / HTTP receiver double,
//! and one end-to-end run of `tapline relay serve`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use serde_json::{Value, json};
use tapline::webhook_relay::clock::{Clock, ManualClock};
use tapline::webhook_relay::queue::sqlite::SqliteDeliveryQueue;
use tapline::webhook_relay::queue::{DeadLetterFilter, DeliveryQueue, QueueCounts};
use tapline::webhook_relay::signature::SigningKeys;
use tapline::webhook_relay::{Relay, RelayConfig};
use tapline_tests::doubles::receiver::{Receiver, Reply};
use tapline_tests::doubles::relay_router::post_hook;
use tower::ServiceExt;

const TOKEN: &str = "alerts-token-0123456789abcdef012345";
const BASIC_PASSWORD: &str = "basic-password-0123456789abcdef01";
/// Standard Webhooks secrets (24-byte keys, as Svix issues them).
const SIGNING: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SIGNING_NEXT: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const SIGNING_UNRELATED: &str = "whsec_dW5yZWxhdGVkLWtleS0wMTIzNDU2Nzg5YWI=";
const START_MS: i64 = 1_764_000_000_000;

const CLEVERTAP_SAMPLE: &str = r#"{"targetId":1659684581,"key_values":{"SomeKey1":"SomeValue1"},
 "profiles":[{"key_values":{},"email":"nick@example.com","identity":"u-42","all_identities":["u-42"],
   "objectId":"__Webhook227","phone":"+910000000000","systemProfileData":{"country":"IN"},
   "profileData":{"customer type":"gold"},"name":"Nick",
   "event_properties":{"Product Id":1,"CT Source":"Mobile"},"session_props":{}}]}"#;

/// A relay with route `alerts` (header auth, Slack + HTTP) and route `basic` (Basic auth, HTTP,
/// forwarding CleverTap tests), on a fresh state dir, with a manual clock and tiny backoffs.
struct Harness {
    relay: Relay,
    clock: Arc<ManualClock>,
    queue: Arc<SqliteDeliveryQueue>,
    config: RelayConfig,
    state: tempfile::TempDir,
}

fn config_text(extra_settings: &str) -> String {
    format!(
        r#"
[settings]
max_attempts = 3
backoff_base_ms = 10
backoff_max_secs = 1
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
name = "crm"
url_env = "HTTP_URL"
signing_secret_env = "SIGNING_KEY"

[[routes]]
name = "basic"
auth = {{ username = "clevertap", password_env = "BASIC_PASSWORD" }}
forward_tests = true
[[routes.destinations]]
type = "http"
url_env = "HTTP_URL"
signing_secret_env = "SIGNING_KEY"
"#
    )
}

fn config(slack: &Receiver, http: &Receiver, extra_settings: &str) -> RelayConfig {
    config_signed_with(slack, http, extra_settings, SIGNING)
}

/// [`config`] with `signing` (one `whsec_` secret, or several separated by spaces) as the HTTP
/// destinations' signing secret.
fn config_signed_with(
    slack: &Receiver,
    http: &Receiver,
    extra_settings: &str,
    signing: &str,
) -> RelayConfig {
    let env: HashMap<&str, String> = HashMap::from([
        ("ALERTS_TOKEN", TOKEN.to_string()),
        ("BASIC_PASSWORD", BASIC_PASSWORD.to_string()),
        ("SLACK_URL", slack.url.clone()),
        ("HTTP_URL", http.url.clone()),
        ("SIGNING_KEY", signing.to_string()),
    ]);
    RelayConfig::parse("test", &config_text(extra_settings), |var| {
        env.get(var).cloned()
    })
    .expect("valid config")
}

impl Harness {
    fn new(slack: &Receiver, http: &Receiver) -> Self {
        Self::with_settings(slack, http, "")
    }

    fn with_settings(slack: &Receiver, http: &Receiver, extra: &str) -> Self {
        let state = tempfile::tempdir().unwrap();
        let config = config(slack, http, extra);
        Self::on_state(config, state)
    }

    /// A relay (a "restarted process") over an existing state dir.
    fn on_state(config: RelayConfig, state: tempfile::TempDir) -> Self {
        Self::on_state_at(config, state, START_MS)
    }

    /// A relay whose clock starts at `start_ms`.
    fn on_state_at(config: RelayConfig, state: tempfile::TempDir, start_ms: i64) -> Self {
        let clock = Arc::new(ManualClock::new(start_ms));
        let queue = Arc::new(SqliteDeliveryQueue::open(state.path()).unwrap());
        let relay = Relay::new(&config, queue.clone(), clock.clone()).unwrap();
        Self {
            relay,
            clock,
            queue,
            config,
            state,
        }
    }

    async fn post(
        &self,
        route: &str,
        auth: Option<(&str, &str)>,
        body: &str,
    ) -> (StatusCode, Value) {
        post_hook(&self.relay.router, route, auth, body).await
    }

    async fn post_alert(&self, body: &str) -> (StatusCode, Value) {
        self.post("alerts", Some(("X-Tapline-Token", TOKEN)), body)
            .await
    }

    async fn counts(&self) -> QueueCounts {
        self.queue.counts().await.unwrap()
    }

    async fn dead_letters(&self) -> Vec<tapline::webhook_relay::queue::DeadLetter> {
        self.queue
            .dead_letters(&DeadLetterFilter::default())
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn auth_is_required_and_401_says_nothing() {
    let (slack, http) = (Receiver::start().await, Receiver::start().await);
    let h = Harness::new(&slack, &http);
    let (status, body) = h.post("alerts", None, "{}").await;
    assert_eq!((status, body), (StatusCode::UNAUTHORIZED, Value::Null));
    // Same length, one byte off; and a prefix: both go through the same constant-time compare.
    let wrong = format!("{}4", &TOKEN[..TOKEN.len() - 1]);
    for bad in [wrong.as_str(), &TOKEN[..5], ""] {
        let (status, body) = h.post("alerts", Some(("X-Tapline-Token", bad)), "{}").await;
        assert_eq!(
            (status, body),
            (StatusCode::UNAUTHORIZED, Value::Null),
            "{bad:?}"
        );
    }
    let basic = |user_pass: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    };
    let (status, _) = h
        .post(
            "basic",
            Some((
                "Authorization",
                &basic("clevertap:nope-nope-nope-nope-nope-nope"),
            )),
            "{}",
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = h
        .post(
            "basic",
            Some((
                "Authorization",
                &basic(&format!("clevertap:{BASIC_PASSWORD}")),
            )),
            "{}",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Two Authorization headers, the first one right: refused, like two token headers.
    for (route, header, first, second) in [
        (
            "basic",
            "authorization",
            basic(&format!("clevertap:{BASIC_PASSWORD}")),
            basic("clevertap:nope"),
        ),
        (
            "alerts",
            "x-tapline-token",
            TOKEN.to_string(),
            "nope".to_string(),
        ),
    ] {
        let response = h
            .relay
            .router
            .clone()
            .oneshot(
                Request::post(format!("/hooks/{route}"))
                    .header(header, first)
                    .header(header, second)
                    .body(Body::from("{}"))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{route}");
    }
    // A route that does not exist looks like a wrong secret: same status, same (empty) body.
    let (status, body) = h.post("nope", Some(("X-Tapline-Token", TOKEN)), "{}").await;
    assert_eq!((status, body), (StatusCode::UNAUTHORIZED, Value::Null));
    assert_eq!(
        h.counts().await.payloads,
        1,
        "only the authorized one is stored"
    );
    // Every refusal above is counted on /healthz (1 + 3 + 1 + 2 + 1).
    let response = h
        .relay
        .router
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let health: Value = serde_json::from_slice(
        &http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    assert_eq!(health["refused_requests"], 8, "{health}");
}

#[tokio::test]
async fn unknown_route_too_large_and_not_json() {
    let (slack, http) = (Receiver::start().await, Receiver::start().await);
    let h = Harness::with_settings(&slack, &http, "body_limit_bytes = 64");
    let (status, _) = h.post("nope", Some(("X-Tapline-Token", TOKEN)), "{}").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(100));
    let (status, _) = h.post_alert(&big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // A Content-Length that understates the body: the limit still holds while reading.
    let response = h
        .relay
        .router
        .clone()
        .oneshot(
            Request::post("/hooks/alerts")
                .header("X-Tapline-Token", TOKEN)
                .header("content-length", "10")
                .body(Body::from(big.clone()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (status, body) = h.post_alert("not json {").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "body is not JSON");
    assert_eq!(h.counts().await, QueueCounts::default(), "nothing stored");
    let response = h
        .relay
        .router
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn clevertap_test_posts_are_answered_and_forwarded_only_when_the_route_says_so() {
    let (slack, http) = (Receiver::start().await, Receiver::start().await);
    let h = Harness::new(&slack, &http);
    let test_post = r#"{"Is_Test":true,"targetId":1234,"key_values":{},"profiles":[]}"#;
    let (status, body) = h.post_alert(test_post).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "test");
    assert_eq!(h.counts().await.payloads, 0, "not forwarded on alerts");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("clevertap:{BASIC_PASSWORD}"))
    );
    let (status, body) = h
        .post("basic", Some(("authorization", &basic)), test_post)
        .await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &json!("accepted"))
    );
    h.relay.worker.run_until_idle().await.unwrap();
    assert_eq!(
        http.received().len(),
        1,
        "route basic has forward_tests = true"
    );
}

#[tokio::test]
async fn accepted_payloads_are_delivered_to_slack_and_signed_to_http() {
    let (slack, http) = (Receiver::start().await, Receiver::start().await);
    let h = Harness::new(&slack, &http);
    let (status, body) = h.post_alert(CLEVERTAP_SAMPLE).await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &json!("accepted"))
    );
    assert!(
        slack.received().is_empty(),
        "the answer did not wait on a destination"
    );
    assert_eq!(
        h.counts().await.pending,
        2,
        "one delivery per destination, stored"
    );

    let stats = h.relay.worker.run_until_idle().await.unwrap();
    assert_eq!((stats.delivered, stats.dead), (2, 0));

    let message: Value = serde_json::from_slice(&slack.received()[0].body).unwrap();
    let text = message.to_string();
    assert!(
        message["text"].as_str().unwrap().contains("1659684581"),
        "{text}"
    );
    assert!(
        text.contains("SomeValue1") && text.contains("u-42"),
        "{text}"
    );
    assert!(message["blocks"].as_array().unwrap().len() <= 50);

    let forwarded = &http.received()[0];
    assert_eq!(
        forwarded.body.as_ref(),
        CLEVERTAP_SAMPLE.as_bytes(),
        "body untouched"
    );
    let header = |name: &str| forwarded.headers[name].to_str().unwrap().to_string();
    let id = header("webhook-id");
    assert_eq!(header("idempotency-key"), id);
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
    assert_eq!(timestamp, START_MS / 1000);
    let signature = header("webhook-signature");
    assert!(
        signature.starts_with("v1,") && !signature.contains(' '),
        "{signature}"
    );
    assert!(SigningKeys::parse(SIGNING).unwrap().verify(
        &id,
        timestamp,
        &forwarded.body,
        &signature
    ));
    assert!(!SigningKeys::parse(SIGNING_UNRELATED).unwrap().verify(
        &id,
        timestamp,
        &forwarded.body,
        &signature
    ));
    let counts = h.counts().await;
    assert_eq!((counts.delivered, counts.pending, counts.dead), (2, 0, 0));
}

#[tokio::test]
async fn failures_are_retried_with_backoff_and_retry_after_then_delivered() {
    let (slack, http) = (Receiver::start().await, Receiver::start().await);
    let h = Harness::new(&slack, &http);
    slack.script([
        Reply::TooManyRequests(30),
        Reply::Status(500, "oops".into()),
    ]);
    http.script([Reply::Stall(Duration::from_secs(3))]);
    h.post_alert(CLEVERTAP_SAMPLE).await;
    let stats = h.relay.worker.run_until_idle().await.unwrap();
    assert_eq!((stats.delivered, stats.dead), (2, 0), "{stats:?}");
    assert_eq!(slack.received().len(), 3, "429, 500, then ok");
    assert_eq!(http.received().len(), 2, "a timeout, then ok");
    assert!(
        h.clock.now_ms() - START_MS >= 30_000,
        "Retry-After: 30 was honoured (manual clock moved {} ms)",
        h.clock.now_ms() - START_MS
    );
    // The same idempotency key on every attempt.
    let keys: Vec<_> = http
        .received()
        .iter()
        .map(|r| r.headers["idempotency-key"].clone())
        .collect();
    assert_eq!(keys[0], keys[1]);
}

#[tokio::test]
async fn permanent_failures_and_exhausted_retries_become_dead_letters_with_every_attempt() {
    let (slack, http) = (Receiver::start().await, Receiver::start().await);
    let h = Harness::new(&slack, &http);
    slack.set_default(Reply::Status(200, "invalid_payload".into()));
    http.set_default(Reply::Status(503, "down".into()));
    h.post_alert(CLEVERTAP_SAMPLE).await;
    let stats = h.relay.worker.run_until_idle().await.unwrap();
    assert_eq!((stats.delivered, stats.dead), (0, 2));
    assert_eq!(
        slack.received().len(),
        1,
        "200 with a body other than ok is permanent"
    );
    assert_eq!(
        http.received().len(),
        3,
        "503 is retried up to max_attempts"
    );

    let dead = h.dead_letters().await;
    assert_eq!(dead.len(), 2);
    let slack_dead = dead
        .iter()
        .find(|d| d.delivery.destination == "slack-1")
        .unwrap();
    assert_eq!(slack_dead.attempts.len(), 1);
    assert_eq!(slack_dead.attempts[0].outcome, "permanent");
    assert!(
        slack_dead.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("invalid_payload")
    );
    let http_dead = dead
        .iter()
        .find(|d| d.delivery.destination == "crm")
        .unwrap();
    let statuses: Vec<_> = http_dead
        .attempts
        .iter()
        .map(|a| (a.attempt, a.status))
        .collect();
    assert_eq!(statuses, [(1, Some(503)), (2, Some(503)), (3, Some(503))]);
    for attempt in &http_dead.attempts {
        let error = attempt.error.as_deref().unwrap();
        assert!(
            !error.contains(&http.url),
            "no destination URL in records: {error}"
        );
    }

    // A 404 is permanent at once.
    let (slack2, http2) = (Receiver::start().await, Receiver::start().await);
    let h2 = Harness::new(&slack2, &http2);
    http2.set_default(Reply::Status(404, "no such hook".into()));
    h2.post_alert("{\"plain\":1}").await;
    let stats = h2.relay.worker.run_until_idle().await.unwrap();
    assert_eq!((stats.delivered, stats.dead), (1, 1));
    assert_eq!(http2.received().len(), 1);
}

#[tokio::test]
async fn replay_delivers_dead_letters_again_filtered_by_route_and_time() {
    let (slack, http) = (Receiver::start().await, Receiver::start().await);
    let h = Harness::new(&slack, &http);
    http.set_default(Reply::Status(400, "bad".into()));
    h.post_alert(r#"{"n":1}"#).await;
    h.relay.worker.run_until_idle().await.unwrap();
    assert_eq!(h.counts().await.dead, 1);

    http.set_default(Reply::Ok);
    let other_route = DeadLetterFilter {
        route: Some("basic".into()),
        since_ms: None,
    };
    assert_eq!(
        h.queue
            .requeue_dead(&other_route, h.clock.now_ms())
            .await
            .unwrap(),
        0
    );
    let later = DeadLetterFilter {
        route: Some("alerts".into()),
        since_ms: Some(START_MS + 1),
    };
    assert_eq!(
        h.queue
            .requeue_dead(&later, h.clock.now_ms())
            .await
            .unwrap(),
        0
    );
    let all = DeadLetterFilter {
        route: Some("alerts".into()),
        since_ms: Some(START_MS),
    };
    assert_eq!(
        h.queue.requeue_dead(&all, h.clock.now_ms()).await.unwrap(),
        1
    );
    let stats = h.relay.worker.run_until_idle().await.unwrap();
    assert_eq!(stats.delivered, 1);
    assert_eq!(http.received().len(), 2);
    let counts = h.counts().await;
    assert_eq!((counts.delivered, counts.dead), (2, 0));
}

#[tokio::test]
async fn the_same_payload_twice_within_the_window_is_delivered_once() {
    let (slack, http) = (Receiver::start().await, Receiver::start().await);
    let h = Harness::new(&slack, &http);
    let (_, first) = h.post_alert(CLEVERTAP_SAMPLE).await;
    h.clock.advance(Duration::from_secs(60));
    let (status, second) = h.post_alert(CLEVERTAP_SAMPLE).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "CleverTap's retry still gets its 200"
    );
    assert_eq!(second["status"], "duplicate");
    assert_eq!(second["id"], first["id"]);
    h.relay.worker.run_until_idle().await.unwrap();
    assert_eq!((slack.received().len(), http.received().len()), (1, 1));

    // After the window (default 10 minutes) the same body is a new event.
    h.clock.advance(Duration::from_secs(600));
    let (_, third) = h.post_alert(CLEVERTAP_SAMPLE).await;
    assert_eq!(third["status"], "accepted");
}

#[tokio::test]
async fn nothing_accepted_is_lost_when_a_destination_is_down_across_a_restart() {
    let (slack, http) = (Receiver::start().await, Receiver::start().await);
    slack.set_default(Reply::Status(502, "bad gateway".into()));
    http.set_default(Reply::Status(502, "bad gateway".into()));
    let h = Harness::new(&slack, &http);
    for i in 0..20 {
        let (status, _) = h.post_alert(&format!("{{\"n\":{i}}}")).await;
        assert_eq!(status, StatusCode::OK);
    }
    // One round fails; then the process "crashes" (the relay is dropped). A batch is 32
    // deliveries: the first pass attempts 32 and pauses both destinations, so the second holds
    // the other 8 back (the retries are not due yet).
    let mut stats = h.relay.worker.run_once().await.unwrap();
    stats += h.relay.worker.run_once().await.unwrap();
    assert_eq!(
        (stats.attempts, stats.retried, stats.postponed),
        (32, 32, 8)
    );
    // A payload accepted while both destinations are paused is queued due when the pause
    // ends: the worker does not even take it.
    let (status, _) = h.post_alert(r#"{"n":20}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        h.relay.worker.run_once().await.unwrap(),
        tapline::webhook_relay::delivery::worker::WorkerStats::default()
    );
    let Harness { config, state, .. } = h;

    slack.set_default(Reply::Ok);
    http.set_default(Reply::Ok);
    let restarted = Harness::on_state(config, state);
    let counts = restarted.counts().await;
    assert_eq!(
        (counts.payloads, counts.pending),
        (21, 42),
        "all still queued"
    );
    let stats = restarted.relay.worker.run_until_idle().await.unwrap();
    assert_eq!(stats.delivered, 42);
    let mut seen: Vec<i64> = http
        .received()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter_map(|v| v["n"].as_i64())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, (0..21).collect::<Vec<_>>());
}

#[test]
fn tapline_relay_serve_accepts_delivers_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (slack, http) = rt.block_on(async { (Receiver::start().await, Receiver::start().await) });
    // The HTTP destination is down for the whole run: accepting must not suffer.
    http.set_default(Reply::Status(503, "down".into()));
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("relay.toml");
    std::fs::write(&config_path, config_text("")).unwrap();
    let state_dir = dir.path().join("state");
    let mut child = Command::new(tapline_tests::bin("tapline"))
        .args(["relay", "serve", "--listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(&config_path)
        .arg("--state-dir")
        .arg(&state_dir)
        .env("ALERTS_TOKEN", TOKEN)
        .env("BASIC_PASSWORD", BASIC_PASSWORD)
        .env("SLACK_URL", &slack.url)
        .env("HTTP_URL", &http.url)
        .env("SIGNING_KEY", SIGNING)
        .env_remove("TAPLINE_RELAY_CONFIG")
        .env_remove("TAPLINE_RELAY_STATE_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tapline relay serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("tapline relay listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();

    let accepted = rt.block_on(async {
        let client = reqwest::Client::new();
        let post = |token: &'static str, body: String| {
            client
                .post(format!("{base}/hooks/alerts"))
                .header("X-Tapline-Token", token)
                .body(body)
                .send()
        };
        let mut statuses = Vec::new();
        for i in 0..5 {
            let response = post(TOKEN, format!("{{\"n\":{i}}}")).await.unwrap();
            statuses.push(response.status().as_u16());
        }
        let response = post("wrong", "{}".to_string()).await.unwrap();
        statuses.push(response.status().as_u16());
        // Delivered to Slack while the HTTP destination keeps failing.
        slack.wait_for(5, Duration::from_secs(20)).await;
        statuses
    });
    assert_eq!(accepted, [200, 200, 200, 200, 200, 401]);

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The failing HTTP deliveries are still queued for the next start.
    let queue = SqliteDeliveryQueue::open(&state_dir).unwrap();
    let counts = rt.block_on(queue.counts());
    let counts = counts.unwrap();
    assert_eq!(counts.payloads, 5);
    assert_eq!(counts.delivered, 5);
    assert_eq!(counts.pending + counts.dead, 5, "{counts:?}");
}

/// `tapline relay serve` on a free port over `config_text("")`, with `env` added; with
/// `open_files`, under that limit of open files (`ulimit -n`). The child, its base URL and the
/// directory holding its configuration and state.
fn spawn_relay_serve(
    slack: &Receiver,
    http: &Receiver,
    env: &[(&str, &str)],
    open_files: Option<u32>,
) -> (std::process::Child, String, tempfile::TempDir) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("relay.toml");
    std::fs::write(&config_path, config_text("")).unwrap();
    let tapline = tapline_tests::bin("tapline");
    let mut command = match open_files {
        Some(n) => {
            let mut c = Command::new("bash");
            c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\"")])
                .arg(&tapline);
            c
        }
        None => Command::new(&tapline),
    };
    command
        .args(["relay", "serve", "--listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(&config_path)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("ALERTS_TOKEN", TOKEN)
        .env("BASIC_PASSWORD", BASIC_PASSWORD)
        .env("SLACK_URL", &slack.url)
        .env("HTTP_URL", &http.url)
        .env("SIGNING_KEY", SIGNING)
        .env_remove("TAPLINE_RELAY_CONFIG")
        .env_remove("TAPLINE_RELAY_STATE_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start tapline relay serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("tapline relay listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, base, dir)
}

/// Sends SIGTERM to `child` and waits at most `limit` for it to exit: its status and stderr, or
/// `None` (the child is then killed) when it did not exit in time.
fn terminate_within(
    child: std::process::Child,
    limit: Duration,
) -> Option<(std::process::ExitStatus, String)> {
    let pid = child.id();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => {
            let output = output.unwrap();
            Some((
                output.status,
                String::from_utf8_lossy(&output.stderr).into_owned(),
            ))
        }
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            None
        }
    }
}

/// A complete authenticated POST of `body` to `/hooks/alerts`, keeping the connection open.
fn raw_alert_post(body: &str) -> String {
    format!(
        "POST /hooks/alerts HTTP/1.1\r\nhost: relay\r\nx-tapline-token: {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn an_authenticated_post_is_served_while_300_idle_connections_are_held_under_256_open_files() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (slack, http) = rt.block_on(async { (Receiver::start().await, Receiver::start().await) });
    let (child, base, dir) = spawn_relay_serve(&slack, &http, &[], Some(256));
    let addr = base.trim_start_matches("http://").to_string();
    let answer = rt.block_on(async {
        // Connections that never send a byte: more than the process has descriptors.
        let mut idle = Vec::new();
        for _ in 0..300 {
            idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let answer = client
            .post(format!("{base}/hooks/alerts"))
            .header("X-Tapline-Token", TOKEN)
            .body(CLEVERTAP_SAMPLE)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string());
        drop(idle);
        answer
    });
    let (status, stderr) =
        terminate_within(child, Duration::from_secs(30)).expect("stops on SIGTERM");
    assert_eq!(answer, Ok(200), "{stderr}");
    assert!(status.success(), "{stderr}");
    let queue = SqliteDeliveryQueue::open(&dir.path().join("state")).unwrap();
    let counts = rt.block_on(queue.counts()).unwrap();
    assert_eq!(counts.payloads, 1, "stored once: {counts:?}");
}

#[test]
fn sigterm_stops_tapline_relay_serve_within_the_grace_while_a_request_is_half_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (slack, http) = rt.block_on(async { (Receiver::start().await, Receiver::start().await) });
    // The body deadline far away: only the shutdown grace can end the half-sent request.
    let (child, base, dir) = spawn_relay_serve(
        &slack,
        &http,
        &[
            ("TAPLINE_HTTP_SHUTDOWN_GRACE_SECS", "1"),
            ("TAPLINE_HTTP_REQUEST_TIMEOUT_SECS", "3600"),
        ],
        None,
    );
    let addr = base.trim_start_matches("http://").to_string();
    let mut stream = rt.block_on(async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        // One request answered on this connection, then the next one's head and half its body.
        stream
            .write_all(raw_alert_post(r#"{"n":1}"#).as_bytes())
            .await
            .unwrap();
        let mut answer = vec![0u8; 1024];
        let n = stream.read(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        let half = raw_alert_post(r#"{"n":2,"padding":"0123456789"}"#);
        stream
            .write_all(&half.as_bytes()[..half.len() - 20])
            .await
            .unwrap();
        stream
    });
    let (status, stderr) = terminate_within(child, Duration::from_secs(20))
        .expect("exits within the grace (1 s), not when the client leaves");
    assert!(status.success(), "{stderr}");
    // The half-sent request got no answer: closed with the server.
    let rest = rt.block_on(async {
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
        rest
    });
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        !rest.contains("HTTP/1.1"),
        "no answer to the half-sent request: {rest}"
    );
    let queue = SqliteDeliveryQueue::open(&dir.path().join("state")).unwrap();
    let counts = rt.block_on(queue.counts()).unwrap();
    assert_eq!(counts.payloads, 1, "the answered one is stored: {counts:?}");
}

#[tokio::test]
async fn deliveries_verify_with_the_standard_webhooks_and_svix_libraries() {
    use std::io::Write;
    use tapline::webhook_relay::clock::SystemClock;

    let (slack, http) = (Receiver::start().await, Receiver::start().await);
    // Mid-rotation: the next secret first, the current one still signed with.
    let config = config_signed_with(&slack, &http, "", &format!("{SIGNING_NEXT} {SIGNING}"));
    // The libraries refuse timestamps more than five minutes off: a clock at the real time.
    let h = Harness::on_state_at(config, tempfile::tempdir().unwrap(), SystemClock.now_ms());
    let (status, _) = h.post_alert(CLEVERTAP_SAMPLE).await;
    assert_eq!(status, StatusCode::OK);
    h.relay.worker.run_until_idle().await.unwrap();
    let forwarded = &http.received()[0];
    let headers: serde_json::Map<String, Value> = forwarded
        .headers
        .iter()
        .map(|(name, value)| (name.to_string(), json!(value.to_str().unwrap())))
        .collect();
    let body = std::str::from_utf8(&forwarded.body).unwrap();
    let tampered = body.replace("u-42", "u-43");
    let input = json!({
        "secrets": [SIGNING_NEXT, SIGNING, SIGNING_UNRELATED],
        "deliveries": [
            {"headers": headers, "body": body},
            {"headers": headers, "body": tampered},
        ],
    });
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/verify-standard-webhooks.sh"
    );
    let mut child = std::process::Command::new(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the verifier");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let ok = json!({"standardwebhooks": "ok", "svix": "ok"});
    let refused =
        json!({"standardwebhooks": "WebhookVerificationError", "svix": "WebhookVerificationError"});
    assert_eq!(
        report["results"],
        json!([[ok, ok, refused], [refused, refused, refused]]),
        "both secrets of the rotation verify, an unrelated one and a changed body do not"
    );
}

// --- On AWS: SQS delivery queue (moto) and the worker function's handler -------------------

mod on_aws {
    use super::*;
    use tapline::webhook_relay::clock::SystemClock;
    use tapline::webhook_relay::queue::sqs::{
        DeliveryMessage, SqsAcceptQueue, SqsDeliveryHandler, SqsEvent,
    };
    use tapline::webhook_relay::relay::{destinations, http_client};
    use tapline::webhook_relay::router::accept_router;
    use tapline_tests::servers::sqs;

    async fn post(router: &axum::Router, body: &str) -> (StatusCode, Value) {
        post_hook(router, "alerts", Some(("X-Tapline-Token", TOKEN)), body).await
    }

    fn handler(
        config: &RelayConfig,
        client: aws_sdk_sqs::Client,
        queue: &str,
        dlq: &str,
    ) -> Arc<SqsDeliveryHandler> {
        let http = http_client(config.settings.delivery_timeout).unwrap();
        Arc::new(SqsDeliveryHandler::new(
            destinations(config, &http).unwrap(),
            config.settings.retry.clone(),
            Arc::new(SystemClock),
            client,
            queue,
            dlq,
        ))
    }

    #[tokio::test]
    async fn an_accept_is_an_sqs_message_per_destination_and_failures_come_back_after_the_backoff()
    {
        let (slack, http) = (Receiver::start().await, Receiver::start().await);
        http.script([Reply::Status(503, "down".into())]);
        let config = config(&slack, &http, "");
        let client = sqs::client().await;
        let (queue, dlq) = sqs::queue_with_dead_letters(&client, "relay-accept", 3).await;
        let router = accept_router(
            &config,
            Arc::new(SqsAcceptQueue::new(client.clone(), &queue)),
            Arc::new(SystemClock),
        );
        let (status, answer) = post(&router, CLEVERTAP_SAMPLE).await;
        assert_eq!(
            (status, &answer["status"]),
            (StatusCode::OK, &json!("accepted"))
        );
        assert!(
            slack.received().is_empty() && http.received().is_empty(),
            "nothing delivered on accept"
        );

        let messages = sqs::receive(&client, &queue, 2, Duration::from_secs(10)).await;
        assert_eq!(messages.len(), 2, "one message per destination");
        let bodies: Vec<DeliveryMessage> = messages
            .iter()
            .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
            .collect();
        assert!(
            bodies
                .iter()
                .all(|b| b.payload_id == answer["id"] && b.body == CLEVERTAP_SAMPLE)
        );

        let worker = handler(&config, client.clone(), &queue, &dlq);
        let event: SqsEvent = serde_json::from_value(sqs::lambda_event(&messages)).unwrap();
        let response = worker.handle(event).await;
        let failed = sqs::settle_batch(&client, &queue, &messages, &response).await;
        let crm = messages
            .iter()
            .zip(&bodies)
            .find(|(_, b)| b.destination == "crm")
            .map(|(m, _)| m.message_id().unwrap().to_string())
            .unwrap();
        assert_eq!(
            failed,
            std::slice::from_ref(&crm),
            "only the 503 is retried: {response}"
        );
        assert_eq!(slack.received().len(), 1, "Slack delivered");

        // Its visibility was set to the backoff (1 s here), not the queue's 30 s.
        let again = sqs::receive(&client, &queue, 1, Duration::from_secs(10)).await;
        assert_eq!(again[0].message_id(), Some(crm.as_str()));
        let event: SqsEvent = serde_json::from_value(sqs::lambda_event(&again)).unwrap();
        assert_eq!(event.records[0].attributes["ApproximateReceiveCount"], "2");
        let response = worker.handle(event).await;
        assert!(
            sqs::settle_batch(&client, &queue, &again, &response)
                .await
                .is_empty()
        );
        let received = http.received();
        assert_eq!(received.len(), 2);
        assert_eq!(
            received[0].headers["idempotency-key"],
            received[1].headers["idempotency-key"]
        );
        let header = |name: &str| received[1].headers[name].to_str().unwrap().to_string();
        assert!(SigningKeys::parse(SIGNING).unwrap().verify(
            &header("webhook-id"),
            header("webhook-timestamp").parse().unwrap(),
            &received[1].body,
            &header("webhook-signature"),
        ));
    }

    #[tokio::test]
    async fn a_permanent_failure_goes_to_the_dead_letter_queue_with_its_attempt() {
        let (slack, http) = (Receiver::start().await, Receiver::start().await);
        http.set_default(Reply::Status(404, "no such hook".into()));
        let config = config(&slack, &http, "");
        let client = sqs::client().await;
        let (queue, dlq) = sqs::queue_with_dead_letters(&client, "relay-dead", 3).await;
        let router = accept_router(
            &config,
            Arc::new(SqsAcceptQueue::new(client.clone(), &queue)),
            Arc::new(SystemClock),
        );
        post(&router, r#"{"n":1}"#).await;
        let messages = sqs::receive(&client, &queue, 2, Duration::from_secs(10)).await;
        let worker = handler(&config, client.clone(), &queue, &dlq);
        // With a message that is not a delivery: it is reported failed (the redrive policy
        // dead-letters it), never deleted.
        let mut event = sqs::lambda_event(&messages);
        let mut junk = event["Records"][0].clone();
        junk["messageId"] = json!("junk");
        junk["body"] = json!("not a delivery");
        event["Records"].as_array_mut().unwrap().push(junk);
        let response = worker.handle(serde_json::from_value(event).unwrap()).await;
        assert_eq!(
            sqs::settle_batch(&client, &queue, &messages, &response).await,
            ["junk"],
            "{response}"
        );
        let dead = sqs::receive(&client, &dlq, 1, Duration::from_secs(10)).await;
        let letter: DeliveryMessage = serde_json::from_str(dead[0].body().unwrap()).unwrap();
        assert_eq!(letter.destination, "crm");
        assert_eq!(letter.body, r#"{"n":1}"#);
        let record = letter.dead.unwrap();
        assert_eq!(
            (record.attempt, record.status, record.outcome.as_str()),
            (1, Some(404), "permanent")
        );
        assert!(record.error.unwrap().contains("no such hook"));
    }

    #[tokio::test]
    async fn route_secrets_come_from_secrets_manager_by_arn() {
        let (slack, http) = (Receiver::start().await, Receiver::start().await);
        let arn = tapline_tests::servers::s3::create_secret(
            &format!("relay/ALERTS_TOKEN-{}", std::process::id()),
            &format!("{TOKEN}\n"),
        )
        .await;
        let env: HashMap<&str, String> = HashMap::from([
            ("TAPLINE_RELAY_CONFIG_TOML", config_text("")),
            (
                "TAPLINE_RELAY_SECRET_ARNS",
                json!({ "ALERTS_TOKEN": arn }).to_string(),
            ),
            ("BASIC_PASSWORD", BASIC_PASSWORD.to_string()),
            ("SLACK_URL", slack.url.clone()),
            ("HTTP_URL", http.url.clone()),
            ("SIGNING_KEY", SIGNING.to_string()),
        ]);
        let config = tapline::webhook_relay::env_config::relay_config(
            tapline::webhook_relay::config::ConfigMode::Both,
            |name| env.get(name).cloned(),
        )
        .await
        .unwrap();
        let tapline::webhook_relay::config::RouteAuth::Header { secret, .. } =
            &config.route("alerts").unwrap().auth
        else {
            panic!("header auth")
        };
        assert_eq!(
            secret.expose(),
            TOKEN,
            "read from the secret, line break dropped"
        );

        let mut missing = env.clone();
        missing.insert(
            "TAPLINE_RELAY_SECRET_ARNS",
            json!({ "ALERTS_TOKEN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope" })
                .to_string(),
        );
        let err = tapline::webhook_relay::env_config::relay_config(
            tapline::webhook_relay::config::ConfigMode::Both,
            |name| missing.get(name).cloned(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}

// --- CleverTap upload destination ---------------------------------------------------------

const SUBS_CONFIG: &str = r#"
[settings]
max_attempts = 3
backoff_base_ms = 10

[[routes]]
name = "subs"
auth = { header = "X-Tapline-Token", secret_env = "ALERTS_TOKEN" }
[[routes.destinations]]
type = "clevertap"
account_id_env = "CT_ACCOUNT"
passcode_env = "CT_PASSCODE"
url_env = "CT_UPLOAD_URL"
identity = "data.customer_id"
timestamp = "created_at"
[[routes.destinations.records]]
when = { field = "type", equals = "subscription.renewed" }
event = "Subscription Renewed"
properties = { plan = "data.plan", amount = "data.amount" }
[[routes.destinations.records]]
when = { field = "type", equals = "subscription.cancelled" }
profile = true
properties = { "Subscription Status" = "data.status" }
"#;

#[tokio::test]
async fn subscription_webhooks_become_clevertap_uploads_and_unprocessed_records_are_dead_letters() {
    use tapline_tests::doubles::clevertap_upload::CleverTapUpload;
    let clevertap = CleverTapUpload::start("ACC-1", "pass-2").await;
    let env: HashMap<&str, String> = HashMap::from([
        ("ALERTS_TOKEN", TOKEN.to_string()),
        ("CT_ACCOUNT", "ACC-1".to_string()),
        ("CT_PASSCODE", "pass-2".to_string()),
        ("CT_UPLOAD_URL", clevertap.url.clone()),
    ]);
    let config = RelayConfig::parse("subs", SUBS_CONFIG, |v| env.get(v).cloned()).unwrap();
    let state = tempfile::tempdir().unwrap();
    let h = Harness::on_state(config, state);
    let renewal = r#"{"type":"subscription.renewed","created_at":1795860000,"data":{"customer_id":"u-42","plan":"gold","amount":9.5}}"#;
    let cancel =
        r#"{"type":"subscription.cancelled","data":{"customer_id":"u-7","status":"cancelled"}}"#;
    let refused = r#"{"type":"subscription.renewed","data":{"customer_id":"u-bad","plan":"x"}}"#;
    let unmapped = r#"{"type":"invoice.paid","data":{"customer_id":"u-42"}}"#;
    clevertap.refuse_identity("u-bad");
    for body in [renewal, cancel, refused, unmapped] {
        let (status, _) = h.post("subs", Some(("X-Tapline-Token", TOKEN)), body).await;
        assert_eq!(status, StatusCode::OK);
    }
    let stats = h.relay.worker.run_until_idle().await.unwrap();
    assert_eq!(
        (stats.delivered, stats.dead, stats.retried),
        (2, 2, 0),
        "{stats:?}"
    );
    assert!(
        clevertap.refusals().is_empty(),
        "requests in the documented shape: {:?}",
        clevertap.refusals()
    );
    let records = clevertap.records();
    assert_eq!(records.len(), 2);
    assert_eq!(
        records[0],
        json!({"identity":"u-42","ts":1_795_860_000,"type":"event","evtName":"Subscription Renewed",
               "evtData":{"amount":9.5,"plan":"gold"}})
    );
    assert_eq!(records[1]["type"], "profile");
    assert_eq!(
        records[1]["profileData"],
        json!({"Subscription Status":"cancelled"})
    );
    assert_eq!(
        records[1]["ts"],
        START_MS / 1000,
        "no timestamp field: the time it was received"
    );

    // Not dropped: both are dead letters saying why.
    let dead = h.dead_letters().await;
    let errors: Vec<String> = dead
        .iter()
        .map(|d| d.attempts[0].error.clone().unwrap_or_default())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("1 of 1 record(s) unprocessed") && e.contains("512")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("no mapping rule")),
        "{errors:?}"
    );
    assert!(
        dead.iter()
            .all(|d| d.attempts.len() == 1 && d.attempts[0].outcome == "permanent")
    );
    assert!(
        !errors.concat().contains("pass-2"),
        "the passcode is never recorded"
    );
}
