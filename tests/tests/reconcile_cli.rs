//! `tapline reconcile` end to end on SQLite, PostgreSQL and BigQuery (the double and
//! bqemulator), on the export set `tapline-sample-exports completeness` writes: its chunks loaded
//! by `tapline load`, CleverTap's counts (its `counts.json`) pulled by `tapline pull counts` from
//! the CleverTap double, then one verdict per event and day, exactly the manifest's: a missing
//! chunk, a quarantined chunk, a day 3 % short of CleverTap's count, a day within the tolerance,
//! a day not over yet, and an event CleverTap counts that never arrived.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use tapline::export::object_name::{Recognition, recognise};
use tapline::warehouse::Warehouse;
use tapline_tests::completeness_set::{CompletenessSet, ExpectedDay};
use tapline_tests::doubles::bigquery::target::BigQueryTarget;
use tapline_tests::doubles::clevertap_api::ClevertapApi;
use tapline_tests::doubles::receiver::Receiver;
use tapline_tests::servers::pg::PgSchema;
use tapline_tests::{ExportCase, Run};

const TZ: &str = "Asia/Kolkata";

/// The generator's seed (any seed gives the same statuses and figures).
const SEED: u64 = 20;

/// Today and the four days before it in the project's zone, oldest first.
fn days() -> [Date; 5] {
    let today = TimeZone::get(TZ)
        .unwrap()
        .to_datetime(jiff::Timestamp::now())
        .date();
    let back = |n: i64| today.checked_sub(jiff::Span::new().days(n)).unwrap();
    [back(4), back(3), back(2), back(1), today]
}

/// The set for the days of [`days`], written under `case`'s folder.
fn generate(case: &ExportCase, d: &[Date; 5]) -> CompletenessSet {
    let set = CompletenessSet::generate(&case.dir().join("set"), d[4], SEED);
    assert_eq!((set.first_day, set.last_day), (d[0], d[4]));
    set
}

/// A `_tapline_completeness` row as the verdicts query reads it.
fn row(event: &str, day: Date, status: &str, figures: [&str; 5]) -> Vec<Option<String>> {
    let mut r = vec![
        Some(event.to_string()),
        Some(day.to_string()),
        Some(status.to_string()),
    ];
    r.extend(figures.iter().map(|f| Some(f.to_string())));
    r
}

/// The row the manifest expects for one (event, day).
fn manifest_row(e: &ExpectedDay) -> Vec<Option<String>> {
    let figures = [
        e.export_chunks,
        e.missing_chunks.len() as u64,
        e.export_rows,
        e.api_rows,
        e.clevertap_count,
    ]
    .map(|n| n.to_string());
    row(
        &e.event,
        e.day,
        &e.status,
        figures.each_ref().map(String::as_str),
    )
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

/// The verdicts the set must get, written out: the five cases on "Charged" and the
/// "Viewed" CleverTap counts that never arrived. The manifest must say the same (a change to the
/// generator that loses a case fails here, not silently).
fn expected_verdicts(d: &[Date; 5]) -> Vec<Vec<Option<String>>> {
    vec![
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
    ]
}

/// The statuses that need attention (and so an alert).
const ATTENTION: [&str; 3] = ["missing chunk", "count mismatch", "no export"];

/// The scenario of the file's header on `target`.
async fn five_statuses(target: Target) {
    let case = ExportCase::new();
    let api = ClevertapApi::start().await;
    let d = days();
    let set = generate(&case, &d);
    let mut expected: Vec<_> = set.days.iter().map(manifest_row).collect();
    expected.sort();
    assert_eq!(expected, expected_verdicts(&d), "the manifest's verdicts");
    // d1's chunk 1 is quarantined by the loader for its header (a column named twice).
    let exports = set.exports.display().to_string();
    let load = run(&target, &api, &case, &["load", &exports]).await;
    assert_eq!(load.code, 2, "one chunk is quarantined: {load:?}");
    let quarantined = &set.expected("Charged", d[1]).missing_chunks[0].0;
    assert!(
        load.stdout.contains(quarantined) || load.stderr.contains(quarantined),
        "{load:?}"
    );
    assert!(
        format!("{}{}", load.stdout, load.stderr)
            .contains("column \"eventProps.Amount\" appears more than once in the header"),
        "{load:?}"
    );

    // CleverTap's counts (the set's counts.json) through the double.
    set.serve_counts(&api);
    assert_eq!(set.events(), ["Charged", "Viewed"]);
    let counts = set.pull_counts_args();
    let counts: Vec<&str> = counts.iter().map(String::as_str).collect();
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
    // Exactly the manifest's status and figures for every (event, day).
    assert_eq!(verdicts().await, expected);
    // Four days need attention: each went to Slack once, with its figures.
    let attention: Vec<&ExpectedDay> = set
        .days
        .iter()
        .filter(|e| ATTENTION.contains(&e.status.as_str()))
        .collect();
    assert_eq!(attention.len(), 4);
    let texts = slack.texts();
    assert_eq!(texts.len(), attention.len(), "{texts:?}");
    for e in &attention {
        let start = format!(
            "Tapline alert: {} on {} is not complete: {}",
            e.event, e.day, e.status
        );
        assert_eq!(
            texts.iter().filter(|t| t.starts_with(&start)).count(),
            1,
            "{start}: {texts:?}"
        );
    }
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
    // The missing chunks are named as the manifest names them: the gap by the name CleverTap
    // would have given it, the quarantined chunk by its own object.
    for day in [d[0], d[1]] {
        let start = format!("Tapline alert: Charged on {day} is not complete: missing chunk: ");
        let (name, why) = &set.expected("Charged", day).missing_chunks[0];
        let end = format!("{name} ({why})");
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with(&start) && t.ends_with(&end)),
            "{end}: {texts:?}"
        );
    }
    // The gap's name is the one of the chunk that arrives later.
    assert_eq!(
        set.expected("Charged", d[0]).missing_chunks,
        [(
            set.arrives_later[0].name.clone(),
            "never arrived".to_string()
        )]
    );
    // The printed table names the missing chunks and gives the mismatch's figures.
    let out = &first.stdout;
    for e in &attention {
        for (name, why) in &e.missing_chunks {
            assert!(out.contains(&format!("{name} ({why})")), "{out}");
        }
    }
    assert!(
        out.contains("count mismatch       1          100         0        103  warehouse 100, CleverTap 103 (-3, -2.91 %)"),
        "{out}"
    );
    assert!(
        out.contains("10 (event, day) checked: 4 complete, 2 late, 4 need attention."),
        "{out}"
    );

    // A second run with nothing changed: the same verdicts, no alert again.
    let second = reconcile(&target, &api, &case, &d, &slack).await;
    assert_eq!(second.code, 3, "{second:?}");
    assert_eq!(verdicts().await, expected);
    assert_eq!(slack.texts(), texts, "nothing is alerted twice");

    // The missing chunk arrives: a rerun replaces d0's verdict and adds no row.
    set.arrive();
    let reload = run(&target, &api, &case, &["load", &exports]).await;
    assert_eq!(reload.code, 2, "d1's chunk stays quarantined: {reload:?}");
    let again = reconcile(&target, &api, &case, &d, &slack).await;
    assert_eq!(again.code, 3, "{again:?}");
    let late = &set.arrives_later[0];
    assert_eq!((late.event.as_str(), late.day), ("Charged", d[0]));
    let mut fixed = expected.clone();
    let before = set.expected("Charged", d[0]);
    let figures = [
        before.export_chunks + 1,
        0,
        before.export_rows + late.rows,
        0,
        before.clevertap_count,
    ]
    .map(|n| n.to_string());
    fixed[0] = row(
        "Charged",
        d[0],
        &late.status_after,
        figures.each_ref().map(String::as_str),
    );
    assert_eq!(
        fixed[0],
        row("Charged", d[0], "complete", ["4", "0", "40", "0", "40"])
    );
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

/// The set is deterministic and named as CleverTap names exports: the same `--today` and seed
/// give byte-identical files; another seed other values but the same manifest; every object is
/// a legacy event export of request 1690283492 with its file index, and the quarantined chunk's
/// header names a column twice.
#[test]
fn the_completeness_set_is_deterministic_and_named_as_clevertap_names_exports() {
    let dir = tempfile::tempdir().unwrap();
    let today: Date = "2024-03-05".parse().unwrap();
    let a = CompletenessSet::generate(&dir.path().join("a"), today, 7);
    let b = CompletenessSet::generate(&dir.path().join("b"), today, 7);
    let c = CompletenessSet::generate(&dir.path().join("c"), today, 8);
    let files = |set: &CompletenessSet| {
        let mut files = Vec::new();
        for folder in ["exports", "arrives-later"] {
            for entry in std::fs::read_dir(set.dir.join(folder)).unwrap() {
                let path = entry.unwrap().path();
                let name = format!("{folder}/{}", path.file_name().unwrap().to_string_lossy());
                files.push((name, std::fs::read(&path).unwrap()));
            }
        }
        for file in ["counts.json", "manifest.json"] {
            files.push((file.to_string(), std::fs::read(set.dir.join(file)).unwrap()));
        }
        files.sort();
        files
    };
    assert_eq!(files(&a), files(&b));
    let (fa, fc) = (files(&a), files(&c));
    let names = |f: &[(String, Vec<u8>)]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&fa), names(&fc));
    assert_ne!(fa, fc, "another seed gives other values");
    assert_eq!(a.days, c.days);
    assert_eq!(
        (a.first_day, a.last_day),
        ("2024-03-01".parse().unwrap(), today)
    );

    let objects: Vec<String> = names(&fa)
        .into_iter()
        .filter(|n| n.ends_with(".csv.gz"))
        .collect();
    assert_eq!(objects.len(), 10, "{objects:?}");
    for name in &objects {
        let Recognition::Export(object) = recognise(name) else {
            panic!("{name} is not recognised as an export");
        };
        assert_eq!(object.request_id.as_deref(), Some("1690283492"), "{name}");
        assert_eq!(object.event_name_in_name.as_deref(), Some("Charged"));
        assert!(object.file_index.is_some() && object.run_timestamp.is_some());
    }
    // The four chunks of the first day, of which chunk 2 arrives later.
    assert_eq!(
        a.arrives_later[0].name,
        "1690283492-1709317800-Charged-20240301-2-0.csv.gz"
    );
    // The quarantined chunk's header names eventProps.Amount twice.
    let (bad, _) = &a
        .expected("Charged", "2024-03-02".parse().unwrap())
        .missing_chunks[0];
    let bytes = std::fs::read(a.exports.join(bad)).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
        .unwrap();
    let header = text.lines().next().unwrap();
    assert_eq!(header.matches(",eventProps.Amount").count(), 2, "{header}");
    // A folder holding a set already is refused: its objects would be loaded beside the new ones.
    let again = std::process::Command::new(tapline_tests::bin("tapline-sample-exports"))
        .args(["completeness", "--out"])
        .arg(&a.dir)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&again.stderr)
            .lines()
            .next()
            .unwrap(),
        format!(
            "Error: {} is not empty: write the set into a new folder",
            a.exports.display()
        )
    );
}

/// Every chunk of a day quarantined: no row ever reached an event table (PostgreSQL and BigQuery
/// have no `all_events` then), and the day is judged a missing chunk, named, never an error.
async fn only_quarantined_chunks(target: Target) {
    let case = ExportCase::new();
    let api = ClevertapApi::start().await;
    // CleverTap's name for chunk 0 of 2022-09-21's export (run at the next Kolkata midnight);
    // its header names `eventProps.Amount` twice, so the loader quarantines it.
    let name = "1690283492-1663785000-Charged-20220921-0-0.csv.gz";
    let csv = export_csv_with_a_column_named_twice();
    let dir = case.dir().join("exports");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), tapline_tests::gzip(csv.as_bytes())).unwrap();
    let exports = dir.display().to_string();
    let load = run(&target, &api, &case, &["load", &exports]).await;
    assert_eq!(load.code, 2, "the only chunk is quarantined: {load:?}");
    let slack = Receiver::start().await;
    let args = ["reconcile", "--from", "2022-09-21", "--to", "2022-09-21"];
    let reconciled = run_with(
        &target,
        &api,
        &case,
        &args,
        &[("TAPLINE_ALERTS_SLACK_URL", &slack.url)],
    )
    .await;
    assert_eq!(reconciled.code, 3, "{reconciled:?}");
    assert!(
        reconciled.stdout.contains("missing chunk") && reconciled.stdout.contains(name),
        "{reconciled:?}"
    );
    let warehouse = target.open(&case).await;
    let verdicts = warehouse
        .query(
            "SELECT event_name, day, status, export_rows FROM _tapline_completeness \
             ORDER BY event_name, day",
        )
        .await
        .expect("read _tapline_completeness")
        .rows;
    assert_eq!(
        verdicts,
        vec![vec![
            Some("Charged".to_string()),
            Some("2022-09-21".to_string()),
            Some("missing chunk".to_string()),
            Some("0".to_string()),
        ]]
    );
}

/// [`tapline_tests::export_csv`] with `eventProps.Amount` named twice in its header.
fn export_csv_with_a_column_named_twice() -> String {
    let csv = tapline_tests::export_csv("Charged", 3);
    let (header, rows) = csv.split_once('\n').unwrap();
    let rows: String = rows.lines().map(|r| format!("{r},1\n")).collect();
    format!("{header},eventProps.Amount\n{rows}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_quarantined_chunks_on_sqlite() {
    only_quarantined_chunks(Target::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_quarantined_chunks_on_postgres() {
    only_quarantined_chunks(Target::Postgres(PgSchema::new("quarantined"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_quarantined_chunks_on_the_bigquery_double() {
    only_quarantined_chunks(Target::BigQuery(
        BigQueryTarget::double("quarantined").await,
    ))
    .await;
}
