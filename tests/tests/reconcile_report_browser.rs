//! `tapline report` opened in a real browser: headless Chromium (Debian's package; `make test`
//! installs it when missing, see `tests/scripts/ensure-chromium.sh`) renders the page made from a
//! warehouse holding the export set of `tapline-sample-exports completeness` (its chunks loaded,
//! its counts pulled from the CleverTap double, reconciled). `tests/scripts/check_report_in_browser.py`
//! checks the rendered grid (each cell's class and status, read from the browser's DOM, are the
//! manifest's), a screenshot holding the status colours, and Chromium's net log: no request left
//! the page. The same check on a copy without the page's Content-Security-Policy and with an
//! external image fails, so the net-log check can fail.

use std::process::Command;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde_json::Value;
use tapline_tests::ExportCase;
use tapline_tests::completeness_set::CompletenessSet;
use tapline_tests::doubles::clevertap_api::ClevertapApi;

const TZ: &str = "Asia/Kolkata";

fn chromium() -> String {
    std::env::var("TAPLINE_TEST_CHROMIUM").unwrap_or_else(|_| {
        panic!(
            "TAPLINE_TEST_CHROMIUM (headless Chromium) is not set: run `make test`, or set it to \
             the path tests/scripts/ensure-chromium.sh prints"
        )
    })
}

/// The grid class of a status (report.rs `class`).
fn class(status: &str) -> &'static str {
    match status {
        "complete" => "ok",
        "late" => "late",
        "no count" => "nocount",
        _ => "bad",
    }
}

/// `tapline args…` on `case`'s warehouse in the project's zone, with the CleverTap double's
/// environment.
async fn tapline(api: &ClevertapApi, case: &ExportCase, args: &[&str]) -> tapline_tests::Run {
    let warehouse = case.warehouse();
    let mut all = args.to_vec();
    all.extend(["--warehouse", &warehouse, "--timezone", TZ]);
    api.tapline(&all, &[]).await
}

fn check(
    report: &std::path::Path,
    workdir: &std::path::Path,
    cells: Option<&std::path::Path>,
) -> std::process::Output {
    std::fs::create_dir_all(workdir).unwrap();
    let mut command = Command::new("python3");
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/check_report_in_browser.py"
        ))
        .arg(chromium())
        .arg(report)
        .arg(workdir);
    if let Some(cells) = cells {
        command.arg("--cells").arg(cells);
    }
    command.output().expect("run the browser check")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_renders_its_grid_in_chromium_and_fetches_nothing() {
    let case = ExportCase::new();
    let today = TimeZone::get(TZ)
        .unwrap()
        .to_datetime(jiff::Timestamp::now())
        .date();
    let set = CompletenessSet::generate(&case.dir().join("set"), today, 20);
    let api = ClevertapApi::start().await;
    let exports = set.exports.display().to_string();
    assert_eq!(
        tapline(&api, &case, &["load", &exports]).await.code,
        2,
        "one chunk is quarantined"
    );
    set.serve_counts(&api);
    let (from, to) = (set.first_day.to_string(), set.last_day.to_string());
    let counts = set.pull_counts_args();
    let counts: Vec<&str> = counts.iter().map(String::as_str).collect();
    let pulled = tapline(&api, &case, &counts).await;
    assert_eq!(pulled.code, 0, "{pulled:?}");
    let reconciled = tapline(&api, &case, &["reconcile", "--from", &from, "--to", &to]).await;
    assert_eq!(reconciled.code, 3, "{reconciled:?}");

    let report = case.dir().join("report.html");
    let run = tapline(
        &api,
        &case,
        &[
            "report",
            "--out",
            report.to_str().unwrap(),
            "--from",
            &from,
            "--to",
            &to,
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout.trim(), format!("Wrote {}.", report.display()));
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains("10 (event, day) checked, <strong>4 need attention</strong>"),
        "{html}"
    );

    let cells = case.dir().join("cells.json");
    let seen = check(&report, &case.dir().join("browser"), Some(&cells));
    let said = String::from_utf8_lossy(&seen.stdout);
    assert!(
        seen.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&seen.stderr)
    );
    assert!(said.starts_with("grid rendered ("), "{said}");
    assert!(said.contains(" late pixels), 10 cells, "), "{said}");
    // Each cell the browser shows has the manifest's status, in its title and its colour class;
    // the five cases and "no export" are all there.
    let shown: Value = serde_json::from_slice(&std::fs::read(&cells).unwrap()).unwrap();
    let mut shown: Vec<(String, Date, String, String)> = shown
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let text = |k: &str| c[k].as_str().unwrap().to_string();
            (
                text("event"),
                text("day").parse().unwrap(),
                text("status"),
                text("class"),
            )
        })
        .collect();
    shown.sort();
    let mut expected: Vec<(String, Date, String, String)> = set
        .days
        .iter()
        .map(|e| {
            (
                e.event.clone(),
                e.day,
                e.status.clone(),
                class(&e.status).to_string(),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(shown, expected);
    let mut statuses: Vec<&str> = expected.iter().map(|e| e.2.as_str()).collect();
    statuses.sort();
    statuses.dedup();
    assert_eq!(
        statuses,
        [
            "complete",
            "count mismatch",
            "late",
            "missing chunk",
            "no export"
        ]
    );

    // The check catches a page that fetches: no CSP, and an external image.
    let leaky = case.dir().join("leaky.html");
    let without_csp = html
        .split_once("<meta http-equiv=\"Content-Security-Policy\"")
        .map(|(head, rest)| format!("{head}{}", rest.split_once('>').unwrap().1))
        .unwrap();
    std::fs::write(
        &leaky,
        without_csp.replace(
            "</body>",
            "<img src=\"http://tapline.invalid/pixel.png\"></body>",
        ),
    )
    .unwrap();
    let caught = check(&leaky, &case.dir().join("browser-leaky"), None);
    assert!(!caught.status.success());
    assert_eq!(
        String::from_utf8_lossy(&caught.stdout).trim(),
        "check_report_in_browser: the page made requests: ['http://tapline.invalid/pixel.png']"
    );
}
