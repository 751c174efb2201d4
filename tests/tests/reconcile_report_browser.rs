//! `tapline report` opened in a real browser: headless Chromium (Debian's package; `make test`
//! installs it when missing, see `tests/scripts/ensure-chromium.sh`) renders the page made from a
//! warehouse with a complete day and a day missing a chunk. `tests/scripts/check_report_in_browser.py`
//! checks the rendered grid, a screenshot holding both status colours, and Chromium's net log:
//! no request left the page. The same check on a copy without the page's Content-Security-Policy
//! and with an external image fails, so the net-log check can fail.

use std::process::Command;

use tapline::warehouse::counts_tables::EVENT_COUNTS;
use tapline_tests::{ExportCase, fixed_header, fixed_row, gzip};

fn chromium() -> String {
    std::env::var("TAPLINE_TEST_CHROMIUM").unwrap_or_else(|_| {
        panic!(
            "TAPLINE_TEST_CHROMIUM (headless Chromium) is not set: run `make test`, or set it to \
             the path tests/scripts/ensure-chromium.sh prints"
        )
    })
}

/// Chunk `index` of Charged on 2022-09-`day` with `rows` rows.
fn chunk(case: &ExportCase, day: u32, index: u32, rows: usize) {
    let mut text = format!("{}\n", fixed_header());
    for i in 0..rows {
        let ts = format!("202209{day:02}01{:02}{:02}", i / 60 % 60, i % 60);
        text.push_str(&fixed_row(&ts, "Charged", &format!("u{i}"), &[]));
        text.push('\n');
    }
    let name = format!("1663664837-1663785000-Charged-202209{day:02}-{index}-0.csv.gz");
    case.write_bytes(&name, &gzip(text.as_bytes()));
}

fn check(report: &std::path::Path, workdir: &std::path::Path) -> std::process::Output {
    std::fs::create_dir_all(workdir).unwrap();
    Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/check_report_in_browser.py"
        ))
        .arg(chromium())
        .arg(report)
        .arg(workdir)
        .output()
        .expect("run the browser check")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_renders_its_grid_in_chromium_and_fetches_nothing() {
    let case = ExportCase::new();
    // The 20th: both chunks, as many rows as CleverTap counts. The 21st: chunk 1 never came.
    chunk(&case, 20, 0, 30);
    chunk(&case, 20, 1, 20);
    chunk(&case, 21, 0, 30);
    chunk(&case, 21, 2, 10);
    assert_eq!(case.load(&["--timezone", "UTC"]).code, 0);
    let warehouse = tapline::warehouse::open::open(&case.warehouse())
        .await
        .unwrap();
    let count = |day: &str, n: u64| {
        [
            Some("Charged".to_string()),
            Some(day.to_string()),
            Some(n.to_string()),
            Some("UTC".to_string()),
            Some("2022-09-23T00:00:00Z".to_string()),
        ]
        .to_vec()
    };
    warehouse
        .replace_rows(
            &EVENT_COUNTS,
            &[count("2022-09-20", 50), count("2022-09-21", 60)],
        )
        .await
        .unwrap();
    drop(warehouse);

    let report = case.dir().join("report.html");
    let run = tapline_tests::tapline(&[
        "report",
        "--out",
        report.to_str().unwrap(),
        "--warehouse",
        &case.warehouse(),
        "--from",
        "2022-09-20",
        "--to",
        "2022-09-21",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout.trim(), format!("Wrote {}.", report.display()));
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains("2 (event, day) checked, <strong>1 need attention</strong>"),
        "{html}"
    );

    let seen = check(&report, &case.dir().join("browser"));
    let said = String::from_utf8_lossy(&seen.stdout);
    assert!(
        seen.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&seen.stderr)
    );
    assert!(said.starts_with("grid rendered ("), "{said}");

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
    let caught = check(&leaky, &case.dir().join("browser-leaky"));
    assert!(!caught.status.success());
    assert_eq!(
        String::from_utf8_lossy(&caught.stdout).trim(),
        "check_report_in_browser: the page made requests: ['http://tapline.invalid/pixel.png']"
    );
}
