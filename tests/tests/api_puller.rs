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
use tapline_tests::clevertap_api::{ClevertapApi, MessageDay, event_records, message_record};

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

    // Message reports as a job: the ready day written, the one not ready yet is no failure.
    api.set_message_day(
        20220922,
        MessageDay::Ready(vec![message_record(1663800001, "Sale", "Push", 82, 40, 28)]),
    );
    api.set_message_day(20220923, MessageDay::NotCompleted);
    let messages =
        json!({"tapline": "pull", "from": "2022-09-22", "to": "2022-09-23", "jobs": ["messages"]});
    let summary = handle_pull_payload(&messages, &client, warehouse.clone(), &jobs, now)
        .await
        .unwrap();
    assert_eq!(
        summary["results"],
        json!({"messages": {"days": 1, "rows": 1, "not_ready": 1}})
    );
    assert_eq!(
        count(
            warehouse.as_ref(),
            "SELECT clicked FROM message_reports WHERE day = '2022-09-22'"
        )
        .await,
        "28"
    );

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

/// A running `tapline relay serve` with one route, `alerts` (header token), delivering to the
/// Slack double; stopped with SIGTERM when dropped.
struct RelayProcess {
    child: std::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

const RELAY_TOKEN: &str = "alerts-token-789";

impl RelayProcess {
    async fn start(slack_url: &str) -> Self {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("relay.toml");
        std::fs::write(
            &config,
            r#"
[settings]
max_attempts = 4
backoff_base_ms = 10
backoff_max_secs = 1
delivery_timeout_secs = 2

[[routes]]
name = "alerts"
auth = { header = "X-Tapline-Token", secret_env = "ALERTS_TOKEN" }
[[routes.destinations]]
type = "slack"
url_env = "SLACK_URL"
"#,
        )
        .unwrap();
        let mut child = Command::new(tapline_tests::bin("tapline"))
            .args(["relay", "serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .env("ALERTS_TOKEN", RELAY_TOKEN)
            .env("SLACK_URL", slack_url)
            .env_remove("TAPLINE_RELAY_CONFIG")
            .env_remove("TAPLINE_RELAY_STATE_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tapline relay serve");
        let stdout = child.stdout.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            line
        })
        .await
        .unwrap();
        let base = line
            .trim()
            .strip_prefix("tapline relay listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Self {
            child,
            base,
            _dir: dir,
        }
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// `TAPLINE_PULL_JOBS=alerts,events,counts`: the alerts job runs after the counts whatever
/// the order, checks yesterday against `TAPLINE_ALERT_RULES`, and posts each breach to a real
/// `tapline relay serve` route; the relay's Slack destination delivers it (after retrying
/// Slack's 500) with the figures. A relay that refuses the token fails the invocation and
/// records `notified = failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_breaches_reach_slack_through_the_webhook_relay() {
    use tapline::pull::alert_notifiers::alert_notifier_from_lookup;
    use tapline_tests::receiver::{Receiver, Reply};

    let api = ClevertapApi::start().await;
    for day in 20220915..=20220922 {
        api.set_events("Charged", day, event_records(day, 100));
    }
    api.set_events("Charged", 20220923, event_records(20220923, 12));
    let dir = tempfile::tempdir().unwrap();
    let warehouse: Arc<dyn Warehouse> = Arc::new(
        SqliteWarehouse::open(dir.path().join("w.sqlite"), Journal::Rollback)
            .await
            .unwrap(),
    );
    let client = ClevertapClient::new(ApiConfig::from_lookup(lookup(api.env())).unwrap()).unwrap();
    let slack = Receiver::start().await;
    slack.script([Reply::Status(500, "internal_error".into())]);
    let relay = RelayProcess::start(&slack.url).await;
    let route = format!("{}/hooks/alerts", relay.base);

    let rules = r#"[{"name": "charged-floor", "event": "Charged", "when": "below", "count": 50},
        {"name": "charged-drop", "event": "Charged", "when": "below_trailing_mean", "percent": 40, "days": 7},
        {"name": "launch-floor", "event": "App Launched", "when": "below", "count": 10}]"#;
    let jobs_with = |token: &str| {
        let (route, token) = (route.clone(), token.to_string());
        async move {
            let notifier = alert_notifier_from_lookup(lookup(vec![
                ("TAPLINE_ALERTS_RELAY_URL", route),
                ("TAPLINE_ALERTS_RELAY_TOKEN", token),
            ]))
            .await
            .unwrap();
            assert!(notifier.is_some());
            PullJobs::from_lookup(lookup(vec![
                ("TAPLINE_PULL_EVENTS", "Charged".into()),
                ("TAPLINE_PULL_JOBS", "alerts,events,counts".into()),
                ("TAPLINE_PULL_LOOKBACK_DAYS", "9".into()),
                ("TAPLINE_ALERT_RULES", rules.into()),
            ]))
            .unwrap()
            .with_notifier(notifier)
        }
    };
    // Noon UTC on the 24th: yesterday is the 23rd; the lookback counts the 15th to the 23rd.
    let now: jiff::Timestamp = "2022-09-24T12:00:00Z".parse().unwrap();
    let pull = json!({"tapline": "pull"});

    let jobs = jobs_with(RELAY_TOKEN).await;
    let summary = handle_pull_payload(&pull, &client, warehouse.clone(), &jobs, now)
        .await
        .unwrap();
    assert_eq!(summary["jobs"], json!(["events", "counts", "alerts"]));
    assert_eq!(
        summary["results"]["alert charged-floor 2022-09-23"],
        json!({"status": "breached", "count": 12, "notified": true})
    );
    assert_eq!(
        summary["results"]["alert charged-drop 2022-09-23"],
        json!({"status": "breached", "count": 12, "notified": true})
    );
    // App Launched is counted for its rule (zero records: a count of 0, below 10).
    assert_eq!(summary["results"]["count App Launched 2022-09-23"], 0);

    // Three breaches (App Launched counted 0): Slack's 500 is retried by the relay, so four
    // posts.
    let posts = slack.wait_for(4, std::time::Duration::from_secs(30)).await;
    let delivered: Vec<String> = posts
        .iter()
        .map(|p| {
            let message: serde_json::Value = serde_json::from_slice(&p.body).unwrap();
            message["blocks"][1]["text"]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let floor = delivered
        .iter()
        .find(|t| t.contains("charged-floor"))
        .expect("the floor breach reached Slack");
    for figure in [
        "\"count\": 12",
        "\"baseline\": 50.0",
        "\"day\": \"2022-09-23\"",
        "Tapline alert: Charged on 2022-09-23 was 12, below 50 (rule charged-floor).",
    ] {
        assert!(floor.contains(figure), "{figure} in {floor}");
    }
    // The relay's Slack message is headed by the alert's sentence, not "Webhook on route".
    let headlines: Vec<String> = posts
        .iter()
        .map(|p| {
            let message: serde_json::Value = serde_json::from_slice(&p.body).unwrap();
            message["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(
        headlines.contains(
            &"Tapline alert: Charged on 2022-09-23 was 12, below 50 (rule charged-floor).".into()
        ),
        "{headlines:?}"
    );
    let drop = delivered
        .iter()
        .find(|t| t.contains("charged-drop"))
        .expect("the drop breach reached Slack");
    assert!(
        drop.contains("88.0% below its trailing 7-day mean of 100.0"),
        "{drop}"
    );
    let notified = |rule: &'static str| {
        let warehouse = warehouse.clone();
        async move {
            count(
                warehouse.as_ref(),
                &format!("SELECT notified FROM alert_runs WHERE rule = '{rule}'"),
            )
            .await
        }
    };
    assert_eq!(notified("charged-floor").await, "yes");
    assert_eq!(notified("launch-floor").await, "yes");

    // A relay that refuses the token: the invocation fails (the Scheduler retries it).
    let jobs = jobs_with("wrong-token").await;
    let backfill = json!({"tapline": "pull", "jobs": ["alerts"]});
    let err = handle_pull_payload(&backfill, &client, warehouse.clone(), &jobs, now)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PullInvocationError::Failed {
                failed: 3,
                total: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("not posted: the relay answered HTTP 401"),
        "{err}"
    );
    assert_eq!(notified("charged-floor").await, "failed");
    assert_eq!(slack.received().len(), 4, "nothing more reached Slack");
}
