//! The scheduled API pull (what `functions/api-puller` runs per invocation): the configured
//! jobs over a window ending yesterday in the project's time zone, against the CleverTap double
//! and a SQLite warehouse, through `handle_pull_payload` as the Lambda handler calls it; and the
//! built binary under `cargo lambda watch` with PostgreSQL, moto's Secrets Manager and a real
//! `tapline relay serve` for its alerts.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use tapline::api_puller::jobs::{PullInvocationError, PullJobs, handle_pull_payload};
use tapline::clevertap::{ApiConfig, ClevertapClient};
use tapline::warehouse::Warehouse;
use tapline::warehouse::sqlite::{Journal, SqliteWarehouse};
use tapline_tests::doubles::clevertap_api::{
    ClevertapApi, MessageDay, event_records, message_record,
};
use tapline_tests::doubles::receiver::Received;
use tapline_tests::servers::lambda_emulator::LambdaEmulator;
use tapline_tests::servers::pg::PgSchema;
use tapline_tests::servers::s3::{create_secret, moto};

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

/// The `api-puller` binary under cargo-lambda's runtime API emulator, configured as
/// `infra/aws` deploys it: the passcode from a moto Secrets Manager secret, the CleverTap
/// double, PostgreSQL `schema`, Asia/Kolkata, pulling Charged; `extra` adds variables or
/// overrides these.
async fn puller_under_cargo_lambda_watch(
    api: &ClevertapApi,
    schema: &PgSchema,
    extra: &[(&str, &str)],
) -> LambdaEmulator {
    use tapline_tests::doubles::clevertap_api::{ACCOUNT, PASSCODE};
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
    let mut env = vec![
        ("CLEVERTAP_ACCOUNT_ID", ACCOUNT),
        ("CLEVERTAP_PASSCODE_SECRET_ARN", secret.as_str()),
        ("CLEVERTAP_API_URL", api_url.as_str()),
        ("CLEVERTAP_BACKOFF_MS", "1"),
        ("TAPLINE_WAREHOUSE", url.as_str()),
        ("TAPLINE_TIMEZONE", "Asia/Kolkata"),
        ("TAPLINE_PULL_EVENTS", "Charged"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
    ];
    // The emulator sets variables in order: a later one wins.
    env.extend_from_slice(extra);
    LambdaEmulator::start("api-puller", &env).await
}

/// The deployed binary: `functions/api-puller` under cargo-lambda's runtime API emulator,
/// configured as `infra/aws` deploys it (passcode in Secrets Manager, PostgreSQL), invoked with
/// the Scheduler payload plus an explicit window; the passcode never reaches its logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_binary_pulls_under_cargo_lambda_watch() {
    use tapline_tests::doubles::clevertap_api::PASSCODE;

    let api = ClevertapApi::start().await;
    api.set_events("Charged", 20220922, event_records(20220922, 12));
    api.set_events("Charged", 20220923, event_records(20220923, 7));
    let schema = PgSchema::new("puller_watch");
    let lambda = puller_under_cargo_lambda_watch(&api, &schema, &[]).await;
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
    assert_eq!(body["errorType"], "InvalidPullSettings", "{body}");

    let logs = lambda.stop().await;
    assert!(logs.contains("API puller initialised."), "{logs}");
    assert!(
        !logs.contains(PASSCODE),
        "the passcode never reaches a log: {logs}"
    );
}

/// A running `tapline relay serve` with one route, `alerts` (its token in a header), delivering
/// to the Slack double; stopped with SIGTERM when dropped.
struct RelayProcess {
    child: std::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

const RELAY_TOKEN: &str = "alerts-token-789-0123456789abcdef012";

impl RelayProcess {
    /// Starts the relay; the `alerts` route takes [`RELAY_TOKEN`] in `header`.
    async fn start(slack_url: &str, header: &str) -> Self {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
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
auth = { header = "HEADER", secret_env = "ALERTS_TOKEN" }
[[routes.destinations]]
type = "slack"
url_env = "SLACK_URL"
"#
            .replace("HEADER", header),
        )
        .unwrap();
        let mut child = tapline_tests::tapline_command()
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

/// Three alert rules on the 23rd: a floor of 50 and a 40% drop from the trailing 7-day mean
/// for Charged, and a floor of 10 for App Launched (which [`serve_a_drop_on_the_23rd`] never
/// serves: a count of 0).
const ALERT_RULES: &str = r#"[{"name": "charged-floor", "event": "Charged", "when": "below", "count": 50},
    {"name": "charged-drop", "event": "Charged", "when": "below_trailing_mean", "percent": 40, "days": 7},
    {"name": "launch-floor", "event": "App Launched", "when": "below", "count": 10}]"#;

/// Charged: 100 records a day from the 15th to the 22nd, then 12 on the 23rd (so every rule
/// of [`ALERT_RULES`] breaches on the 23rd).
fn serve_a_drop_on_the_23rd(api: &ClevertapApi) {
    for day in 20220915..=20220922 {
        api.set_events("Charged", day, event_records(day, 100));
    }
    api.set_events("Charged", 20220923, event_records(20220923, 12));
}

/// The Slack posts the relay made for the breaches of [`ALERT_RULES`] carry the alert's
/// sentence as the headline and its figures in the body.
fn assert_breaches_reached_slack(posts: &[Received]) {
    let messages: Vec<serde_json::Value> = posts
        .iter()
        .map(|p| serde_json::from_slice(&p.body).unwrap())
        .collect();
    let delivered: Vec<&str> = messages
        .iter()
        .map(|m| m["blocks"][1]["text"]["text"].as_str().unwrap())
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
    let headlines: Vec<&str> = messages
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert!(
        headlines.contains(
            &"Tapline alert: Charged on 2022-09-23 was 12, below 50 (rule charged-floor)."
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
}

/// `TAPLINE_PULL_JOBS=alerts,events,counts`: the alerts job runs after the counts whatever
/// the order, checks yesterday against `TAPLINE_ALERT_RULES`, and posts each breach to a real
/// `tapline relay serve` route; the relay's Slack destination delivers it (after retrying
/// Slack's 500) with the figures. A relay that refuses the token fails the invocation and
/// records `notified = failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_breaches_reach_slack_through_the_webhook_relay() {
    use tapline::api_puller::alert_notifiers::alert_notifier_from_lookup;
    use tapline_tests::doubles::receiver::{Receiver, Reply};

    let api = ClevertapApi::start().await;
    serve_a_drop_on_the_23rd(&api);
    let dir = tempfile::tempdir().unwrap();
    let warehouse: Arc<dyn Warehouse> = Arc::new(
        SqliteWarehouse::open(dir.path().join("w.sqlite"), Journal::Rollback)
            .await
            .unwrap(),
    );
    let client = ClevertapClient::new(ApiConfig::from_lookup(lookup(api.env())).unwrap()).unwrap();
    let slack = Receiver::start().await;
    slack.script([Reply::Status(500, "internal_error".into())]);
    let relay = RelayProcess::start(&slack.url, "X-Tapline-Token").await;
    let route = format!("{}/hooks/alerts", relay.base);

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
                ("TAPLINE_ALERT_RULES", ALERT_RULES.into()),
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
    assert_breaches_reached_slack(&posts);
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

/// The deployed binary running the alerts job: `api-puller` under `cargo lambda watch` with
/// `TAPLINE_PULL_JOBS=events,counts,alerts`, rules that breach on the 23rd, and breaches posted
/// to a real `tapline relay serve` route under a header of its own
/// (`TAPLINE_ALERTS_RELAY_HEADER`) with the route's token read from Secrets Manager
/// (`TAPLINE_ALERTS_RELAY_TOKEN_SECRET_ARN`, on moto), as `infra/aws` deploys it. The relay's
/// Slack destination delivers every breach with its figures; the invocation's summary lists the
/// jobs and says each breach was notified; the token never reaches the function's logs, even at
/// debug level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_binary_posts_alert_breaches_through_the_relay_under_cargo_lambda_watch() {
    use tapline_tests::doubles::receiver::Receiver;

    let api = ClevertapApi::start().await;
    serve_a_drop_on_the_23rd(&api);
    let schema = PgSchema::new("puller_alerts_watch");
    let slack = Receiver::start().await;
    let header = "X-Alerts-Key";
    let relay = RelayProcess::start(&slack.url, header).await;
    let route = format!("{}/hooks/alerts", relay.base);
    let token_secret = create_secret(
        &format!("tapline-alerts-token-{}", std::process::id()),
        RELAY_TOKEN,
    )
    .await;
    let lambda = puller_under_cargo_lambda_watch(
        &api,
        &schema,
        &[
            ("TAPLINE_PULL_JOBS", "events,counts,alerts"),
            ("TAPLINE_ALERT_RULES", ALERT_RULES),
            ("TAPLINE_ALERTS_RELAY_URL", route.as_str()),
            ("TAPLINE_ALERTS_RELAY_HEADER", header),
            (
                "TAPLINE_ALERTS_RELAY_TOKEN_SECRET_ARN",
                token_secret.as_str(),
            ),
            ("TAPLINE_LOG", "debug"),
        ],
    )
    .await;

    // The Scheduler's payload with an explicit window (the default one ends on the real
    // yesterday): the week before the 23rd is pulled and counted, then the 23rd is checked.
    let (status, body) = lambda
        .invoke(&json!({"tapline": "pull", "from": "2022-09-15", "to": "2022-09-23"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["jobs"],
        json!(["events", "counts", "alerts"]),
        "{body}"
    );
    assert_eq!(
        body["results"]["events Charged 2022-09-23"]["rows"], 12,
        "{body}"
    );
    assert_eq!(body["results"]["count Charged 2022-09-22"], 100, "{body}");
    for rule in ["charged-floor", "charged-drop"] {
        assert_eq!(
            body["results"][format!("alert {rule} 2022-09-23")],
            json!({"status": "breached", "count": 12, "notified": true}),
            "{body}"
        );
    }
    assert_eq!(
        body["results"]["alert launch-floor 2022-09-23"],
        json!({"status": "breached", "count": 0, "notified": true}),
        "{body}"
    );

    // The relay took the three breaches at once; its Slack destination delivers them.
    let posts = slack.wait_for(3, std::time::Duration::from_secs(30)).await;
    assert_breaches_reached_slack(&posts);
    assert!(
        posts
            .iter()
            .all(|p| !String::from_utf8_lossy(&p.body).contains(RELAY_TOKEN)),
        "the token is not forwarded to Slack"
    );
    assert_eq!(
        schema.psql("SELECT rule, notified FROM alert_runs ORDER BY rule"),
        "charged-drop|yes\ncharged-floor|yes\nlaunch-floor|yes"
    );

    let logs = lambda.stop().await;
    assert!(logs.contains("API puller initialised."), "{logs}");
    assert!(logs.contains("\"alert_rules\":3"), "{logs}");
    let leaks: Vec<&str> = logs.lines().filter(|l| l.contains(RELAY_TOKEN)).collect();
    assert!(
        leaks.is_empty(),
        "the relay token reached the logs: {leaks:?}"
    );
}

/// The `reconcile` job runs after `counts`, whatever the listed order: a day CleverTap counts
/// and nothing arrived for is alerted once (Slack), a day less than a day old is late, and the
/// next invocation posts nothing new for the same status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconcile_job_alerts_a_day_with_nothing_once() {
    use tapline::api_puller::alert_notifiers::alert_notifier_from_lookup;
    use tapline_tests::doubles::receiver::Receiver;

    let api = ClevertapApi::start().await;
    api.set_events("Charged", 20220923, event_records(20220923, 7));
    api.set_events("Charged", 20220924, event_records(20220924, 3));
    let dir = tempfile::tempdir().unwrap();
    let warehouse: Arc<dyn Warehouse> = Arc::new(
        SqliteWarehouse::open(dir.path().join("w.sqlite"), Journal::Rollback)
            .await
            .unwrap(),
    );
    let client = ClevertapClient::new(ApiConfig::from_lookup(lookup(api.env())).unwrap()).unwrap();
    let slack = Receiver::start().await;
    let notifier = alert_notifier_from_lookup(lookup(vec![(
        "TAPLINE_ALERTS_SLACK_URL",
        slack.url.clone(),
    )]))
    .await
    .unwrap();
    let jobs = PullJobs::from_lookup(lookup(vec![
        ("TAPLINE_TIMEZONE", "Asia/Kolkata".into()),
        ("TAPLINE_PULL_EVENTS", "Charged".into()),
        ("TAPLINE_PULL_JOBS", "reconcile,counts".into()),
        ("TAPLINE_PULL_LOOKBACK_DAYS", "2".into()),
    ]))
    .unwrap()
    .with_notifier(notifier);
    // 01:30 on the 25th in Kolkata: the 24th ended 90 minutes ago (late), the 23rd a day before.
    let now: jiff::Timestamp = "2022-09-24T20:00:00Z".parse().unwrap();
    let pull = json!({"tapline": "pull"});
    let summary = handle_pull_payload(&pull, &client, warehouse.clone(), &jobs, now)
        .await
        .unwrap();
    assert_eq!(summary["jobs"], json!(["counts", "reconcile"]));
    assert_eq!(
        summary["results"]["reconcile Charged 2022-09-23"],
        json!({"status": "no export", "detail": "no export: CleverTap counts 7, nothing arrived",
               "rows": 0, "clevertap": 7})
    );
    assert_eq!(
        summary["results"]["reconcile"],
        json!({"days": 2, "complete_or_late": 1, "alerted": 1})
    );
    assert_eq!(
        slack.texts(),
        [
            "Tapline alert: Charged on 2022-09-23 is not complete: no export: CleverTap counts 7, \
          nothing arrived"
        ]
    );
    let again = handle_pull_payload(&pull, &client, warehouse.clone(), &jobs, now)
        .await
        .unwrap();
    assert_eq!(again["results"]["reconcile"]["alerted"], 0);
    assert_eq!(slack.texts().len(), 1);
    assert_eq!(
        count(
            warehouse.as_ref(),
            "SELECT status || ' ' || notified FROM _tapline_completeness WHERE day = '2022-09-23'"
        )
        .await,
        "no export yes"
    );
}
