//! A typed view read through a real client library: Python's stdlib `sqlite3` (what a notebook
//! and pandas' `read_sql` use) reads `bi_charged` of a loaded warehouse and gets `int`, `float`
//! and `None` for the typed columns and `str` for the text ones, each equal to its raw value
//! read as that type (`tests/scripts/read_typed_views_sqlite.py`).

use tapline_tests::{fixed_header, fixed_row, gzip};

tapline_tests::export_case!();

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scripts/read_typed_views_sqlite.py"
);

/// The script's answer on `view` (over raw `table`): exit code, stdout, stderr.
fn read_with_python(case: &Case, view: &str, table: &str) -> (i32, String, String) {
    let out = std::process::Command::new("python3")
        .arg(SCRIPT)
        .arg(&case.db)
        .args([view, table])
        .output()
        .expect("python3 runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The demo's event exports plus one "Charged" file with a boolean property (`eventProps.Paid`)
/// and a decimal that is whole in one row (`7`) and fractional in the other.
fn loaded() -> Case {
    let case = Case(tapline_tests::ExportCase::new());
    let out = std::process::Command::new(tapline_tests::bin("tapline-sample-exports"))
        .args(["demo", "--out", case.root.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let csv = format!(
        "{},eventProps.Amount,eventProps.Paid\n{}\n{}\n",
        fixed_header(),
        fixed_row("20220921000000", "Charged", "u1", &["7", "true"]),
        fixed_row("20220921000001", "Charged", "u2", &["12.5", "false"]),
    );
    case.write_bytes(
        "1663664837-1663785000-Charged-20220921-9-0.csv.gz",
        &gzip(csv.as_bytes()),
    );
    let run = case.load(&["--timezone", "Asia/Kolkata"]);
    assert_eq!(run.code, 2, "the demo's corrupt file: {}", run.stdout);
    case
}

#[test]
fn python_sqlite3_reads_bi_charged_as_numbers_and_the_raw_table_as_text() {
    let case = loaded();
    let (code, stdout, stderr) = read_with_python(&case, "bi_charged", "charged");
    assert_eq!(code, 0, "{stderr}");
    let answer: serde_json::Value = serde_json::from_str(stdout.trim()).expect(&stdout);
    let rows: u64 = case
        .value("SELECT count(*) FROM charged")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(answer["rows"], rows);
    for python_type in ["int", "float", "str", "NoneType"] {
        assert!(
            answer["types"][python_type].as_u64() > Some(0),
            "{python_type}: {answer}"
        );
    }
    assert_eq!(answer["kinds"]["event_props_amount"], "decimal");
    assert_eq!(answer["kinds"]["event_props_paid"], "boolean");
    assert_eq!(answer["kinds"]["device_info_dpi"], "integer");
    // SQLite declares a view column's type only for a bare table column (TEXT here): a cast
    // column has none, which is why the script checks the values' types.
    assert_eq!(answer["declared"]["event_props_amount"], "");
    assert_eq!(answer["declared"]["profile_email"], "TEXT");

    // The file's own rows, typed beside raw, through the same client.
    let py = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); print(repr(c.execute(\
             \"SELECT event_props_amount, event_props_paid, profile_identity FROM bi_charged \
             WHERE _source_uri LIKE '%-9-0.csv.gz' ORDER BY _source_line\").fetchall()), \
             repr(c.execute(\"SELECT SUM(event_props_amount) FROM bi_charged \
             WHERE _source_uri LIKE '%-9-0.csv.gz'\").fetchone()))",
        ])
        .arg(&case.db)
        .output()
        .unwrap();
    assert!(py.status.success(), "{py:?}");
    assert_eq!(
        String::from_utf8_lossy(&py.stdout).trim(),
        "[(7.0, 1, 'u1'), (12.5, 0, 'u2')] (19.5,)"
    );
}

#[test]
fn the_check_fails_on_the_raw_table_whose_numbers_are_text() {
    let case = loaded();
    let (code, stdout, stderr) = read_with_python(&case, "charged", "charged");
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.starts_with("charged."), "{stderr}");
    assert!(stderr.contains("(str) for raw"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
}
