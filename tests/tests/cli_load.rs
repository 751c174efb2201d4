//! `tapline load` end to end: the built binary on fixture folders, checked in the SQLite file.

use std::path::{Path, PathBuf};

use tapline_tests::{
    export_csv, fixed_header, fixed_row, gzip, sqlite_rows, sqlite_value, tapline,
};

struct Case {
    _dir: tempfile::TempDir,
    root: PathBuf,
    db: PathBuf,
}

impl Case {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("exports");
        std::fs::create_dir_all(&root).unwrap();
        let db = dir.path().join("w.sqlite");
        Self {
            _dir: dir,
            root,
            db,
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn warehouse(&self) -> String {
        format!("sqlite://{}", self.db.display())
    }

    fn load(&self, extra: &[&str]) -> tapline_tests::Run {
        let root = self.root.to_str().unwrap().to_string();
        let wh = self.warehouse();
        let mut args = vec!["load", root.as_str(), "--warehouse", wh.as_str()];
        args.extend_from_slice(extra);
        tapline(&args)
    }

    fn count(&self, table: &str) -> u64 {
        sqlite_value(&self.db, &format!("SELECT count(*) FROM {table}"))
            .unwrap()
            .parse()
            .unwrap()
    }

    /// (status, rows_loaded, rows_rejected, error) of the ledger row whose uri ends with `name`.
    fn ledger(&self, name: &str) -> (String, u64, u64, Option<String>) {
        let rows = sqlite_rows(
            &self.db,
            &format!(
                "SELECT status, rows_loaded, rows_rejected, error FROM _tapline_loads WHERE uri LIKE '%/{name}'"
            ),
        );
        assert_eq!(rows.len(), 1, "one ledger row for {name}: {rows:?}");
        let r = &rows[0];
        (
            r[0].clone().unwrap(),
            r[1].as_deref().unwrap().parse().unwrap(),
            r[2].as_deref().unwrap().parse().unwrap(),
            r[3].clone(),
        )
    }

    fn rejects(&self) -> Vec<(u64, Option<String>, String)> {
        sqlite_rows(
            &self.db,
            "SELECT line, column_name, reason FROM _tapline_rejects ORDER BY load_id, line",
        )
        .into_iter()
        .map(|r| {
            (
                r[0].as_deref().unwrap().parse().unwrap(),
                r[1].clone(),
                r[2].clone().unwrap(),
            )
        })
        .collect()
    }
}

/// The file count the summary table gives an outcome (`loaded`, `already loaded`, …).
fn files_with(summary: &str, outcome: &str) -> u64 {
    summary
        .lines()
        .find_map(|l| {
            l.strip_prefix(outcome)
                .filter(|rest| rest.starts_with("  "))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {outcome:?} row in the summary:\n{summary}"))
}

const GOOD: &str = "1663664837-1663785000-App-Launched-20220921-0-0.csv.gz";
const BAD: &str = "1663664837-1663785000-Charged-20220921-0-0.csv.gz";

/// Loads a good file beside `bad`; the good file must load whatever happens to the bad one.
fn with_good_file(bad: &[u8]) -> (Case, tapline_tests::Run) {
    let case = Case::new();
    case.write(GOOD, &gzip(export_csv("App Launched", 50).as_bytes()));
    case.write(BAD, bad);
    let run = case.load(&[]);
    assert_eq!(
        case.count("app_launched"),
        50,
        "good file lost: {}",
        run.stdout
    );
    assert_eq!(case.ledger(GOOD).0, "loaded");
    (case, run)
}

fn assert_quarantined(bad: &[u8], reason: &str) {
    let (case, run) = with_good_file(bad);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    let (status, rows, _, error) = case.ledger(BAD);
    assert_eq!((status.as_str(), rows), ("quarantined", 0));
    let error = error.unwrap();
    assert!(
        error.starts_with(reason),
        "{error:?} should start with {reason:?}"
    );
    assert!(
        run.stdout.contains(reason),
        "summary names the reason: {}",
        run.stdout
    );
    let charged = sqlite_value(
        &case.db,
        "SELECT count(*) FROM _tapline_tables WHERE table_name = 'charged'",
    );
    assert_eq!(
        charged.as_deref(),
        Some("0"),
        "a quarantined file creates no table"
    );
}

/// Loads `bad` (mostly good rows) and returns the case for reject checks.
fn assert_loaded_with_rejects(bad: &[u8], rows: u64, rejected: u64) -> Case {
    let (case, run) = with_good_file(bad);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let (status, loaded, rej, _) = case.ledger(BAD);
    assert_eq!((status.as_str(), loaded, rej), ("loaded", rows, rejected));
    assert_eq!(case.count("charged"), rows);
    case
}

#[test]
fn zero_byte_object_is_quarantined() {
    assert_quarantined(b"", "empty object (0 bytes)");
}

#[test]
fn gzip_header_only_is_quarantined() {
    let full = gzip(export_csv("Charged", 10).as_bytes());
    assert_quarantined(&full[..10], "corrupt or truncated data");
}

#[test]
fn truncated_gzip_is_quarantined() {
    let full = gzip(export_csv("Charged", 3000).as_bytes());
    assert_quarantined(&full[..full.len() * 6 / 10], "corrupt or truncated data");
}

#[test]
fn binary_garbage_is_quarantined() {
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80)
        .collect();
    assert_quarantined(&garbage, "the header row is not valid UTF-8");
}

#[test]
fn plain_csv_under_a_gz_name_loads() {
    assert_loaded_with_rejects(export_csv("Charged", 20).as_bytes(), 20, 0);
}

#[test]
fn header_only_file_loads_zero_rows() {
    let (case, run) = with_good_file(&gzip(format!("{}\n", fixed_header()).as_bytes()));
    assert_eq!(run.code, 0);
    assert_eq!(case.ledger(BAD), ("loaded".into(), 0, 0, None));
}

#[test]
fn missing_ts_column_is_quarantined() {
    let text = "eventName,profile.identity\nCharged,u1\n";
    assert_quarantined(
        &gzip(text.as_bytes()),
        "required column \"ts\" is missing from the header",
    );
}

#[test]
fn duplicate_column_names_are_quarantined() {
    let text = "ts,eventName,eventProps.a,eventProps.a\n20220921000000,Charged,1,2\n";
    assert_quarantined(
        &gzip(text.as_bytes()),
        "column \"eventProps.a\" appears more than once in the header",
    );
}

#[test]
fn five_thousand_columns_are_quarantined_with_the_limit() {
    let mut header = String::from("ts,eventName");
    let mut row = String::from("20220921000000,Charged");
    for i in 0..5000 {
        header.push_str(&format!(",eventProps.p{i}"));
        row.push_str(&format!(",{i}"));
    }
    let text = format!("{header}\n{row}\n");
    assert_quarantined(
        &gzip(text.as_bytes()),
        "5002 columns is more than the warehouse allows in one table (1996)",
    );
}

/// 199 good rows and one bad one (0.5 %, under the 1 % default).
fn one_bad_row(bad_line: &str) -> Vec<u8> {
    let mut text = export_csv("Charged", 199);
    text.push_str(bad_line);
    text.push('\n');
    gzip(text.as_bytes())
}

#[test]
fn ragged_row_is_rejected() {
    let case = assert_loaded_with_rejects(&one_bad_row("20220921100000,Charged,u1"), 199, 1);
    assert_eq!(
        case.rejects(),
        vec![(201, None, "expected 22 fields, found 3".into())]
    );
    let raw = sqlite_value(&case.db, "SELECT raw_line FROM _tapline_rejects");
    assert_eq!(raw.as_deref(), Some("20220921100000,Charged,u1"));
}

#[test]
fn unterminated_quote_at_end_is_rejected() {
    let mut text = export_csv("Charged", 199);
    text.push_str(&fixed_row("20220921100000", "Charged", "u1", &["\"open"]));
    let case = assert_loaded_with_rejects(&gzip(text.as_bytes()), 199, 1);
    assert_eq!(
        case.rejects(),
        vec![(201, None, "unterminated quoted field at end of file".into())]
    );
}

#[test]
fn invalid_utf8_is_rejected() {
    let mut text = export_csv("Charged", 199).into_bytes();
    text.extend(fixed_row("20220921100000", "Charged", "u1", &["x"]).as_bytes());
    text.extend(b"\xff\xfe\n");
    let case = assert_loaded_with_rejects(&gzip(&text), 199, 1);
    assert_eq!(
        case.rejects(),
        vec![(
            201,
            None,
            "invalid UTF-8 in column \"eventProps.Amount\"".into()
        )]
    );
}

#[test]
fn nul_bytes_are_rejected() {
    let case = assert_loaded_with_rejects(
        &one_bad_row(&fixed_row("20220921100000", "Charged", "u\0x", &["1"])),
        199,
        1,
    );
    assert_eq!(
        case.rejects(),
        vec![(201, None, "NUL byte in a field".into())]
    );
}

#[test]
fn ts_more_than_a_day_outside_the_file_date_is_rejected() {
    let case = assert_loaded_with_rejects(
        &one_bad_row(&fixed_row("20220923000000", "Charged", "u1", &["1"])),
        199,
        1,
    );
    assert_eq!(
        case.rejects(),
        vec![(
            201,
            Some("ts".into()),
            "ts 2022-09-23T00:00:00Z is more than a day outside the file's date 2022-09-21".into()
        )]
    );
}

#[test]
fn a_one_mebibyte_field_loads_whole() {
    let mut text = format!("{},eventProps.Blob\n", fixed_header());
    text.push_str(&fixed_row(
        "20220921100000",
        "Charged",
        "u1",
        &[&"x".repeat(1 << 20)],
    ));
    text.push('\n');
    let case = assert_loaded_with_rejects(&gzip(text.as_bytes()), 1, 0);
    let len = sqlite_value(&case.db, "SELECT length(event_props_blob) FROM charged");
    assert_eq!(len.as_deref(), Some("1048576"));
}

#[test]
fn too_many_bad_rows_quarantine_then_a_higher_ratio_loads() {
    let mut text = export_csv("Charged", 95);
    for _ in 0..5 {
        text.push_str("notatime,Charged\n");
    }
    let (case, run) = with_good_file(&gzip(text.as_bytes()));
    assert_eq!(run.code, 2);
    let (status, _, rejected, error) = case.ledger(BAD);
    assert_eq!((status.as_str(), rejected), ("quarantined", 5));
    assert_eq!(
        error.as_deref(),
        Some("5 of 100 rows rejected (5.00 %), above the 1.00 % limit")
    );
    assert_eq!(
        case.rejects().len(),
        5,
        "a quarantined file's rejects are kept for diagnosis"
    );

    // Same version again: still quarantined, unless asked to retry.
    assert_eq!(case.load(&["--max-reject-ratio", "0.1"]).code, 2);
    let run = case.load(&["--max-reject-ratio", "0.1", "--retry-quarantined"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(case.ledger(BAD).0, "loaded");
    assert_eq!(case.count("charged"), 95);
    assert_eq!(
        case.count("app_launched"),
        50,
        "already loaded file not duplicated"
    );
}

#[test]
fn the_same_file_twice_loads_once() {
    let case = Case::new();
    let path = case.write(GOOD, &gzip(export_csv("App Launched", 30).as_bytes()));
    let p = path.to_str().unwrap();
    let wh = case.warehouse();
    let run = tapline(&["load", p, p, "--warehouse", &wh]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout.contains("already loaded      1"),
        "{}",
        run.stdout
    );
    let again = tapline(&["load", p, "--warehouse", &wh]);
    assert_eq!(again.code, 0);
    assert_eq!(case.count("app_launched"), 30);
    assert_eq!(
        sqlite_value(&case.db, "SELECT count(*) FROM _tapline_loads").as_deref(),
        Some("1")
    );
}

#[test]
fn a_rewritten_file_replaces_its_rows() {
    let case = Case::new();
    let path = case.write(GOOD, &gzip(export_csv("App Launched", 30).as_bytes()));
    assert_eq!(case.load(&[]).code, 0);
    // A corrected re-export under the same name: fewer rows, different size.
    std::fs::write(&path, gzip(export_csv("App Launched", 12).as_bytes())).unwrap();
    let run = case.load(&[]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(case.count("app_launched"), 12);
    let statuses = sqlite_rows(
        &case.db,
        "SELECT status FROM _tapline_loads ORDER BY load_id",
    );
    assert_eq!(
        statuses,
        vec![vec![Some("replaced".into())], vec![Some("loaded".into())]]
    );
}

#[test]
fn time_zone_converts_local_ts_to_utc() {
    let case = Case::new();
    let text = format!(
        "{}\n{}\n",
        fixed_header(),
        fixed_row("20220921100925", "Charged", "u1", &[])
    );
    case.write(BAD, &gzip(text.as_bytes()));
    assert_eq!(case.load(&["--timezone", "Asia/Kolkata"]).code, 0);
    assert_eq!(
        sqlite_value(&case.db, "SELECT ts FROM charged").as_deref(),
        Some("2022-09-21T04:39:25Z")
    );
}

#[test]
fn json_lines_land_in_the_same_columns_as_csv() {
    let case = Case::new();
    let csv = "ts,eventName,profile.identity,eventProps.Amount\n20220921000000,Charged,u1,5\n";
    case.write(BAD, &gzip(csv.as_bytes()));
    let json = r#"{"profile":{"identity":"u2"},"ts":20220921000001,"eventProps":{"Amount":7}}"#;
    case.write(
        "1663664837-1663785000-Charged-20220921-1-0.json.gz",
        &gzip(json.as_bytes()),
    );
    assert_eq!(case.load(&[]).code, 0);
    assert_eq!(
        sqlite_rows(
            &case.db,
            "SELECT event_name, profile_identity, event_props_amount FROM charged ORDER BY ts"
        ),
        vec![
            vec![Some("Charged".into()), Some("u1".into()), Some("5".into())],
            vec![Some("Charged".into()), Some("u2".into()), Some("7".into())],
        ]
    );
}

#[test]
fn a_missing_path_stops_before_anything_is_touched() {
    let case = Case::new();
    case.write(GOOD, &gzip(export_csv("App Launched", 3).as_bytes()));
    let wh = case.warehouse();
    let root = case.root.to_str().unwrap();
    let run = tapline(&["load", root, "/nonexistent/exports", "--warehouse", &wh]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot read /nonexistent/exports"),
        "{}",
        run.stderr
    );
    assert!(!case.db.exists(), "no warehouse created");
}

#[test]
fn usage_errors_exit_64_and_bad_config_exits_1() {
    assert_eq!(tapline(&["load"]).code, 64);
    assert_eq!(tapline(&["nonsense"]).code, 64);
    let case = Case::new();
    let run = case.load(&["--timezone", "Mars/Olympus"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("unknown time zone \"Mars/Olympus\""),
        "{}",
        run.stderr
    );
    let run = case.load(&["--max-reject-ratio", "2"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("max reject ratio must be between 0 and 1, got 2"),
        "{}",
        run.stderr
    );
    let root = case.root.to_str().unwrap();
    let run = tapline(&["load", root, "--warehouse", "mysql://x"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("cannot use warehouse \"mysql://x\""),
        "{}",
        run.stderr
    );
}

#[test]
fn help_explains_every_flag_with_examples() {
    let run = tapline(&["load", "--help"]);
    assert_eq!(run.code, 0);
    for needle in [
        "--warehouse",
        "--timezone",
        "--max-reject-ratio",
        "--retry-quarantined",
        "Examples:",
        "Exit codes:",
    ] {
        assert!(
            run.stdout.contains(needle),
            "load --help lacks {needle}:\n{}",
            run.stdout
        );
    }
    for command in ["status", "query"] {
        let run = tapline(&[command, "--help"]);
        assert_eq!(run.code, 0);
        assert!(
            run.stdout.contains("--warehouse") && run.stdout.contains("Examples:"),
            "{}",
            run.stdout
        );
    }
}

#[test]
fn profile_and_parquet_exports_are_skipped_with_a_reason() {
    let case = Case::new();
    case.write(
        "100000000-1761651721-1761651721-0.csv.gz",
        &gzip(b"identity,Email\nu1,a@b.c\n"),
    );
    case.write("events/1-2-Charged-20220921-0-0.parquet", b"PAR1");
    let run = case.load(&["--list-files"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout.contains("profile exports are not loaded yet"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("Parquet exports are not supported yet"),
        "{}",
        run.stdout
    );
    assert_eq!(
        sqlite_value(&case.db, "SELECT count(*) FROM _tapline_loads").as_deref(),
        Some("0")
    );
}

#[test]
fn status_lists_recent_loads() {
    let case = Case::new();
    case.write(GOOD, &gzip(export_csv("App Launched", 3).as_bytes()));
    case.write("README.txt", b"not an export");
    assert_eq!(
        case.load(&[]).code,
        0,
        "a skipped file does not fail the run"
    );
    let run = tapline(&["status", "--warehouse", &case.warehouse()]);
    assert_eq!(run.code, 0);
    assert!(
        run.stdout.contains("loaded") && run.stdout.contains(GOOD),
        "{}",
        run.stdout
    );
}

/// Wait for nothing: the FIFO's writes return only once the loader has read the bytes.
#[cfg(unix)]
#[test]
fn killed_mid_file_leaves_nothing_and_the_rerun_loads_once() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let case = Case::new();
    let rows = 200_000;
    let full = gzip(export_csv("Charged", rows).as_bytes());
    let fifo = case.root.join(BAD);
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let wh = case.warehouse();
    let mut child = Command::new(tapline_tests::bin("tapline"))
        .args(["load", fifo.to_str().unwrap(), "--warehouse", &wh])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        let mut pipe = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        pipe.write_all(&full[..full.len() * 8 / 10]).unwrap();
        pipe.flush().unwrap();
        // The loader has now read most of the file (a pipe holds 64 KiB) and is inside its
        // transaction: the journal of the open write transaction is on disk.
        let journal = PathBuf::from(format!("{}-journal", case.db.display()));
        wait_until_exists(&journal);
        child.kill().unwrap();
    }
    child.wait().unwrap();
    assert_eq!(
        sqlite_value(&case.db, "SELECT count(*) FROM _tapline_loads").as_deref(),
        Some("0"),
        "no ledger row survives a kill"
    );
    assert_eq!(
        sqlite_value(
            &case.db,
            "SELECT count(*) FROM sqlite_master WHERE name = 'charged'"
        )
        .as_deref(),
        Some("0"),
        "no partial table or rows survive a kill"
    );
    std::fs::remove_file(&fifo).unwrap();
    std::fs::write(&fifo, &full).unwrap();
    let run = case.load(&[]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(case.count("charged"), rows as u64);
    assert_eq!(case.ledger(BAD).0, "loaded");
}

/// Polls for a file the loader creates; bounded, so a missing feature fails instead of hanging.
fn wait_until_exists(path: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::yield_now();
    }
}

/// The demo set: every good row lands once, the bad rows are rejected with reasons, the corrupt
/// file is quarantined and the README skipped; a second run adds nothing.
#[test]
fn demo_exports_load_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    let generated = std::process::Command::new(tapline_tests::bin("tapline-sample-exports"))
        .args(["demo", "--out", exports.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(generated.status.success());
    let stdout = String::from_utf8(generated.stdout).unwrap();
    let expected: std::collections::HashMap<&str, u64> = stdout
        .lines()
        .last()
        .unwrap()
        .strip_prefix("EXPECTED ")
        .unwrap()
        .split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k, v.parse().unwrap())
        })
        .collect();
    let db = dir.path().join("w.sqlite");
    let wh = format!("sqlite://{}", db.display());
    let load = || {
        tapline(&[
            "load",
            exports.to_str().unwrap(),
            "--warehouse",
            &wh,
            "--timezone",
            "Asia/Kolkata",
        ])
    };
    let run = load();
    assert_eq!(
        run.code, 2,
        "the corrupt file makes the run exit 2: {}",
        run.stdout
    );
    let total_rows = || -> u64 {
        sqlite_value(&db, "SELECT count(*) FROM all_events")
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(total_rows(), expected["good_rows"]);
    assert_eq!(
        sqlite_value(&db, "SELECT count(*) FROM _tapline_rejects").unwrap(),
        expected["bad_rows"].to_string()
    );
    assert_eq!(
        sqlite_value(
            &db,
            "SELECT count(*) FROM _tapline_loads WHERE status = 'quarantined'"
        )
        .unwrap(),
        expected["corrupt_files"].to_string()
    );
    assert_eq!(files_with(&run.stdout, "skipped"), 1, "{}", run.stdout);
    let tables = sqlite_rows(&db, "SELECT table_name FROM _tapline_tables ORDER BY 1");
    assert_eq!(
        tables,
        vec![
            vec![Some("app_launched".into())],
            vec![Some("charged".into())],
            vec![Some("order_placed".into())]
        ]
    );
    // The later Charged file's extra property became a column; earlier rows read NULL there.
    let coupons = sqlite_value(&db, "SELECT count(event_props_coupon_code) FROM charged").unwrap();
    assert!(coupons.parse::<u64>().unwrap() > 0);

    let again = load();
    assert_eq!(again.code, 2);
    assert_eq!(
        total_rows(),
        expected["good_rows"],
        "a second run adds nothing"
    );
    assert_eq!(
        files_with(&again.stdout, "already loaded"),
        10,
        "{}",
        again.stdout
    );
}

#[test]
fn sweep_loads_what_is_new_and_since_backfills_from_a_date() {
    let case = Case::new();
    let old = "1663664837-1663785000-Charged-20220920-0-0.csv.gz";
    let text = export_csv("Charged", 10).replace("20220921", "20220920");
    case.write(old, &gzip(text.as_bytes()));
    case.write(BAD, &gzip(export_csv("Charged", 7).as_bytes()));
    let root = case.root.to_str().unwrap().to_string();
    let wh = case.warehouse();

    let run = tapline(&["sweep", &root, "--warehouse", &wh, "--since", "2022-09-21"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("1 exports dated before 2022-09-21 were not considered (--since)."),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Sweep: 1 new objects loaded; 0 already in the ledger, skipped."),
        "{}",
        run.stdout
    );
    assert_eq!(case.count("charged"), 7);

    let run = tapline(&["sweep", &root, "--warehouse", &wh]);
    assert_eq!(run.code, 0);
    assert!(
        run.stdout
            .contains("Sweep: 1 new objects loaded; 1 already in the ledger, skipped."),
        "{}",
        run.stdout
    );
    assert_eq!(case.count("charged"), 17);

    let bad = tapline(&["sweep", &root, "--since", "21/09/2022"]);
    assert_eq!(bad.code, 64);
    assert!(
        bad.stderr.contains("is not a date: use YYYY-MM-DD"),
        "{}",
        bad.stderr
    );
}
