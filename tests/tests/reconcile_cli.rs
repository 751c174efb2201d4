//! `tapline reconcile` end to end on SQLite, PostgreSQL and BigQuery (the double and
//! bqemulator): export chunks loaded by `tapline load`, CleverTap's counts pulled by `tapline pull
//! counts` from the CleverTap double, then one verdict per event and day: a missing chunk, a
//! quarantined chunk, a day 3 % short of CleverTap's count, a day within the tolerance, a day not
//! over yet, and an event CleverTap counts that never arrived.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use tapline::warehouse::Warehouse;
use tapline_tests::doubles::bigquery::target::BigQueryTarget;
use tapline_tests::doubles::clevertap_api::{ClevertapApi, event_records};
use tapline_tests::doubles::receiver::Receiver;
use tapline_tests::servers::pg::PgSchema;
use tapline_tests::{ExportCase, Run, fixed_header, fixed_row, gzip};

const TZ: &str = "Asia/Kolkata";

/// Today and the four days before it in the project's zone, oldest first.
fn days() -> [Date; 5] {
    let today = TimeZone::get(TZ)
        .unwrap()
        .to_datetime(jiff::Timestamp::now())
        .date();
    let back = |n: i64| today.checked_sub(jiff::Span::new().days(n)).unwrap();
    [back(4), back(3), back(2), back(1), today]
}

fn compact(day: Date) -> String {
    day.strftime("%Y%m%d").to_string()
}

/// The name CleverTap gives chunk `index` of `event` on `day` (one run per day).
fn chunk_name(event: &str, day: Date, index: u32) -> String {
    format!(
        "1663664837-1663785000-{event}-{}-{index}-0.csv.gz",
        compact(day)
    )
}

/// Writes chunk `index` of `event` on `day` with rows `first..first + rows`, a second apart
/// from 00:10 local time; `bad` writes an unparseable `ts` in every row (the file is quarantined).
fn chunk(
    case: &ExportCase,
    event: &str,
    day: Date,
    index: u32,
    first: usize,
    rows: usize,
    bad: bool,
) {
    let mut text = format!("{}\n", fixed_header());
    for i in first..first + rows {
        let ts = if bad {
            "not-a-time".to_string()
        } else {
            format!(
                "{}0{}{:02}{:02}",
                compact(day),
                1 + i / 3600,
                i / 60 % 60,
                i % 60
            )
        };
        text.push_str(&fixed_row(&ts, event, &format!("u{i}"), &[]));
        text.push('\n');
    }
    case.write_bytes(&chunk_name(event, day, index), &gzip(text.as_bytes()));
}

/// Where the scenario's rows go.
enum Target {
    Sqlite,
    Postgres(PgSchema),
    BigQuery(BigQueryTarget),
}

impl Target {
    fn url(&self, case: &ExportCase) -> String {
        match self {
            Target::Sqlite => case.warehouse(),
            Target::Postgres(db) => db.url(),
            Target::BigQuery(bq) => bq.url(),
        }
    }

    /// `tapline args…` with the CleverTap double's environment and this target's.
    async fn tapline(&self, api: &ClevertapApi, args: &[&str], extra: &[(&str, &str)]) -> Run {
        let mut env: Vec<(&str, &str)> = match self {
            Target::BigQuery(bq) => vec![("BIGQUERY_ENDPOINT", bq.endpoint())],
            _ => Vec::new(),
        };
        env.extend_from_slice(extra);
        let mut command = api.command(args, &env);
        command.env_remove("GOOGLE_APPLICATION_CREDENTIALS");
        tokio::task::spawn_blocking(move || Run::from(command.output().expect("run tapline")))
            .await
            .unwrap()
    }

    async fn open(&self, case: &ExportCase) -> Box<dyn Warehouse> {
        match self {
            Target::BigQuery(bq) => bq.open().await,
            _ => tapline::warehouse::open::open(&self.url(case))
                .await
                .expect("open the warehouse"),
        }
    }
}

/// What `args` gives with `--warehouse` and `--timezone` added.
async fn run(target: &Target, api: &ClevertapApi, case: &ExportCase, args: &[&str]) -> Run {
    run_with(target, api, case, args, &[]).await
}

async fn run_with(
    target: &Target,
    api: &ClevertapApi,
    case: &ExportCase,
    args: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let url = target.url(case);
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--warehouse", &url, "--timezone", TZ]);
    target.tapline(api, &all, env).await
}

/// `tapline reconcile` over the scenario's days, its alerts posted to `slack`.
async fn reconcile(
    target: &Target,
    api: &ClevertapApi,
    case: &ExportCase,
    d: &[Date; 5],
    slack: &Receiver,
) -> Run {
    let (from, to) = (d[0].to_string(), d[4].to_string());
    let args = ["reconcile", "--from", &from, "--to", &to];
    run_with(
        target,
        api,
        case,
        &args,
        &[("TAPLINE_ALERTS_SLACK_URL", &slack.url)],
    )
    .await
}

/// The scenario of the file's header on `target`.
async fn five_statuses(target: Target) {
    let case = ExportCase::new();
    let api = ClevertapApi::start().await;
    let d = days();
    // d0: chunks 0, 1 and 3 of 10 rows; chunk 2 never arrived. CleverTap counts 40.
    for index in [0, 1, 3] {
        chunk(
            &case,
            "Charged",
            d[0],
            index,
            index as usize * 10,
            10,
            false,
        );
    }
    // d1: chunk 1 is quarantined (every row bad). CleverTap counts 20.
    chunk(&case, "Charged", d[1], 0, 0, 10, false);
    chunk(&case, "Charged", d[1], 1, 10, 10, true);
    // d2: 100 rows, CleverTap counts 103 (3 % short).
    chunk(&case, "Charged", d[2], 0, 0, 100, false);
    // d3: 200 rows over two chunks, CleverTap counts 201 (0.5 % is 1.005: within).
    chunk(&case, "Charged", d[3], 0, 0, 100, false);
    chunk(&case, "Charged", d[3], 1, 100, 100, false);
    // d4: today, not over.
    chunk(&case, "Charged", d[4], 0, 0, 5, false);
    let root = case.root.display().to_string();
    let load = run(&target, &api, &case, &["load", &root]).await;
    assert_eq!(load.code, 2, "one chunk is quarantined: {load:?}");

    let day_number = |day: Date| compact(day).parse::<i64>().unwrap();
    for (day, n) in [(d[0], 40), (d[1], 20), (d[2], 103), (d[3], 201), (d[4], 5)] {
        api.set_events(
            "Charged",
            day_number(day),
            event_records(day_number(day), n),
        );
    }
    // Viewed: CleverTap counts 12 on d2; no export of it ever arrived.
    api.set_events(
        "Viewed",
        day_number(d[2]),
        event_records(day_number(d[2]), 12),
    );
    let (from, to) = (d[0].to_string(), d[4].to_string());
    let counts = ["pull", "counts", "--event", "Charged", "--event", "Viewed"];
    let mut counts = counts.to_vec();
    counts.extend(["--from", &from, "--to", &to]);
    let pulled = run(&target, &api, &case, &counts).await;
    assert_eq!(pulled.code, 0, "{pulled:?}");

    let slack = Receiver::start().await;
    let first = reconcile(&target, &api, &case, &d, &slack).await;
    assert_eq!(first.code, 3, "some days need attention: {first:?}");
    let warehouse = target.open(&case).await;
    let verdicts = || async {
        warehouse
            .query(
                "SELECT event_name, day, status, export_chunks, missing_chunks, export_rows, \
                 api_rows, clevertap_count FROM _tapline_completeness ORDER BY event_name, day",
            )
            .await
            .expect("read _tapline_completeness")
            .rows
    };
    let row = |event: &str, day: Date, status: &str, figures: [&str; 5]| {
        let mut r = vec![
            Some(event.to_string()),
            Some(day.to_string()),
            Some(status.to_string()),
        ];
        r.extend(figures.iter().map(|f| Some(f.to_string())));
        r
    };
    let expected = vec![
        row(
            "Charged",
            d[0],
            "missing chunk",
            ["3", "1", "30", "0", "40"],
        ),
        row(
            "Charged",
            d[1],
            "missing chunk",
            ["2", "1", "10", "0", "20"],
        ),
        row(
            "Charged",
            d[2],
            "count mismatch",
            ["1", "0", "100", "0", "103"],
        ),
        row("Charged", d[3], "complete", ["2", "0", "200", "0", "201"]),
        row("Charged", d[4], "late", ["1", "0", "5", "0", "5"]),
        row("Viewed", d[0], "complete", ["0", "0", "0", "0", "0"]),
        row("Viewed", d[1], "complete", ["0", "0", "0", "0", "0"]),
        row("Viewed", d[2], "no export", ["0", "0", "0", "0", "12"]),
        row("Viewed", d[3], "complete", ["0", "0", "0", "0", "0"]),
        row("Viewed", d[4], "late", ["0", "0", "0", "0", "0"]),
    ];
    assert_eq!(verdicts().await, expected);
    // Four days need attention: each went to Slack with its figures.
    let texts = slack.texts();
    assert_eq!(texts.len(), 4, "{texts:?}");
    let mismatch = format!(
        "Tapline alert: Charged on {} is not complete: count mismatch: warehouse 100, \
         CleverTap 103 (-3, -2.91 %)",
        d[2]
    );
    assert!(texts.contains(&mismatch), "{texts:?}");
    let no_export = format!(
        "Tapline alert: Viewed on {} is not complete: no export: CleverTap counts 12, \
         nothing arrived",
        d[2]
    );
    assert!(texts.contains(&no_export), "{texts:?}");
    let gap_start = format!(
        "Tapline alert: Charged on {} is not complete: missing chunk: ",
        d[0]
    );
    let gap_end = format!("{} (never arrived)", chunk_name("Charged", d[0], 2));
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with(&gap_start) && t.ends_with(&gap_end)),
        "{texts:?}"
    );
    // The printed table names the missing chunks and gives the mismatch's figures.
    let out = &first.stdout;
    let named =
        |index: u32, day: Date, why: &str| format!("{} ({why})", chunk_name("Charged", day, index));
    assert!(out.contains(&named(2, d[0], "never arrived")), "{out}");
    assert!(out.contains(&named(1, d[1], "quarantined")), "{out}");
    assert!(
        out.contains("count mismatch       1          100         0        103  warehouse 100, CleverTap 103 (-3, -2.91 %)"),
        "{out}"
    );
    assert!(
        out.contains("10 (event, day) checked: 4 complete, 2 late, 4 need attention."),
        "{out}"
    );

    // The missing chunk arrives: a rerun replaces d0's verdict and adds no row.
    chunk(&case, "Charged", d[0], 2, 20, 10, false);
    let reload = run(&target, &api, &case, &["load", &root]).await;
    assert_eq!(reload.code, 2, "d1's chunk stays quarantined: {reload:?}");
    let again = reconcile(&target, &api, &case, &d, &slack).await;
    assert_eq!(again.code, 3, "{again:?}");
    let mut fixed = expected.clone();
    fixed[0] = row("Charged", d[0], "complete", ["4", "0", "40", "0", "40"]);
    assert_eq!(verdicts().await, fixed);
    // Each day that needs attention was alerted once: the rerun posted nothing new.
    assert_eq!(slack.texts().len(), 4, "{:?}", slack.texts());
    let notified = warehouse
        .query(
            "SELECT day, notified FROM _tapline_completeness WHERE event_name = 'Charged' \
             ORDER BY day",
        )
        .await
        .unwrap()
        .rows;
    let flags: Vec<Option<String>> = notified.into_iter().map(|r| r[1].clone()).collect();
    let text = |s: &str| Some(s.to_string());
    assert_eq!(
        flags,
        [text("no"), text("yes"), text("yes"), text("no"), text("no")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_statuses_on_sqlite() {
    five_statuses(Target::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_statuses_on_postgres() {
    five_statuses(Target::Postgres(PgSchema::new("reconcile"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_statuses_on_the_bigquery_double() {
    five_statuses(Target::BigQuery(BigQueryTarget::double("reconcile").await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_statuses_on_bqemulator() {
    five_statuses(Target::BigQuery(
        BigQueryTarget::emulator("reconcile").await,
    ))
    .await;
}

#[test]
fn an_empty_warehouse_has_nothing_to_reconcile_and_a_bad_range_is_a_usage_error() {
    let case = ExportCase::new();
    let run = tapline_tests::tapline(&[
        "reconcile",
        "--warehouse",
        &case.warehouse(),
        "--from",
        "2022-09-18",
        "--to",
        "2022-09-21",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(
            "Nothing to reconcile: no export chunk, row or CleverTap count in these days."
        ),
        "{}",
        run.stdout
    );
    let backwards = tapline_tests::tapline(&[
        "reconcile",
        "--warehouse",
        &case.warehouse(),
        "--from",
        "2022-09-21",
        "--to",
        "2022-09-18",
    ]);
    assert_eq!(backwards.code, 1, "{backwards:?}");
    assert_eq!(
        backwards.stderr.trim(),
        "error: cannot reconcile 2022-09-21 to 2022-09-18: the last day is before the first"
    );
    let percent = tapline_tests::tapline(&["reconcile", "--tolerance", "120"]);
    assert_eq!(percent.code, 64, "{percent:?}");
}
