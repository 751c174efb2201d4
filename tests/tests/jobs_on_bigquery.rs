//! BigQuery end to end: `tapline load|status|query|pull --warehouse bigquery://…`.
//! Loads, a rewritten export, status, query and the puller run on two targets (`on_double::*`
//! and `on_bqemulator::*`): our REST double (`tapline_tests::doubles::bigquery`) and bqemulator, a
//! third-party emulator that `make test` starts. The other tests need what only the double can
//! do and run on it alone: the faults BigQuery documents (duplicate job ids, quota and rate
//! limits, 5xx, jobs that run for a while, jobs that fail with row errors), a missing dataset,
//! missing credentials, and a token that must never reach a log.

use std::path::Path;

use tapline::google_auth::GoogleAuth;
use tapline::warehouse::bigquery::BigQueryWarehouse;
use tapline::warehouse::{Begin, Checkpoints, Committed, LoadLedger, SqlQuery};
use tapline_tests::doubles::bigquery::target::BigQueryTarget;
use tapline_tests::doubles::bigquery::{BigQueryDouble, JobFault, QueryAnswerFault};
use tapline_tests::doubles::clevertap_api::ClevertapApi;
use tapline_tests::{Run, export_csv};

const PROJECT: &str = "acme-analytics";
const CHARGED: &str = "1663664837-1663785000-Charged-20220921-0-0.csv";
const LAUNCHED: &str = "1663664837-1663785000-App Launched-20220921-0-0.csv";

/// `tapline` as a user runs it against the double, off the test's runtime threads.
async fn tapline(endpoint: &str, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut command = tapline_tests::tapline_command();
    command
        .args(args)
        .env("BIGQUERY_ENDPOINT", endpoint)
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS");
    for (k, v) in env {
        command.env(k, v);
    }
    tokio::task::spawn_blocking(move || command.output().expect("run tapline").into())
        .await
        .expect("join")
}

/// `tapline load DIR --warehouse bigquery://PROJECT/clevertap`.
async fn load_dir(double: &BigQueryDouble, dir: &Path) -> Run {
    let path = dir.display().to_string();
    let args = ["load", &path, "--warehouse", &url("clevertap")];
    tapline(&double.endpoint, &[], &args).await
}

fn exports(dir: &Path) -> String {
    std::fs::write(dir.join(CHARGED), export_csv("Charged", 3)).unwrap();
    std::fs::write(dir.join(LAUNCHED), export_csv("App Launched", 2)).unwrap();
    dir.display().to_string()
}

/// `tapline` with the CleverTap double's environment, writing to the BigQuery double with no
/// credentials (as [`tapline`] runs it).
fn pulling(api: &ClevertapApi, double: &BigQueryDouble, args: &[&str]) -> std::process::Command {
    let mut command = api.command(args, &[("BIGQUERY_ENDPOINT", &double.endpoint)]);
    command.env_remove("GOOGLE_APPLICATION_CREDENTIALS");
    command
}

/// [`pulling`] run to its end, off the test's runtime threads (the doubles keep answering).
async fn pull(api: &ClevertapApi, double: &BigQueryDouble, args: &[&str]) -> Run {
    let mut command = pulling(api, double, args);
    tokio::task::spawn_blocking(move || command.output().expect("run tapline").into())
        .await
        .expect("join")
}

fn url(dataset: &str) -> String {
    format!("bigquery://{PROJECT}/{dataset}")
}

fn value(double: &BigQueryDouble, sql: &str) -> Option<String> {
    double.rows("clevertap", sql)[0][0].clone()
}

tapline_tests::on_both_bigquery_targets!(
    a_failed_query_is_the_error_bigquery_answers,
    load_status_and_query_through_the_cli,
    a_query_that_would_write_is_refused_before_it_runs,
    a_rewritten_export_replaces_its_rows,
    pulled_events_and_counts_land_in_bigquery_once,
    profile_exports_load_with_their_views,
);

/// The sample profile exports beside the sample events: snapshots, the profile views (one row
/// per identity, a history period per change, every event once in `events_with_profile`) and
/// the profiles line of `tapline status`.
async fn profile_exports_load_with_their_views(target: BigQueryTarget) {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = std::collections::HashMap::new();
    for command in ["demo", "profiles"] {
        let out = std::process::Command::new(tapline_tests::bin("tapline-sample-exports"))
            .args([command, "--out", dir.path().to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        expected.extend(tapline_tests::expected_counts(
            &String::from_utf8(out.stdout).unwrap(),
        ));
    }
    let run = load_into(&target, dir.path()).await;
    assert_eq!(
        run.code, 2,
        "the demo's corrupt file only: {}{}",
        run.stdout, run.stderr
    );
    let count = async |sql: &str| -> u64 {
        target
            .value(sql)
            .await
            .expect(sql)
            .parse()
            .expect("a count")
    };
    assert_eq!(
        count("SELECT count(*) FROM profiles").await,
        expected["profiles"]
    );
    assert_eq!(
        count("SELECT count(*) FROM profiles_history").await,
        expected["profiles"] + expected["changed"]
    );
    assert_eq!(
        count("SELECT count(*) FROM events_with_profile").await,
        count("SELECT count(*) FROM all_events").await
    );
    assert!(
        count("SELECT count(*) FROM events_with_profile WHERE user_customer_type IS NOT NULL")
            .await
            > 0
    );
    // The typed profile views in the BI dataset: the same rows, booleans as booleans.
    let bi = format!("{}_bi", target.dataset());
    let typed_count = async |sql: &str| -> u64 {
        target.rows_in(&bi, sql).await[0][0]
            .clone()
            .expect(sql)
            .parse()
            .expect("a count")
    };
    for view in ["profiles", "profiles_history", "events_with_profile"] {
        assert_eq!(
            typed_count(&format!("SELECT count(*) FROM {view}")).await,
            count(&format!("SELECT count(*) FROM {view}")).await,
            "{view}"
        );
    }
    assert_eq!(
        typed_count("SELECT count(*) FROM profiles WHERE msg_push").await,
        count("SELECT count(*) FROM profiles WHERE msg_push = 'true'").await
    );
    let status = tapline(
        target.endpoint(),
        &[],
        &["status", "--warehouse", &target.url()],
    )
    .await;
    assert!(
        status.stdout.contains(&format!(
            "Profiles: {} identities from {} snapshots (latest 2022-09-20T18:30:00Z), {} history periods",
            expected["profiles"],
            expected["profile_rows"],
            expected["profiles"] + expected["changed"]
        )),
        "{}",
        status.stdout
    );
}

/// `tapline load DIR --warehouse URL` against `target`.
async fn load_into(target: &BigQueryTarget, dir: &Path) -> Run {
    let path = dir.display().to_string();
    tapline(
        target.endpoint(),
        &[],
        &["load", &path, "--warehouse", &target.url()],
    )
    .await
}

/// Two exports load into their event tables as load jobs; loading again changes nothing;
/// `tapline status` lists them and `tapline query` reads them.
async fn load_status_and_query_through_the_cli(target: BigQueryTarget) {
    let dir = tempfile::tempdir().unwrap();
    exports(dir.path());

    let run = load_into(&target, dir.path()).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        target
            .value("SELECT count(*) FROM charged")
            .await
            .as_deref(),
        Some("3")
    );
    assert_eq!(
        target
            .value("SELECT count(*) FROM app_launched")
            .await
            .as_deref(),
        Some("2")
    );
    // Partitioned by day on ts, labelled, the event name as friendlyName, raw names kept.
    let table = target.table("charged").await.unwrap();
    assert_eq!(table["timePartitioning"]["type"], "DAY");
    assert_eq!(table["timePartitioning"]["field"], "ts");
    assert_eq!(table["friendlyName"], "Charged");
    assert_eq!(table["labels"]["tapline"], "event");
    let field = |name: &str| {
        table["schema"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        field("event_props_amount")["description"],
        "eventProps.Amount"
    );
    let ts = field("ts");
    assert_eq!(
        (ts["type"].as_str(), ts["mode"].as_str()),
        (Some("TIMESTAMP"), Some("REQUIRED"))
    );
    // Staging tables are gone.
    let tables = target.tables().await;
    assert!(
        tables.iter().all(|t| !t.starts_with("_tapline_stage_")),
        "{tables:?}"
    );
    // Loads went in as load jobs, never streaming inserts; one commit job per file.
    let jobs_before = target.as_double().map(|double| {
        assert_eq!(double.count("jobs.upload"), 2);
        let commits: Vec<String> = double
            .job_ids()
            .into_iter()
            .filter(|j| j.contains("_commit_"))
            .collect();
        assert_eq!(commits.len(), 2, "{commits:?}");
        assert!(
            commits.iter().all(|j| j.ends_with("_commit_1")),
            "{commits:?}"
        );
        double.job_ids().len()
    });

    // Again: nothing new, no new jobs.
    let again = load_into(&target, dir.path()).await;
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    if let (Some(double), Some(before)) = (target.as_double(), jobs_before) {
        assert_eq!(double.job_ids().len(), before);
    }
    assert_eq!(
        target
            .value("SELECT count(*) FROM charged")
            .await
            .as_deref(),
        Some("3")
    );
    assert_eq!(
        target
            .value("SELECT count(*) FROM _tapline_loads WHERE status = 'loaded'")
            .await
            .as_deref(),
        Some("2")
    );

    let status = tapline(
        target.endpoint(),
        &[],
        &["status", "--warehouse", &target.url()],
    )
    .await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(status.stdout.contains("loaded"), "{}", status.stdout);
    assert!(status.stdout.contains(CHARGED), "{}", status.stdout);

    let query = tapline(
        target.endpoint(),
        &[],
        &[
            "query",
            "--warehouse",
            &target.url(),
            "SELECT min(ts) AS first FROM charged",
        ],
    )
    .await;
    assert_eq!(query.code, 0, "{}", query.stderr);
    assert!(
        query.stdout.contains("2022-09-21T00:00:00Z"),
        "{}",
        query.stdout
    );
    // No credentials configured with BIGQUERY_ENDPOINT set: no token at all.
    if let Some(double) = target.as_double() {
        assert!(double.calls().iter().all(|(_, auth)| auth.is_none()));
    }
}

/// `tapline query` naming a table that does not exist fails with BigQuery's answer: HTTP 404,
/// reason `notFound` (https://cloud.google.com/bigquery/docs/error-messages); SQL that does not
/// parse, HTTP 400 `invalidQuery`.
async fn a_failed_query_is_the_error_bigquery_answers(target: BigQueryTarget) {
    let url = target.url();
    let missing = tapline(
        target.endpoint(),
        &[],
        &[
            "query",
            "--warehouse",
            &url,
            "SELECT count(*) FROM no_such_table",
        ],
    )
    .await;
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(
        missing.stderr.starts_with(
            "error: warehouse query failed: BigQuery jobs.insert (dry run) answered HTTP 404 \
             (notFound): Not found: Table "
        ) && missing
            .stderr
            .ends_with(".no_such_table was not found in location US\n"),
        "{}",
        missing.stderr
    );
    let bad = tapline(
        target.endpoint(),
        &[],
        &["query", "--warehouse", &url, "SELEC 1"],
    )
    .await;
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(
        bad.stderr.starts_with(
            "error: warehouse query failed: BigQuery jobs.insert (dry run) answered HTTP 400 \
             (invalidQuery): "
        ),
        "{}",
        bad.stderr
    );
}

/// `tapline query` is read-only on BigQuery too: a DELETE, a DDL statement and a script (whose
/// first statement reads) are refused with the type BigQuery gives them, and nothing changed.
async fn a_query_that_would_write_is_refused_before_it_runs(target: BigQueryTarget) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(CHARGED), export_csv("Charged", 3)).unwrap();
    let run = load_into(&target, dir.path()).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let url = target.url();
    for (sql, kind) in [
        ("DELETE FROM charged WHERE true", "DELETE"),
        ("DROP TABLE charged", "DROP_TABLE"),
        ("SELECT 1; DELETE FROM charged WHERE true", "SCRIPT"),
    ] {
        let refused = tapline(target.endpoint(), &[], &["query", "--warehouse", &url, sql]).await;
        assert_eq!(refused.code, 1, "{sql}: {refused:?}");
        assert_eq!(
            refused.stderr,
            format!(
                "error: warehouse query failed: only read-only queries are allowed (BigQuery \
                 reads this as a {kind} statement)\n"
            ),
            "{sql}"
        );
    }
    let count = tapline(
        target.endpoint(),
        &[],
        &[
            "query",
            "--warehouse",
            &url,
            "SELECT count(*) AS n FROM charged",
        ],
    )
    .await;
    assert_eq!(count.code, 0, "{count:?}");
    assert!(count.stdout.contains('3'), "{}", count.stdout);
}

/// An export rewritten in place (a new version of the same file) replaces the rows the old
/// version loaded, in the same commit: the ledger says the old one was replaced.
async fn a_rewritten_export_replaces_its_rows(target: BigQueryTarget) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(CHARGED);
    std::fs::write(&file, export_csv("Charged", 3)).unwrap();
    let run = load_into(&target, dir.path()).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    std::fs::write(&file, export_csv("Charged", 5)).unwrap();
    let run = load_into(&target, dir.path()).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        target
            .rows(
                "SELECT count(*), count(DISTINCT _load_id), min(_source_line), \
                 max(_source_line) FROM charged"
            )
            .await,
        vec![vec![
            Some("5".to_string()),
            Some("1".to_string()),
            Some("2".to_string()),
            Some("6".to_string())
        ]]
    );
    assert_eq!(
        target
            .rows("SELECT status, rows_loaded FROM _tapline_loads ORDER BY rows_loaded")
            .await,
        vec![
            vec![Some("replaced".to_string()), Some("3".to_string())],
            vec![Some("loaded".to_string()), Some("5".to_string())],
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_errors_fail_the_file_with_bigquerys_messages_and_load_nothing() {
    let double = BigQueryDouble::start(PROJECT, &["clevertap"]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(CHARGED), export_csv("Charged", 3)).unwrap();
    double.fail_next_job(
        "load",
        JobFault {
            reason: "invalid".into(),
            message: "Error while reading data, error message: JSON table encountered too many errors, giving up. Rows: 1; errors: 1.".into(),
            errors: vec!["Error while reading data, error message: JSON parsing error in row starting at position 0: No such field: bogus.".into()],
        },
    );
    let run = load_dir(&double, dir.path()).await;
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    let output = format!("{}{}", run.stdout, run.stderr);
    assert!(output.contains("No such field: bogus"), "{output}");
    assert_eq!(
        value(&double, "SELECT count(*) FROM charged").as_deref(),
        Some("0")
    );
    let ledger = double.rows("clevertap", "SELECT status, error FROM _tapline_loads");
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0][0].as_deref(), Some("failed"));
    assert!(
        ledger[0][1]
            .as_deref()
            .unwrap()
            .contains("No such field: bogus"),
        "{ledger:?}"
    );
    // The next run loads it, once.
    let again = load_dir(&double, dir.path()).await;
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert_eq!(
        value(&double, "SELECT count(*) FROM charged").as_deref(),
        Some("3")
    );
    assert_eq!(
        double.rows(
            "clevertap",
            "SELECT status, attempts FROM _tapline_loads ORDER BY attempts"
        ),
        vec![
            vec![Some("failed".into()), Some("1".into())],
            vec![Some("loaded".into()), Some("2".into())]
        ]
    );
}

/// A commit whose job runs for over a second reports the ledger row it wrote: the record it
/// returns carries the row's own `finished_at` (it took a second reading of the clock, so a
/// commit that crossed a second disagreed with its ledger; bqemulator showed it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_commit_reports_the_ledger_row_it_wrote() {
    use tapline_tests::conformance::warehouse::{batch, object};
    let double = BigQueryDouble::start(PROJECT, &["clevertap"]).await;
    let w = BigQueryWarehouse::open_at(
        &url("clevertap"),
        Some(&double.endpoint),
        GoogleAuth::anonymous(),
    )
    .await
    .unwrap();
    let o = object("s3://b/slow.csv", "v1");
    let Begin::Started(mut t) = w.begin_load(&o, false).await.unwrap() else {
        panic!("a new object");
    };
    t.append(batch(
        &["ts", "eventName"],
        &[(2, vec![Some("2022-09-21T04:39:25Z"), Some("Charged")])],
    ))
    .await
    .unwrap();
    // Five RUNNING polls: the adapter waits 50 + 100 + 200 + 400 + 800 ms for each job.
    double.set_running_polls(5);
    let outcome = tapline::warehouse::Outcome::Loaded {
        bytes: 10,
        rows: 1,
        rejected: 0,
    };
    let Committed::Ours(record) = t.commit(outcome, vec![]).await.unwrap() else {
        panic!("a lone loader");
    };
    assert_eq!(w.recent_loads(1).await.unwrap(), vec![record]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_server_errors_and_running_jobs_are_waited_out() {
    let double = BigQueryDouble::start(PROJECT, &["clevertap"]).await;
    double.set_running_polls(3);
    double.fail_next("jobs.upload", 403, "rateLimitExceeded");
    double.fail_next("jobs.upload", 503, "backendError");
    double.fail_next("jobs.query", 500, "backendError");
    double.fail_next("jobs.get", 500, "backendError");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(CHARGED), export_csv("Charged", 4)).unwrap();
    let run = load_dir(&double, dir.path()).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        value(&double, "SELECT count(*) FROM charged").as_deref(),
        Some("4")
    );
    // Each upload that failed was sent again, whole, and only one load job exists.
    assert_eq!(double.count("jobs.upload"), 3);
    assert_eq!(
        double
            .job_ids()
            .iter()
            .filter(|j| j.contains("_stage_"))
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_job_burns_its_id_and_the_next_id_commits_once() {
    let double = BigQueryDouble::start(PROJECT, &["clevertap"]).await;
    double.fail_next_job(
        "query",
        JobFault {
            reason: "backendError".into(),
            message: "Transaction aborted due to concurrent update".into(),
            errors: vec![],
        },
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(CHARGED), export_csv("Charged", 2)).unwrap();
    let run = load_dir(&double, dir.path()).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let commits: Vec<String> = double
        .job_ids()
        .into_iter()
        .filter(|j| j.contains("_commit_"))
        .collect();
    assert_eq!(commits.len(), 2, "{commits:?}");
    assert!(
        commits[0].ends_with("_commit_1") && commits[1].ends_with("_commit_2"),
        "{commits:?}"
    );
    assert_eq!(
        value(&double, "SELECT count(*) FROM charged").as_deref(),
        Some("2")
    );
    assert_eq!(
        value(&double, "SELECT count(*) FROM _tapline_loads").as_deref(),
        Some("1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_another_loader_made_is_found_by_its_job_id() {
    // Two handles begin the same version; only the first commit job runs, the second insert
    // answers 409 and the loser reports the winner's ledger row.
    let double = BigQueryDouble::start(PROJECT, &["clevertap"]).await;
    let target = url("clevertap");
    let open =
        || BigQueryWarehouse::open_at(&target, Some(&double.endpoint), GoogleAuth::anonymous());
    let (a, b) = (open().await.unwrap(), open().await.unwrap());
    let object =
        tapline_tests::conformance::warehouse::object("gs://b/k.csv.gz", "1700000000000001");
    let columns = ["ts", "eventName", "profile.identity"];
    let rows = [(
        2,
        vec![Some("2022-09-21T04:39:25Z"), Some("Charged"), Some("u1")],
    )];
    let mut ta = match a.begin_load(&object, false).await.unwrap() {
        Begin::Started(t) => t,
        Begin::Done(_) => panic!("first begin"),
    };
    let mut tb = match b.begin_load(&object, false).await.unwrap() {
        Begin::Started(t) => t,
        Begin::Done(_) => panic!("BigQuery cannot lock: the second begin starts too"),
    };
    ta.append(tapline_tests::conformance::warehouse::batch(
        &columns, &rows,
    ))
    .await
    .unwrap();
    tb.append(tapline_tests::conformance::warehouse::batch(
        &columns, &rows,
    ))
    .await
    .unwrap();
    let outcome = tapline::warehouse::Outcome::Loaded {
        bytes: 10,
        rows: 1,
        rejected: 0,
    };
    let first = ta.commit(outcome.clone(), vec![]).await.unwrap();
    let second = tb.commit(outcome, vec![]).await.unwrap();
    let (Committed::Ours(first), Committed::Theirs(second)) = (first, second) else {
        panic!("the first commit must be the load, the second must find it");
    };
    assert_eq!(first, second, "the loser reports the winner's ledger row");
    assert_eq!(
        value(&double, "SELECT count(*) FROM charged").as_deref(),
        Some("1")
    );
    let commits: Vec<String> = double
        .job_ids()
        .into_iter()
        .filter(|j| j.contains("_commit_"))
        .collect();
    assert_eq!(commits.len(), 1, "{commits:?}");
    // The loser's staged rows were uploaded, then dropped unused.
    assert!(
        double
            .tables("clevertap")
            .iter()
            .all(|t| !t.starts_with("_tapline_stage_"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dataset_stops_before_anything_is_recorded() {
    let double = BigQueryDouble::start(PROJECT, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = exports(dir.path());
    let run = tapline(
        &double.endpoint,
        &[],
        &["load", &path, "--warehouse", &url("nowhere")],
    )
    .await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("dataset acme-analytics:nowhere does not exist; create it first"),
        "{}",
        run.stderr
    );
    assert_eq!(
        double.count("jobs.upload") + double.count("jobs.insert") + double.count("tables.insert"),
        0
    );
    let bad = tapline(
        &double.endpoint,
        &[],
        &["load", &path, "--warehouse", "bigquery://acme-analytics"],
    )
    .await;
    assert_eq!(bad.code, 1, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("expected bigquery://PROJECT/DATASET"),
        "{}",
        bad.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_credentials_file_that_is_missing_is_named() {
    let double = BigQueryDouble::start(PROJECT, &["clevertap"]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = exports(dir.path());
    let missing = dir.path().join("no-such-key.json");
    let run = tapline(
        &double.endpoint,
        &[("GOOGLE_APPLICATION_CREDENTIALS", missing.to_str().unwrap())],
        &["load", &path, "--warehouse", &url("clevertap")],
    )
    .await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("cannot read Google credentials"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("no-such-key.json"), "{}", run.stderr);
    assert!(double.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_sent_and_never_logged() {
    let double = BigQueryDouble::start(PROJECT, &["clevertap"]).await;
    let (refresh, access) = ("1//refresh-SECRET-4f2a", "ya29.access-SECRET-9c1e");
    double.issue_token(refresh, access);
    let dir = tempfile::tempdir().unwrap();
    let path = exports(dir.path());
    let credentials = dir.path().join("adc.json");
    std::fs::write(
        &credentials,
        serde_json::json!({
            "type": "authorized_user",
            "client_id": "tapline-test.apps.googleusercontent.com",
            "client_secret": "client-SECRET-77",
            "refresh_token": refresh,
            "token_uri": format!("{}/token", double.endpoint),
        })
        .to_string(),
    )
    .unwrap();
    let run = tapline(
        &double.endpoint,
        &[(
            "GOOGLE_APPLICATION_CREDENTIALS",
            credentials.to_str().unwrap(),
        )],
        &["-vv", "load", &path, "--warehouse", &url("clevertap")],
    )
    .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        value(&double, "SELECT count(*) FROM charged").as_deref(),
        Some("3")
    );
    let calls = double.calls();
    assert!(!calls.is_empty());
    assert!(
        calls
            .iter()
            .all(|(_, auth)| auth.as_deref() == Some(&format!("Bearer {access}") as &str))
    );
    // Every secret in the test carries "SECRET": the refresh token, the access token, the
    // client secret.
    assert!(
        !run.stdout.contains("SECRET") && !run.stderr.contains("SECRET"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    // A wrong refresh token: a clear error, and still no secret in it.
    double.issue_token("another", access);
    std::fs::write(
        dir.path()
            .join("1663664837-1663785000-Charged-20220922-0-0.csv"),
        export_csv("Charged", 1),
    )
    .unwrap();
    let denied = tapline(
        &double.endpoint,
        &[(
            "GOOGLE_APPLICATION_CREDENTIALS",
            credentials.to_str().unwrap(),
        )],
        &["load", &path, "--warehouse", &url("clevertap")],
    )
    .await;
    assert_eq!(denied.code, 1, "{}{}", denied.stdout, denied.stderr);
    assert!(
        denied.stderr.contains("no Google credentials for BigQuery"),
        "{}",
        denied.stderr
    );
    assert!(!denied.stderr.contains("SECRET"), "{}", denied.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_files_upload_resumably_and_a_lost_chunk_is_resumed() {
    let double = BigQueryDouble::start(PROJECT, &["clevertap"]).await;
    // 60,000 rows stage to more than 8 MiB of NDJSON: a resumable upload in 8 MiB chunks.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(CHARGED), export_csv("Charged", 60_000)).unwrap();
    double.fail_next("jobs.upload.chunk", 503, "backendError");
    let run = load_dir(&double, dir.path()).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        value(
            &double,
            "SELECT count(*), count(DISTINCT _source_line) FROM charged"
        )
        .as_deref(),
        Some("60000")
    );
    assert_eq!(
        double.rows(
            "clevertap",
            "SELECT count(DISTINCT _source_line) FROM charged"
        )[0][0]
            .as_deref(),
        Some("60000")
    );
    assert_eq!(double.count("jobs.upload.start"), 1);
    assert_eq!(
        double.count("jobs.upload"),
        0,
        "no multipart upload for a large file"
    );
    // The failed first chunk, one status query, then every chunk once (at least two: the double
    // refuses a chunk that does not continue exactly where the data stands).
    assert_eq!(double.count("jobs.upload.status"), 1);
    assert!(double.count("jobs.upload.chunk") >= 3);
}

/// The API puller into BigQuery: events land in the per-event table, a day pulled again is
/// replaced (not doubled), checkpoints are readable in `_tapline_state`, and counts are keyed
/// rows in `event_counts`.
async fn pulled_events_and_counts_land_in_bigquery_once(target: BigQueryTarget) {
    use tapline_tests::doubles::clevertap_api::event_records;
    let api = ClevertapApi::start().await;
    api.set_events("Charged", 20220922, event_records(20220922, 25));
    api.set_events("Charged", 20220923, event_records(20220923, 5));
    let warehouse = target.url();
    let env = [("BIGQUERY_ENDPOINT", target.endpoint())];
    let pull = |what: &'static str, from: &'static str| {
        let args = [
            "pull",
            what,
            "--event",
            "Charged",
            "--from",
            from,
            "--to",
            "2022-09-23",
            "--warehouse",
            &warehouse,
        ]
        .map(str::to_string);
        let api = &api;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let run = api.tapline(&args, &env).await;
            assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        }
    };
    pull("events", "2022-09-22").await;
    assert_eq!(
        target
            .value("SELECT count(*) FROM charged")
            .await
            .as_deref(),
        Some("30")
    );
    api.set_events("Charged", 20220923, event_records(20220923, 8));
    pull("events", "2022-09-23").await;
    assert_eq!(
        target
            .value("SELECT count(*) FROM charged")
            .await
            .as_deref(),
        Some("33")
    );
    assert_eq!(
        target
            .value(
                "SELECT count(*) FROM _tapline_state WHERE key LIKE '%events/Charged/2022-09-2%'"
            )
            .await
            .as_deref(),
        Some("2")
    );
    pull("counts", "2022-09-22").await;
    pull("counts", "2022-09-22").await;
    assert_eq!(
        target
            .rows("SELECT event_name, day, count FROM event_counts ORDER BY day")
            .await,
        vec![
            vec![
                Some("Charged".into()),
                Some("2022-09-22".into()),
                Some("25".into())
            ],
            vec![
                Some("Charged".into()),
                Some("2022-09-23".into()),
                Some("8".into())
            ],
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_values_superseded_for_a_week_are_pruned_and_latest_values_kept() {
    let double = BigQueryDouble::start(PROJECT, &["clevertap"]).await;
    let w = BigQueryWarehouse::open_at(
        &url("clevertap"),
        Some(&double.endpoint),
        GoogleAuth::anonymous(),
    )
    .await
    .unwrap();
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let day = 24 * 3600 * 1_000_000i64;
    // a: superseded 10 days ago by a value that is itself 9 days old (kept: still the latest);
    // b: an old value, superseded by the write below; c: superseded an hour ago (kept: recent).
    let seed: Vec<String> = [
        ("a", "a1", now_us - 10 * day),
        ("a", "a2", now_us - 9 * day),
        ("b", "b1", now_us - 10 * day),
        ("c", "c1", now_us - 3_600_000_000),
        ("c", "c2", now_us - 1_000_000),
    ]
    .iter()
    .map(|(k, v, us)| {
        format!(
            "INSERT INTO _tapline_state_log (key, value, updated_at, written_us) \
             VALUES ('{k}', '{v}', '2026-01-01T00:00:00.000000Z', {us});"
        )
    })
    .collect();
    double.execute("clevertap", &seed.concat());

    w.put_state("b", "b2").await.unwrap();
    w.put_state("c", "c3").await.unwrap();

    let kept = double.rows(
        "clevertap",
        "SELECT value FROM _tapline_state_log ORDER BY value",
    );
    let kept: Vec<&str> = kept.iter().map(|r| r[0].as_deref().unwrap()).collect();
    assert_eq!(kept, ["a2", "b2", "c1", "c2", "c3"]);
    for (key, latest) in [("a", "a2"), ("b", "b2"), ("c", "c3")] {
        assert_eq!(w.get_state(key).await.unwrap().as_deref(), Some(latest));
    }
    // Once per handle: the second write ran no prune.
    let prunes = double
        .job_ids()
        .into_iter()
        .filter(|j| j.contains("_state_prune_dml_"))
        .count();
    assert_eq!(prunes, 1);
}

/// A pull into BigQuery killed while it waits for page 2 (the CleverTap double holds that page
/// back): `tapline status --warehouse bigquery://…` lists what it left (its checkpoint, the
/// latest value in `_tapline_state`: 2 pages, 20 rows, when it started and was last updated);
/// the same command resumes at page 2 without a new cursor or a page fetched twice, and status
/// no longer lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_pull_is_listed_by_status_and_resumes_from_its_checkpoint() {
    use tapline_tests::doubles::clevertap_api::{Seen, event_records};
    let double = BigQueryDouble::start(PROJECT, &["clevertap"]).await;
    let api = ClevertapApi::start().await;
    api.set_events("Charged", 20220922, event_records(20220922, 50));
    let warehouse = url("clevertap");
    let args = [
        "pull",
        "events",
        "--event",
        "Charged",
        "--from",
        "2022-09-22",
        "--to",
        "2022-09-22",
        "--batch-size",
        "10",
        "--warehouse",
        &warehouse,
    ];
    let status = || async {
        let run = tapline(
            &double.endpoint,
            &[],
            &["status", "--warehouse", &warehouse],
        )
        .await;
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        run.stdout
    };

    api.block_at("Charged", 2);
    let mut child = pulling(&api, &double, &args)
        .spawn()
        .expect("start tapline pull");
    api.wait_until_blocked().await;
    child.kill().unwrap();
    let killed = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(!killed.success());
    api.unblock();
    assert_eq!(
        value(&double, "SELECT count(*) FROM charged").as_deref(),
        Some("20")
    );

    let listed = status().await;
    assert!(listed.contains("Unfinished API pulls (1):"), "{listed}");
    let line = listed
        .lines()
        .find(|l| l.starts_with("events "))
        .unwrap_or_else(|| panic!("no events line in:\n{listed}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cells.len(), 7, "{line}");
    assert_eq!(
        cells[..5],
        ["events", "Charged", "2022-09-22", "2", "20"],
        "{line}"
    );
    // Started (from the checkpoint) and last update (the state log's TIMESTAMP, which the REST
    // API answers as epoch seconds): both UTC instants, in that order.
    let (started, updated) = (cells[5], cells[6]);
    let instant =
        |text: &str| tapline::time::parse_utc(text).unwrap_or_else(|| panic!("{text:?} in {line}"));
    assert!(instant(started) <= instant(updated), "{line}");

    let run = pull(&api, &double, &args).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("Resumed Charged 2022-09-22 from its checkpoint at page 2."),
        "{}",
        run.stdout
    );
    let listed = status().await;
    assert!(listed.contains("No unfinished API pulls."), "{listed}");
    assert_eq!(
        value(&double, "SELECT count(*) FROM charged").as_deref(),
        Some("50")
    );
    assert_eq!(
        value(
            &double,
            "SELECT count(*) FROM (SELECT ts, profile_identity FROM charged \
             GROUP BY ts, profile_identity HAVING count(*) > 1)"
        )
        .as_deref(),
        Some("0")
    );
    let seen = api.seen();
    let opens = seen.iter().filter(|s| matches!(s, Seen::Open(..))).count();
    assert_eq!(opens, 1, "the resumed run did not open a new cursor");
    for page in [0, 1] {
        let fetched = seen
            .iter()
            .filter(|s| **s == Seen::Page("Charged".into(), 20220922, page))
            .count();
        assert_eq!(fetched, 1, "page {page} was fetched once");
    }
    // The log keeps every write of the checkpoint; status read only the latest.
    let key = "clevertap/TEST-ACC-1/events/Charged/2022-09-22";
    let writes: u64 = value(
        &double,
        &format!("SELECT count(*) FROM _tapline_state_log WHERE key = '{key}'"),
    )
    .unwrap()
    .parse()
    .unwrap();
    assert!(writes > 2, "{writes} writes of {key}");
    let latest = value(
        &double,
        &format!("SELECT value FROM _tapline_state WHERE key = '{key}'"),
    )
    .unwrap();
    let latest: serde_json::Value = serde_json::from_str(&latest).unwrap();
    assert_eq!(
        (latest["status"].as_str(), latest["rows"].as_u64()),
        (Some("complete"), Some(50))
    );
}

/// `pull messages` into BigQuery: Get Message Reports' answers land in `message_reports`, one
/// row per (message, day) (a message reported on two days is two rows); a day not ready yet is
/// no failure; pulling the same days again replaces rows by that key instead of adding to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_reports_land_in_bigquery_keyed_by_message_and_day() {
    use tapline_tests::doubles::clevertap_api::{MessageDay, message_record};
    let double = BigQueryDouble::start(PROJECT, &["clevertap"]).await;
    let api = ClevertapApi::start().await;
    let day_one = |sale_push_sent| {
        MessageDay::Ready(vec![
            message_record(1663800001, "Sale push", "Push", sale_push_sent, 40, 28),
            message_record(1663800002, "Sale email", "Email", 500, 210, 35),
            message_record(1663800003, "Reminder", "Push", 12, 7, 1),
        ])
    };
    api.set_message_day(20220922, day_one(82));
    api.set_message_day(
        20220923,
        MessageDay::Ready(vec![
            message_record(1663800001, "Sale push", "Push", 9, 4, 2),
            message_record(1663900001, "Welcome", "SMS", 5, 0, 0),
        ]),
    );
    api.set_message_day(20220924, MessageDay::NotCompleted);
    let warehouse = url("clevertap");
    let args = [
        "pull",
        "messages",
        "--from",
        "2022-09-22",
        "--to",
        "2022-09-24",
        "--warehouse",
        &warehouse,
    ];
    let rows = || {
        double.rows(
            "clevertap",
            "SELECT message_id, day, message_name, channel, sent, viewed, clicked \
             FROM message_reports ORDER BY day, message_id",
        )
    };
    let row = |cells: [&str; 7]| cells.map(|c| Some(c.to_string())).to_vec();

    let run = pull(&api, &double, &args).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    for line in [
        "2 days written (5 rows), 1 not ready yet, 0 failed.",
        "  2022-09-24: not ready (This report hasn't been completed)",
    ] {
        assert!(run.stdout.contains(line), "{line} in\n{}", run.stdout);
    }
    let first = vec![
        row([
            "1663800001",
            "2022-09-22",
            "Sale push",
            "Push",
            "82",
            "40",
            "28",
        ]),
        row([
            "1663800002",
            "2022-09-22",
            "Sale email",
            "Email",
            "500",
            "210",
            "35",
        ]),
        row([
            "1663800003",
            "2022-09-22",
            "Reminder",
            "Push",
            "12",
            "7",
            "1",
        ]),
        row([
            "1663800001",
            "2022-09-23",
            "Sale push",
            "Push",
            "9",
            "4",
            "2",
        ]),
        row(["1663900001", "2022-09-23", "Welcome", "SMS", "5", "0", "0"]),
    ];
    assert_eq!(rows(), first);
    // The key is required, the figures are integers; the whole message is kept as JSON.
    let table = double.table("clevertap", "message_reports").unwrap();
    let mode_and_type = |name: &str| {
        let field = table["schema"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {table}"));
        (field["mode"].clone(), field["type"].clone())
    };
    for key in ["message_id", "day"] {
        assert_eq!(mode_and_type(key), ("REQUIRED".into(), "STRING".into()));
    }
    assert_eq!(mode_and_type("sent"), ("NULLABLE".into(), "INT64".into()));
    let report = value(
        &double,
        "SELECT report FROM message_reports WHERE message_id = '1663900001'",
    )
    .unwrap();
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["labels"][0], "tapline-test", "{report}");

    // The same days again, the 22nd's push having reached more people: replaced, not added.
    api.set_message_day(20220922, day_one(90));
    let run = pull(&api, &double, &args).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("2 days written (5 rows), 1 not ready yet, 0 failed."),
        "{}",
        run.stdout
    );
    let mut second = first;
    second[0] = row([
        "1663800001",
        "2022-09-22",
        "Sale push",
        "Push",
        "90",
        "40",
        "28",
    ]);
    assert_eq!(rows(), second);
    // Staging tables are gone.
    assert!(
        double
            .tables("clevertap")
            .iter()
            .all(|t| !t.starts_with("_tapline_stage_")),
        "{:?}",
        double.tables("clevertap")
    );
}

/// A `jobs.query` answer that is not a clean result (HTTP 200 with `errors`, or a finished job
/// without a schema) is an error: the ledger check fails the file instead of reading "not
/// loaded", so nothing loads twice; `tapline status` fails instead of saying "No loads yet";
/// a sweep whose ledger read fails loads nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclean_query_answers_are_errors_and_never_lead_to_a_load() {
    let double = BigQueryDouble::start(PROJECT, &["clevertap"]).await;
    let dir = tempfile::tempdir().unwrap();
    exports(dir.path());
    let first = load_dir(&double, dir.path()).await;
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    let uploads = double.count("jobs.upload");
    assert_eq!(uploads, 2);

    for (fault, message) in [
        (
            QueryAnswerFault::Errors,
            "failed (backendError): scripted: the query hit a backend error",
        ),
        (
            QueryAnswerFault::NoSchema,
            "a complete query answered without a schema",
        ),
    ] {
        // Every ledger check of this run gets the unclean answer.
        for _ in 0..2 {
            double.fail_next_query_answer(fault);
        }
        let again = load_dir(&double, dir.path()).await;
        assert_eq!(again.code, 2, "{fault:?}: {}{}", again.stdout, again.stderr);
        assert!(
            again.stdout.contains(message),
            "{fault:?}: {}",
            again.stdout
        );
        assert_eq!(
            double.count("jobs.upload"),
            uploads,
            "{fault:?}: loaded again"
        );
        assert_eq!(
            value(&double, "SELECT count(*) FROM charged").as_deref(),
            Some("3")
        );

        double.fail_next_query_answer(fault);
        let status = tapline(
            &double.endpoint,
            &[],
            &["status", "--warehouse", &url("clevertap")],
        )
        .await;
        assert_eq!(
            status.code, 1,
            "{fault:?}: {}{}",
            status.stdout, status.stderr
        );
        assert!(!status.stdout.contains("No loads yet"), "{}", status.stdout);
        assert!(
            status.stderr.contains(message),
            "{fault:?}: {}",
            status.stderr
        );
    }

    // A sweep reads the ledger once; when that read is unclean, nothing is loaded.
    let w = BigQueryWarehouse::open_at(
        &url("clevertap"),
        Some(&double.endpoint),
        GoogleAuth::anonymous(),
    )
    .await
    .unwrap();
    std::fs::write(
        dir.path()
            .join("1663751237-1663837637-Charged-20220922-0-0.csv"),
        export_csv("Charged", 4),
    )
    .unwrap();
    let location = dir.path().display().to_string();
    let source = tapline::storage::source_for(&location).await.unwrap();
    let request = tapline::export_loader::sweep::SweepRequest {
        uri: location.clone(),
        since: None,
        window_days: Some(0),
        request_id: None,
    };
    let config = tapline::config::LoadConfig::default();
    double.fail_next_query_answer(QueryAnswerFault::Errors);
    let err = tapline::export_loader::sweep::sweep(source.as_ref(), &w, &request, &config)
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(double.count("jobs.upload"), uploads);
    // Clean answers again: the sweep loads the new file only.
    let report = tapline::export_loader::sweep::sweep(source.as_ref(), &w, &request, &config)
        .await
        .unwrap();
    let counts = report.counts();
    assert_eq!(
        (counts.loaded, counts.already_loaded),
        (1, 2),
        "{}",
        report.to_json()
    );
    assert_eq!(
        value(&double, "SELECT count(*) FROM charged").as_deref(),
        Some("7")
    );
}

/// TIMESTAMPs are asked for as int64 microseconds (`formatOptions.useInt64Timestamp`), so a
/// value keeps every digit; float seconds (the default) lose the last ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_keep_their_microseconds() {
    let double = BigQueryDouble::start(PROJECT, &["clevertap"]).await;
    let w = BigQueryWarehouse::open_at(
        &url("clevertap"),
        Some(&double.endpoint),
        GoogleAuth::anonymous(),
    )
    .await
    .unwrap();
    for (key, at) in [
        ("a", "2022-09-21T04:32:45.123457Z"),
        ("b", "9999-12-31T23:59:59.999999Z"),
    ] {
        double.execute(
            "clevertap",
            &format!(
                "INSERT INTO clevertap._tapline_state_log (key, value, updated_at, written_us) \
                 VALUES ('{key}', 'v', '{at}', 1)"
            ),
        );
    }
    let result = w
        .query("SELECT key, updated_at FROM _tapline_state_log ORDER BY key")
        .await
        .unwrap();
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        result.rows,
        vec![
            vec![s("a"), s("2022-09-21T04:32:45.123457Z")],
            vec![s("b"), s("9999-12-31T23:59:59.999999Z")],
        ]
    );
}
