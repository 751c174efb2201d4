//! `tapline load` end to end: the built binary on fixture folders, checked in the SQLite file.

use std::path::{Path, PathBuf};

use tapline_tests::{
    export_csv, fixed_header, fixed_row, gzip, sqlite_rows, sqlite_value, tapline,
};

tapline_tests::export_case!();

impl Case {
    fn new() -> Self {
        Self(tapline_tests::ExportCase::new())
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        self.write_bytes(name, bytes)
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
fn profile_and_event_parquet_are_read_and_a_broken_one_quarantined() {
    let case = Case::new();
    case.write(
        "100000000-1761651721-1761651721-0.csv.gz",
        &gzip(b"identity,Email\nu1,a@b.c\n"),
    );
    case.write("100000000-55-1663785000-0-parquet.gz", &gzip(b"PAR1"));
    case.write("events/1-2-Charged-20220921-0-0.parquet", b"PAR1");
    let run = case.load(&["--list-files"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    // Profile CSV loads (`export_loader_profiles`); this profile Parquet is not Parquet.
    let profile_parquet = run
        .stdout
        .lines()
        .find(|l| l.contains("100000000-55-1663785000-0-parquet.gz"))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(
        profile_parquet.starts_with("quarantined")
            && profile_parquet.contains("not a Parquet file, or its footer is damaged"),
        "{}",
        run.stdout
    );
    assert_eq!(case.count("profile_snapshots"), 1);
    // Parquet event exports are read (`export_loader_parquet`): this 4-byte one is not Parquet.
    let parquet_line = run
        .stdout
        .lines()
        .find(|l| l.contains("1-2-Charged-20220921-0-0.parquet"))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(
        parquet_line.starts_with("quarantined") && parquet_line.contains("footer is damaged"),
        "{}",
        run.stdout
    );
    assert_eq!(
        sqlite_value(&case.db, "SELECT count(*) FROM _tapline_loads").as_deref(),
        Some("3")
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
    let mut child = tapline_tests::tapline_command()
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
    let expected = tapline_tests::expected_counts(&stdout);
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

/// Passwords that stop URL parsers, or that they decode.
const NASTY_PASSWORDS: &[&str] = &["s3cr/et", "s3cr?et", "s3cr@et", "s3cr%et", "s3/c?r@e%t#1"];

/// `password` percent-encoded as Tapline puts it into a URL.
fn encoded(password: &str) -> String {
    password
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs `tapline` with extra environment variables (Tapline's own removed first).
fn tapline_with_env(args: &[&str], env: &[(&str, &str)]) -> tapline_tests::Run {
    let mut command = tapline_tests::tapline_command();
    command.args(args);
    command.envs(env.iter().copied());
    command.output().expect("run tapline").into()
}

fn assert_no_password(run: &tapline_tests::Run, password: &str, what: &str) {
    for text in [&run.stdout, &run.stderr] {
        assert!(
            !text.contains(password) && !text.contains(&encoded(password)),
            "{what}: the password shows:\n{text}"
        );
    }
}

/// Every way a warehouse URL with a password can fail to open: exit 1, the error names the
/// URL with `***`, never the password (raw or encoded), whatever characters it holds.
#[test]
fn a_warehouse_url_that_fails_never_prints_its_password() {
    let case = Case::new();
    case.write(GOOD, &gzip(export_csv("App Launched", 3).as_bytes()));
    let root = case.root.to_str().unwrap();
    for password in NASTY_PASSWORDS {
        for url in [
            format!("postgress://loader:{password}@db.example/w"),
            format!("Postgres://loader:{password}@127.0.0.1:1/w"),
            format!("POSTGRESQL://loader:{password}@db.example:notaport/w"),
            format!("postgres://loader@db.example/w?password={password}&x=1"),
            format!("bigquery://loader:{password}@acme/clevertap"),
            format!("loader:{password}@db.example/w"),
        ] {
            for (args, env) in [
                (vec!["load", root, "--warehouse", url.as_str()], vec![]),
                (vec!["status"], vec![("TAPLINE_WAREHOUSE", url.as_str())]),
                (vec!["query", "SELECT 1", "-w", url.as_str()], vec![]),
            ] {
                let run = tapline_with_env(&args, &env);
                assert_eq!(run.code, 1, "{url}: {}", run.stderr);
                assert!(run.stderr.starts_with("error: "), "{url}: {}", run.stderr);
                assert_no_password(&run, password, &url);
            }
        }
        // The password from the environment, a typo in the URL: the URL is put together with
        // the password before it is opened, and still never printed with it.
        for (url, variable) in [
            (
                "postgress://loader@db.example/w",
                "TAPLINE_WAREHOUSE_PASSWORD",
            ),
            (
                "Postgres://loader@127.0.0.1:1/w",
                "TAPLINE_WAREHOUSE_PASSWORD",
            ),
            ("Postgres://loader@127.0.0.1:1/w", "PGPASSWORD"),
        ] {
            let run =
                tapline_with_env(&["load", root, "--warehouse", url], &[(variable, password)]);
            assert_eq!(run.code, 1, "{url}: {}", run.stderr);
            assert!(
                run.stderr.contains("loader:***@") || run.stderr.contains("loader@"),
                "{url}: {}",
                run.stderr
            );
            assert_no_password(&run, password, url);
        }
    }
    assert!(!case.db.exists());
}

#[test]
fn help_hides_the_warehouse_from_the_environment() {
    let url = "postgres://loader:s3cr/et@db.example/w";
    for command in ["load", "status", "query", "sweep"] {
        let run = tapline_with_env(&[command, "--help"], &[("TAPLINE_WAREHOUSE", url)]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(
            run.stdout.contains("env: TAPLINE_WAREHOUSE"),
            "{}",
            run.stdout
        );
        assert!(!run.stdout.contains("s3cr"), "{}", run.stdout);
        assert!(
            run.stdout.contains("TAPLINE_WAREHOUSE_PASSWORD"),
            "{}",
            run.stdout
        );
    }
}

/// With PostgreSQL up (`tests/scripts/with-postgres.sh`): a password full of URL characters
/// given through `TAPLINE_WAREHOUSE_PASSWORD` or `PGPASSWORD` reaches the driver as one
/// password, and the run loads. (The test server trusts loopback, so this checks the parsing.)
#[test]
fn a_password_from_the_environment_opens_postgres() {
    let Ok(base) = std::env::var("TAPLINE_TEST_POSTGRES_URL") else {
        eprintln!("skipped: TAPLINE_TEST_POSTGRES_URL is not set");
        return;
    };
    for variable in ["TAPLINE_WAREHOUSE_PASSWORD", "PGPASSWORD"] {
        let run = tapline_with_env(
            &["status", "--warehouse", &base],
            &[(variable, "s3/c?r@e%t#1")],
        );
        assert_eq!(run.code, 0, "{variable}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stdout.starts_with("Recent loads in postgres://"),
            "{}",
            run.stdout
        );
        assert_no_password(&run, "s3/c?r@e%t#1", variable);
    }
}

/// A folder holding a link named like an export (to a file outside), a FIFO named like one, an
/// unreadable folder of exports, and good files: the good files load, each bad entry is listed
/// as failed with its reason (exit 2), nothing is read through the link, nothing blocks.
/// Run as `nobody`, since root reads every folder.
#[test]
fn links_fifos_and_unreadable_folders_are_reported_and_the_rest_loads() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;

    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let outside = dir.path().join("outside.csv");
    std::fs::write(&outside, export_csv("Charged", 7)).unwrap();
    let root = dir.path().join("exports");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(
        root.join(GOOD),
        gzip(export_csv("App Launched", 50).as_bytes()),
    )
    .unwrap();
    let other = "1663664837-1663785000-Search-20220921-0-0.csv.gz";
    std::fs::write(root.join(other), gzip(export_csv("Search", 20).as_bytes())).unwrap();
    std::os::unix::fs::symlink(&outside, root.join(BAD)).unwrap();
    let fifo = root.join("1663664837-1663785000-Order-Placed-20220921-0-0.csv.gz");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let locked = root.join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::write(
        locked.join("1663664837-1663785000-Viewed-20220921-0-0.csv.gz"),
        gzip(export_csv("Viewed", 5).as_bytes()),
    )
    .unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();

    let db = dir.path().join("w.sqlite");
    let wh = format!("sqlite://{}", db.display());
    let output = tapline_tests::tapline_command()
        .args(["load", root.to_str().unwrap(), "--warehouse", &wh])
        .env_remove("TAPLINE_WAREHOUSE")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let run: tapline_tests::Run = output.into();
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert_eq!(files_with(&run.stdout, "loaded"), 2, "{}", run.stdout);
    assert_eq!(files_with(&run.stdout, "failed"), 3, "{}", run.stdout);
    let detail_line = |name: &str| {
        run.stdout
            .lines()
            .find(|l| l.starts_with("failed") && l.contains(name))
            .unwrap_or_else(|| panic!("no failed line for {name}:\n{}", run.stdout))
            .to_string()
    };
    assert!(
        detail_line(&format!("exports/{BAD}"))
            .ends_with("a symbolic link: not followed, only regular files are loaded"),
        "{}",
        run.stdout
    );
    assert!(
        detail_line("Order-Placed").ends_with("a FIFO: only regular files are loaded"),
        "{}",
        run.stdout
    );
    assert!(
        detail_line("exports/locked").ends_with("cannot be read: Permission denied (os error 13)"),
        "{}",
        run.stdout
    );
    let count = |table: &str| sqlite_value(&db, &format!("SELECT count(*) FROM {table}"));
    assert_eq!(count("app_launched").as_deref(), Some("50"));
    assert_eq!(count("search").as_deref(), Some("20"));
    assert_eq!(
        sqlite_value(
            &db,
            "SELECT count(*) FROM sqlite_master WHERE name IN ('charged', 'order_placed', 'viewed')"
        )
        .as_deref(),
        Some("0"),
        "nothing read through the link, the FIFO or the locked folder"
    );
    assert_eq!(
        sqlite_value(&db, "SELECT group_concat(status) FROM _tapline_loads").as_deref(),
        Some("loaded,loaded"),
        "refused entries leave no ledger rows"
    );
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A folder and a file named with a terminal escape (ESC [2J clears the screen) and a
/// right-to-left override: `load` and `status` print them escaped, never raw.
#[test]
fn names_with_terminal_escapes_print_escaped_in_load_and_status() {
    let case = Case::new();
    let name = "1663664837-1663785000-Charged\u{1b}[2J\u{202e}-20220921-0-0.csv.gz";
    case.write(
        &format!("evil\u{1b}]0;pwned\u{7}/{name}"),
        &gzip(export_csv("Charged", 3).as_bytes()),
    );
    case.write(GOOD, &gzip(export_csv("App Launched", 3).as_bytes()));
    let run = case.load(&["--list-files"]);
    let status = tapline(&["status", "--warehouse", &case.warehouse()]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    for (what, text) in [("load", &run.stdout), ("status", &status.stdout)] {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{202e}') && !text.contains('\u{7}'),
            "{what} printed a raw control character:\n{text:?}"
        );
        assert!(
            text.contains("Charged\\u{1b}[2J\\u{202e}-20220921"),
            "{what} lacks the escaped name:\n{text}"
        );
        assert!(
            text.contains("evil\\u{1b}]0;pwned\\u{7}/"),
            "{what}:\n{text}"
        );
    }
    assert!(!run.stderr.contains('\u{1b}'), "{:?}", run.stderr);
    // Log lines name the object too ("Object already handled."): text and JSON logs carry it
    // escaped, never the raw override or a raw control character.
    for format in ["text", "json"] {
        let again = case.load(&["-v", "--log-format", format]);
        assert!(
            again.stderr.contains("Object already handled."),
            "{format}: {}",
            again.stderr
        );
        assert!(
            !again.stderr.contains('\u{202e}') && !again.stderr.contains('\u{7}'),
            "{format} logs carry a raw override or control:\n{:?}",
            again.stderr
        );
        assert!(
            again.stderr.contains("\\u{202e}-20220921"),
            "{format} logs lack the escaped name:\n{}",
            again.stderr
        );
        if format == "json" {
            for line in again.stderr.lines().filter(|l| l.starts_with('{')) {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            }
        }
    }
}

/// The Cloud Run loader and puller put `TAPLINE_WAREHOUSE` together with the password Secret
/// Manager injects before they open it: a typo in the URL stops the start (non-zero exit) and
/// the logs name the URL with `***`, never the password.
#[test]
fn the_cloud_run_services_never_log_the_injected_password_on_a_bad_url() {
    for password in NASTY_PASSWORDS {
        for url in [
            "postgress://loader@db.example/w",
            "Postgres://loader@db.example:notaport/w",
        ] {
            for binary in ["export-loader-cloud-run", "api-puller-cloud-run"] {
                let output = std::process::Command::new(tapline_tests::bin(binary))
                    .env_clear()
                    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                    .env("TAPLINE_WAREHOUSE", url)
                    .env("TAPLINE_WAREHOUSE_PASSWORD", password)
                    .env("CLEVERTAP_ACCOUNT_ID", "TEST-ACC-1")
                    .env("CLEVERTAP_PASSCODE", "passcode")
                    .env("TAPLINE_PULL_EVENTS", "Charged")
                    .env("PORT", "0")
                    .env("TAPLINE_LISTEN_HOST", "127.0.0.1")
                    .output()
                    .unwrap();
                let run: tapline_tests::Run = output.into();
                assert_ne!(run.code, 0, "{binary} {url} started:\n{}", run.stdout);
                let logs = format!("{}{}", run.stdout, run.stderr);
                assert!(logs.contains("loader:***@"), "{binary} {url}:\n{logs}");
                assert_no_password(&run, password, binary);
            }
        }
    }
}
