//! `tapline reconcile --pull-counts` and `tapline report --pull-counts` on SQLite and PostgreSQL:
//! the days whose CleverTap count is missing from `event_counts` are asked of the CleverTap
//! double (the same counts pull `tapline pull counts` makes), landed, then judged; a second run
//! asks nothing for days already counted; without credentials the flag stops the command at once.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use tapline_tests::doubles::clevertap_api::{ClevertapApi, Seen, event_records};
use tapline_tests::servers::pg::PgSchema;
use tapline_tests::{ExportCase, Run, fixed_header, fixed_row, gzip};

const TZ: &str = "Asia/Kolkata";

/// Three whole days before today in the project's zone, oldest first.
fn days() -> [Date; 3] {
    let today = TimeZone::get(TZ)
        .unwrap()
        .to_datetime(jiff::Timestamp::now())
        .date();
    let back = |n: i64| today.checked_sub(jiff::Span::new().days(n)).unwrap();
    [back(3), back(2), back(1)]
}

fn number(day: Date) -> i64 {
    day.strftime("%Y%m%d").to_string().parse().unwrap()
}

/// One export chunk of `rows` Charged events on `day`, a second apart from 01:00 local time.
fn chunk(case: &ExportCase, day: Date, rows: usize) {
    let mut text = format!("{}\n", fixed_header());
    for i in 0..rows {
        let ts = format!("{}01{:02}{:02}", number(day), i / 60 % 60, i % 60);
        text.push_str(&fixed_row(&ts, "Charged", &format!("u{i}"), &[]));
        text.push('\n');
    }
    let name = format!("1663664837-1663785000-Charged-{}-0-0.csv.gz", number(day));
    case.write_bytes(&name, &gzip(text.as_bytes()));
}

/// Count requests the double answered.
fn count_requests(api: &ClevertapApi) -> usize {
    api.seen()
        .iter()
        .filter(|s| matches!(s, Seen::Count(..)))
        .count()
}

async fn tapline(api: &ClevertapApi, args: &[&str], env: &[(&str, &str)]) -> Run {
    api.tapline(args, env).await
}

/// The scenario on the warehouse at `url`.
async fn missing_counts_are_pulled_then_judged(url: String) {
    let case = ExportCase::new();
    let api = ClevertapApi::start().await;
    let d = days();
    // d0: 10 rows, CleverTap counts 10. d1: 100 rows, CleverTap counts 103. d2: 20 rows, 20.
    for (day, rows, counted) in [(d[0], 10, 10), (d[1], 100, 103), (d[2], 20, 20)] {
        chunk(&case, day, rows);
        api.set_events("Charged", number(day), event_records(number(day), counted));
    }
    let root = case.root.display().to_string();
    let load = tapline(
        &api,
        &["load", &root, "--warehouse", &url, "--timezone", TZ],
        &[],
    )
    .await;
    assert_eq!(load.code, 0, "{load:?}");
    let (from, to) = (d[0].to_string(), d[1].to_string());
    let reconcile = |extra: &'static [&'static str]| {
        let mut args = vec![
            "reconcile",
            "--warehouse",
            &url,
            "--timezone",
            TZ,
            "--from",
            &from,
            "--to",
            &to,
            "--grace",
            "0",
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>, env: &'static [(&'static str, &'static str)]| {
        let api = &api;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            tapline(api, &args, env).await
        }
    };
    let warehouse = tapline::warehouse::open::open(&url).await.unwrap();
    let verdicts = || async {
        warehouse
            .query(
                "SELECT day, status, export_rows, clevertap_count FROM _tapline_completeness \
                 ORDER BY day",
            )
            .await
            .unwrap()
            .rows
    };
    let row = |day: Date, status: &str, rows: &str, count: Option<&str>| {
        vec![
            Some(day.to_string()),
            Some(status.to_string()),
            Some(rows.to_string()),
            count.map(str::to_string),
        ]
    };

    // Without the flag nothing is asked: both days have no count.
    let plain = run(reconcile(&[]), &[]).await;
    assert_eq!(plain.code, 0, "{plain:?}");
    assert_eq!(count_requests(&api), 0);
    assert_eq!(
        verdicts().await,
        [
            row(d[0], "no count", "10", None),
            row(d[1], "no count", "100", None)
        ]
    );

    // Without credentials the flag stops the command before anything is read or asked.
    let denied = run(reconcile(&["--pull-counts"]), &[("CLEVERTAP_PASSCODE", "")]).await;
    assert_eq!(denied.code, 1, "{denied:?}");
    assert_eq!(
        denied.stderr.trim(),
        "error: --pull-counts asks CleverTap's API: set CLEVERTAP_ACCOUNT_ID and \
         CLEVERTAP_PASSCODE (and CLEVERTAP_REGION when the project is not in eu1): \
         CLEVERTAP_PASSCODE is not set"
    );
    assert_eq!(count_requests(&api), 0);

    // The flag asks the two missing counts, lands them, and judges with them.
    let pulled = run(reconcile(&["--pull-counts"]), &[]).await;
    assert_eq!(pulled.code, 3, "d1 is 3 % short: {pulled:?}");
    assert!(
        pulled.stdout.starts_with(
            "Asked CleverTap for 2 missing count(s): 2 written to event_counts, 0 failed.\n"
        ),
        "{}",
        pulled.stdout
    );
    assert_eq!(count_requests(&api), 2);
    assert_eq!(
        verdicts().await,
        [
            row(d[0], "complete", "10", Some("10")),
            row(d[1], "count mismatch", "100", Some("103"))
        ]
    );
    let counts = warehouse
        .query("SELECT event_name, day, count, timezone FROM event_counts ORDER BY day")
        .await
        .unwrap()
        .rows;
    let text = |s: &str| Some(s.to_string());
    assert_eq!(
        counts,
        [
            vec![text("Charged"), Some(from.clone()), text("10"), text(TZ)],
            vec![text("Charged"), Some(to.clone()), text("103"), text(TZ)],
        ]
    );

    // A second run asks nothing: every day of the range is counted.
    let again = run(reconcile(&["--pull-counts"]), &[]).await;
    assert_eq!(again.code, 3, "{again:?}");
    assert!(
        again.stdout.starts_with(
            "Asked CleverTap for 0 missing count(s): 0 written to event_counts, 0 failed.\n"
        ),
        "{}",
        again.stdout
    );
    assert_eq!(count_requests(&api), 2);

    // `tapline report --pull-counts` over one more day asks that day only, and its cell shows it.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.html");
    let out_text = out.display().to_string();
    let last = d[2].to_string();
    let report = run(
        [
            "report",
            "--out",
            &out_text,
            "--warehouse",
            &url,
            "--timezone",
            TZ,
            "--from",
            &from,
            "--to",
            &last,
            "--grace",
            "0",
            "--pull-counts",
        ]
        .into_iter()
        .map(str::to_string)
        .collect(),
        &[],
    )
    .await;
    assert_eq!(report.code, 0, "{report:?}");
    assert!(
        report
            .stdout
            .starts_with("Asked CleverTap for 1 missing count(s): 1 written"),
        "{}",
        report.stdout
    );
    assert_eq!(count_requests(&api), 3);
    let page = std::fs::read_to_string(&out).unwrap();
    let cell = format!(
        "<td class=\"ok\" title=\"Charged on {last}: complete. Chunks 1, export rows 20, API rows 0, \
         CleverTap 20.\">20</td>"
    );
    assert!(page.contains(&cell), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_counts_are_pulled_then_judged_on_sqlite() {
    let case = ExportCase::new();
    missing_counts_are_pulled_then_judged(case.warehouse()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_counts_are_pulled_then_judged_on_postgres() {
    let schema = PgSchema::new("reconcile_pull_counts");
    missing_counts_are_pulled_then_judged(schema.url()).await;
}
