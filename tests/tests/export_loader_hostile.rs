//! `tapline load` on hostile export objects (issue 14): a file of nothing but bad rows, a
//! decompression bomb, over-long column names, a JSON record naming one column twice. Each
//! ends with its exact outcome, and the good file beside it loads whole.

use std::path::{Path, PathBuf};

use tapline_tests::servers::pg::PgSchema;
use tapline_tests::{
    export_csv, fixed_header, fixed_row, gzip, sqlite_rows, sqlite_value, tapline,
};

const GOOD: &str = "1663664837-1663785000-App-Launched-20220921-0-0.csv.gz";
const BAD: &str = "1663664837-1663785000-Charged-20220921-0-0.csv.gz";
const BAD_JSON: &str = "1663664837-1663785000-Charged-20220921-0-0.json.gz";
const GOOD_ROWS: usize = 50;

/// A folder with the good file, one hostile file, and a SQLite warehouse beside it.
struct Case {
    _dir: tempfile::TempDir,
    root: PathBuf,
    db: PathBuf,
}

impl Case {
    fn new(bad_name: &str, bad: &[u8]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("exports");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(
            root.join(GOOD),
            gzip(export_csv("App Launched", GOOD_ROWS).as_bytes()),
        )
        .unwrap();
        std::fs::write(root.join(bad_name), bad).unwrap();
        let db = dir.path().join("w.sqlite");
        Self {
            _dir: dir,
            root,
            db,
        }
    }

    fn load(&self, extra: &[&str]) -> tapline_tests::Run {
        let root = self.root.to_str().unwrap().to_string();
        let wh = format!("sqlite://{}", self.db.display());
        let mut args = vec!["load", root.as_str(), "--warehouse", wh.as_str()];
        args.extend_from_slice(extra);
        tapline(&args)
    }

    fn value(&self, sql: &str) -> Option<String> {
        sqlite_value(&self.db, sql)
    }

    /// (status, rows_loaded, rows_rejected, error) of the ledger row of `name`.
    fn ledger(&self, name: &str) -> (String, String, String, Option<String>) {
        let rows = sqlite_rows(
            &self.db,
            &format!(
                "SELECT status, rows_loaded, rows_rejected, error FROM _tapline_loads WHERE uri LIKE '%/{name}'"
            ),
        );
        assert_eq!(rows.len(), 1, "one ledger row for {name}: {rows:?}");
        let r = rows[0].clone();
        (
            r[0].clone().unwrap(),
            r[1].clone().unwrap(),
            r[2].clone().unwrap(),
            r[3].clone(),
        )
    }

    fn assert_good_file_loaded(&self) {
        assert_eq!(
            self.value("SELECT count(*) FROM app_launched").as_deref(),
            Some("50"),
            "the good file beside the hostile one loads whole"
        );
        assert_eq!(
            self.ledger(GOOD),
            ("loaded".into(), "50".into(), "0".into(), None)
        );
    }

    fn assert_no_charged_table(&self) {
        assert_eq!(
            self.value("SELECT count(*) FROM _tapline_tables WHERE table_name = 'charged'")
                .as_deref(),
            Some("0"),
            "nothing of the hostile file is loaded"
        );
    }
}

fn bad_rows_csv(rows: usize) -> Vec<u8> {
    let mut text = format!("{},eventProps.Amount\n", fixed_header());
    for i in 0..rows {
        text.push_str(&fixed_row(
            "not-a-time",
            "Charged",
            &format!("u{i}"),
            &["1"],
        ));
        text.push('\n');
    }
    gzip(text.as_bytes())
}

#[test]
fn a_hundred_thousand_bad_rows_are_quarantined_with_ten_thousand_rejects_stored() {
    let case = Case::new(BAD, &bad_rows_csv(100_000));
    let run = case.load(&[]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        case.ledger(BAD),
        (
            "quarantined".into(),
            "0".into(),
            "100000".into(),
            Some("100000 of 100000 rows rejected (100.00 %), above the 1.00 % limit".into())
        )
    );
    assert_eq!(
        sqlite_rows(
            &case.db,
            &format!(
                "SELECT count(*), min(line), max(line), count(DISTINCT reason), min(reason) \
                 FROM _tapline_rejects WHERE uri LIKE '%/{BAD}'"
            )
        ),
        vec![vec![
            Some("10000".into()),
            Some("2".into()),
            Some("10001".into()),
            Some("1".into()),
            Some("ts \"not-a-time\" is neither yyyyMMddHHmmss nor epoch seconds".into()),
        ]],
        "the first 10,000 rejects are stored, the rest counted"
    );
    case.assert_no_charged_table();
    case.assert_good_file_loaded();
}

const BOMB_ROWS: usize = 420_000;

/// Valid rows repeated until the gzip is a bomb: far past 100 times its size.
fn gzip_bomb() -> Vec<u8> {
    let mut text = format!("{},eventProps.Amount\n", fixed_header());
    let row = fixed_row("20220921000000", "Charged", "u1", &["1"]);
    // About 20 MB of text (gzip: about 120 KB): past the 16 MiB that is never judged by the ratio.
    for _ in 0..BOMB_ROWS {
        text.push_str(&row);
        text.push('\n');
    }
    gzip(text.as_bytes())
}

#[test]
fn a_gzip_bomb_is_quarantined_with_the_ratio_and_loads_nothing() {
    let bomb = gzip_bomb();
    // Compressed input is read in 64 KiB steps; this bomb (about 120 KB) is read whole before
    // its text reaches the 16 MiB that the ratio leaves alone.
    assert!(bomb.len() < 2 * 64 * 1024);
    let read = bomb.len();
    let case = Case::new(BAD, &bomb);
    let run = case.load(&[]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    let reason = format!(
        "decompresses to more than 100x its compressed size ({read} bytes read): a decompression bomb?"
    );
    assert_eq!(
        case.ledger(BAD),
        ("quarantined".into(), "0".into(), "0".into(), Some(reason))
    );
    case.assert_no_charged_table();
    case.assert_good_file_loaded();

    // Raising the ratio past the bomb's own lets it load: the flag is what decides.
    let run = case.load(&["--retry-quarantined", "--max-decompressed-ratio", "0"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        case.value("SELECT count(*) FROM charged").as_deref(),
        Some(BOMB_ROWS.to_string().as_str())
    );
}

#[test]
fn the_absolute_decompressed_limit_quarantines_with_its_reason() {
    let case = Case::new(BAD, &gzip(export_csv("Charged", 100).as_bytes()));
    let run = case.load(&["--max-decompressed-bytes", "4096"]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        case.ledger(BAD),
        (
            "quarantined".into(),
            "0".into(),
            "0".into(),
            Some("decompresses to more than 4096 bytes, the per-object limit".into())
        )
    );
    case.assert_no_charged_table();
    // The good file is smaller than the limit.
    case.assert_good_file_loaded();
}

#[test]
fn an_overlong_csv_header_name_quarantines_the_file() {
    let long = format!("eventProps.{}", "x".repeat(2000));
    let text = format!(
        "{},{long}\n{}\n",
        fixed_header(),
        fixed_row("20220921000000", "Charged", "u1", &["1"])
    );
    let case = Case::new(BAD, &gzip(text.as_bytes()));
    let run = case.load(&[]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    let (status, rows, _, error) = case.ledger(BAD);
    assert_eq!((status.as_str(), rows.as_str()), ("quarantined", "0"));
    assert_eq!(
        error.as_deref(),
        Some(
            "header column 22 is 2011 bytes long, above the 1024-byte limit for a column name: \
             \"eventProps.xxxxxxxxxxxxxxxxxxxxxxxxxxxxx…\""
        )
    );
    case.assert_no_charged_table();
    case.assert_good_file_loaded();
}

/// A JSON export whose second record names `eventProps.a` twice (dotted and nested).
fn json_with_a_twice_named_column() -> Vec<u8> {
    let lines = [
        r#"{"ts":20220921000000,"eventName":"Charged","eventProps":{"a":"1"}}"#,
        r#"{"ts":20220921000001,"eventName":"Charged","eventProps.a":"2","eventProps":{"a":"3"}}"#,
        r#"{"ts":20220921000002,"eventName":"Charged","eventProps":{"a":"4"}}"#,
    ];
    let mut text = lines.join("\n");
    // Enough good rows that one reject stays under the 1 % ratio.
    for i in 3..200 {
        text.push('\n');
        text.push_str(&json_row(i));
    }
    text.push('\n');
    gzip(text.as_bytes())
}

const TWICE_REASON: &str =
    "the name \"eventProps.a\" appears twice in the record once nested keys are flattened";

#[test]
fn a_json_record_naming_a_column_twice_is_rejected_alone_on_sqlite() {
    let case = Case::new(BAD_JSON, &json_with_a_twice_named_column());
    let run = case.load(&[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        case.ledger(BAD_JSON),
        ("loaded".into(), "199".into(), "1".into(), None)
    );
    assert_eq!(
        sqlite_rows(
            &case.db,
            "SELECT line, column_name, reason FROM _tapline_rejects"
        ),
        vec![vec![
            Some("2".into()),
            Some("eventProps.a".into()),
            Some(TWICE_REASON.into())
        ]]
    );
    assert_eq!(
        case.value("SELECT group_concat(event_props_a) FROM (SELECT event_props_a FROM charged ORDER BY ts LIMIT 3)")
            .as_deref(),
        Some("1,4,3")
    );
    case.assert_good_file_loaded();
}

#[test]
fn a_json_record_naming_a_column_twice_is_rejected_alone_on_postgres() {
    let db = PgSchema::new("twice_named");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), BAD_JSON, &json_with_a_twice_named_column());
    write(
        dir.path(),
        GOOD,
        &gzip(export_csv("App Launched", GOOD_ROWS).as_bytes()),
    );
    let run = db.load(dir.path().to_str().unwrap());
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        db.psql(&format!(
            "SELECT status || ' ' || rows_loaded || ' ' || rows_rejected FROM _tapline_loads WHERE uri LIKE '%/{BAD_JSON}'"
        )),
        "loaded 199 1"
    );
    assert_eq!(
        db.psql("SELECT line || '|' || column_name || '|' || reason FROM _tapline_rejects"),
        format!("2|eventProps.a|{TWICE_REASON}")
    );
    assert_eq!(db.psql("SELECT count(*) FROM charged"), "199");
    assert_eq!(db.psql("SELECT count(*) FROM app_launched"), "50");
}

/// A good JSON record, `i` seconds after midnight on the files' date.
fn json_row(i: usize) -> String {
    format!(
        r#"{{"ts":20220921{:02}{:02}{:02},"eventName":"Charged","eventProps":{{"a":"{i}"}}}}"#,
        i / 3600,
        i / 60 % 60,
        i % 60
    )
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

#[test]
fn a_json_line_with_a_long_key_over_many_leaves_is_one_reject() {
    let leaves: Vec<String> = (0..1500).map(|i| format!("\"k{i}\":{i}")).collect();
    let hostile = format!(
        "{{\"ts\":20220921000000,\"eventName\":\"Charged\",\"{}\":{{{}}}}}",
        "L".repeat(180_000),
        leaves.join(",")
    );
    let mut text = hostile;
    for i in 1..200 {
        text.push('\n');
        text.push_str(&json_row(i));
    }
    text.push('\n');
    let case = Case::new(BAD_JSON, &gzip(text.as_bytes()));
    let run = case.load(&[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        case.ledger(BAD_JSON),
        ("loaded".into(), "199".into(), "1".into(), None)
    );
    assert_eq!(
        case.value("SELECT reason FROM _tapline_rejects"),
        Some(format!(
            "a key flattens to a 180000-byte name, above the 1024-byte limit for a column name: \"{}…\"",
            "L".repeat(40)
        ))
    );
    let longest: usize = case
        .value("SELECT max(length(raw_name)) FROM _tapline_columns")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(longest <= 1024, "no over-long name reaches the catalog");
    case.assert_good_file_loaded();
}
