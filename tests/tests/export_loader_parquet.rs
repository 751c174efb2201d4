//! Parquet event exports through `tapline load` into real SQLite: the same events exported as
//! CSV and as Parquet (Export Center's layout, written by `tapline-sample-exports parquet`)
//! land as the same rows under the same column names, and bad Parquet is quarantined or its
//! rows rejected with the reason.

use std::path::{Path, PathBuf};

use tapline_tests::{bin, gzip, sqlite_rows, sqlite_value, tapline};

/// The generator's files in a temporary folder.
struct Generated {
    dir: tempfile::TempDir,
}

impl Generated {
    fn new(rows: &str, row_group_rows: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(bin("tapline-sample-exports"))
            .args(["parquet", "--out", dir.path().to_str().unwrap()])
            .args(["--rows", rows, "--row-group-rows", row_group_rows])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// Loads `sub` into `<sub>.sqlite` (project time zone Asia/Kolkata, the generator's
    /// default offset) and returns the run and the database.
    fn load(&self, sub: &str) -> (tapline_tests::Run, PathBuf) {
        let db = self.dir.path().join(format!("{sub}.sqlite"));
        let run = tapline(&[
            "load",
            self.path(sub).to_str().unwrap(),
            "--warehouse",
            &format!("sqlite://{}", db.display()),
            "--timezone",
            "Asia/Kolkata",
        ]);
        (run, db)
    }
}

/// Loader bookkeeping that differs between two loads of the same events: the source, its line
/// (a CSV's first row is line 2, under its header; a Parquet file's is row 1), the load.
const BOOKKEEPING: [&str; 4] = ["_source_uri", "_source_line", "_load_id", "_loaded_at"];

fn data_columns(db: &Path, table: &str) -> Vec<String> {
    let mut names: Vec<String> = sqlite_rows(
        db,
        &format!("SELECT name FROM pragma_table_info('{table}')"),
    )
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .filter(|n| !BOOKKEEPING.contains(&n.as_str()))
    .collect();
    names.sort();
    names
}

fn all_rows(db: &Path, table: &str, columns: &[String]) -> Vec<Vec<Option<String>>> {
    let list = columns.join(", ");
    sqlite_rows(db, &format!("SELECT {list} FROM {table} ORDER BY {list}"))
}

#[test]
fn csv_and_parquet_exports_of_the_same_events_give_the_same_rows() {
    let files = Generated::new("500", "200");
    let (csv_run, csv_db) = files.load("csv");
    assert_eq!(csv_run.code, 0, "{}", csv_run.stdout);
    let (pq_run, pq_db) = files.load("parquet");
    assert_eq!(pq_run.code, 0, "{}", pq_run.stdout);

    let tables = |db: &Path| {
        sqlite_rows(
            db,
            "SELECT table_name, event_name FROM _tapline_tables ORDER BY 1",
        )
    };
    assert_eq!(tables(&csv_db), tables(&pq_db));
    let raw_columns = |db: &Path| {
        sqlite_rows(
            db,
            "SELECT table_name, column_name, raw_name FROM _tapline_columns ORDER BY 1, 2",
        )
    };
    assert_eq!(raw_columns(&csv_db), raw_columns(&pq_db));

    let columns = data_columns(&csv_db, "charged");
    assert_eq!(columns, data_columns(&pq_db, "charged"));
    for expected in [
        "event_props_amount",
        "profile_identity",
        "device_info_dimensions_width",
    ] {
        assert!(columns.iter().any(|c| c == expected), "{columns:?}");
    }
    let csv_rows = all_rows(&csv_db, "charged", &columns);
    assert_eq!(csv_rows.len(), 500);
    assert_eq!(csv_rows, all_rows(&pq_db, "charged", &columns));
    // `eventTime` is an instant: the CSV's local times in Asia/Kolkata and the Parquet's epoch
    // seconds give one `ts`, including the first event of the local day (18:30 UTC before).
    let first_ts = "SELECT min(ts) FROM charged";
    assert_eq!(
        sqlite_value(&csv_db, first_ts),
        sqlite_value(&pq_db, first_ts)
    );
    assert!(
        sqlite_value(&pq_db, first_ts)
            .unwrap()
            .starts_with("2022-09-20T18:"),
        "the local day starts at 18:30 UTC"
    );
    // Parquet rows are numbered from 1, in file order across row groups.
    assert_eq!(
        sqlite_value(
            &pq_db,
            "SELECT min(_source_line) || '-' || max(_source_line) FROM charged"
        ),
        Some("1-500".to_string())
    );
}

#[test]
fn legacy_gzipped_parquet_loads() {
    let files = Generated::new("50", "20");
    let parquet = files.path("parquet");
    let good = std::fs::read_dir(&parquet)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let gz_dir = files.path("gz");
    std::fs::create_dir_all(&gz_dir).unwrap();
    let name = format!("{}.gzip", good.file_name().unwrap().to_str().unwrap());
    std::fs::write(gz_dir.join(name), gzip(&std::fs::read(&good).unwrap())).unwrap();
    let (run, db) = files.load("gz");
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(
        sqlite_value(&db, "SELECT count(*) FROM charged"),
        Some("50".to_string())
    );
}

/// Each bad file's exact outcome; the good rows of the file with two bad unions all land.
#[test]
fn bad_parquet_is_quarantined_or_its_rows_rejected_with_the_reason() {
    let files = Generated::new("500", "200");
    let (run, db) = files.load("bad");
    assert_eq!(
        run.code, 2,
        "a quarantined file makes the run exit 2: {}",
        run.stdout
    );
    let outcomes = sqlite_rows(
        &db,
        "SELECT uri, status, rows_loaded, rows_rejected, error FROM _tapline_loads ORDER BY uri",
    );
    let by_index = |index: &str| {
        outcomes
            .iter()
            .find(|r| {
                r[0].as_deref()
                    .unwrap()
                    .ends_with(&format!("-Charged-20220921-{index}-0.parquet"))
            })
            .unwrap_or_else(|| panic!("no outcome for file {index}: {outcomes:?}"))
            .iter()
            .skip(1)
            .map(|v| v.clone().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    assert_eq!(outcomes.len(), 6, "{outcomes:?}");
    assert_eq!(by_index("1"), ["loaded", "498", "2", ""]);
    let corrupt_footer = "corrupt or truncated data: not a Parquet file, or its footer is damaged: \
                          Parquet error: Invalid Parquet file. Corrupt footer";
    for (index, error) in [
        (
            "2",
            "required column \"eventTime\" is missing from the header",
        ),
        ("3", corrupt_footer),
        ("4", corrupt_footer),
    ] {
        assert_eq!(
            by_index(index),
            ["quarantined", "0", "0", error],
            "file {index}"
        );
    }
    let damaged = by_index("5");
    assert_eq!(damaged[..3], ["quarantined", "0", "0"]);
    assert!(
        damaged[3].starts_with("corrupt or truncated data: row group 2 cannot be decoded: "),
        "{damaged:?}"
    );

    // A hostile footer (a negative column size) is refused before the reader can panic on it.
    let negative = by_index("6");
    assert_eq!(negative[..3], ["quarantined", "0", "0"]);
    assert!(
        negative[3].starts_with(
            "corrupt or truncated data: Parquet column \"eventName\" claims bytes outside the file \
             (offset 4, size -"
        ),
        "{negative:?}"
    );

    let rejects = sqlite_rows(
        &db,
        "SELECT line, column_name, reason FROM _tapline_rejects ORDER BY line",
    );
    let amount = "eventProps.Amount";
    assert_eq!(
        rejects,
        [
            [
                Some("2".to_string()),
                Some(amount.to_string()),
                Some(format!(
                    "the value of \"{amount}\" has no member set; a union has exactly one"
                )),
            ],
            [
                Some("3".to_string()),
                Some(amount.to_string()),
                Some(format!(
                    "the value of \"{amount}\" has 2 members set; a union has exactly one"
                )),
            ],
        ]
    );
    // Only the file with bad unions put rows in the table: no partial damaged file.
    assert_eq!(
        sqlite_value(
            &db,
            "SELECT count(*) || ' ' || count(DISTINCT _source_uri) FROM charged"
        ),
        Some("498 1".to_string())
    );
    assert_eq!(
        sqlite_value(
            &db,
            "SELECT count(*) FROM charged WHERE _source_line IN (2, 3)"
        ),
        Some("0".to_string())
    );
}

/// The same comparison on a real PostgreSQL 15: the same columns, the same rows (`ts` as a
/// `timestamptz` from the CSV's local times and from the Parquet's epoch seconds alike).
#[test]
fn csv_and_parquet_give_the_same_rows_on_postgres() {
    use tapline_tests::servers::pg::PgSchema;
    let files = Generated::new("300", "120");
    let (csv, parquet) = (PgSchema::new("pq_csv"), PgSchema::new("pq_parquet"));
    for (db, sub) in [(&csv, "csv"), (&parquet, "parquet")] {
        let run = tapline(&[
            "load",
            files.path(sub).to_str().unwrap(),
            "--warehouse",
            &db.url(),
            "--timezone",
            "Asia/Kolkata",
        ]);
        assert_eq!(run.code, 0, "{sub}: {}{}", run.stdout, run.stderr);
    }
    let columns = |db: &PgSchema| {
        db.psql(&format!(
            "SELECT string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'charged' \
             AND column_name NOT IN ('{}')",
            BOOKKEEPING.join("','")
        ))
    };
    let names = columns(&csv);
    assert_eq!(names, columns(&parquet));
    assert!(names.contains("event_props_amount"), "{names}");
    let digest = |db: &PgSchema| {
        db.psql(&format!(
            "SELECT count(*) || ' ' || md5(string_agg(r::text, E'\\n' ORDER BY r::text)) \
             FROM (SELECT {names} FROM charged) r"
        ))
    };
    let csv_digest = digest(&csv);
    assert!(csv_digest.starts_with("300 "), "{csv_digest}");
    assert_eq!(csv_digest, digest(&parquet));
}
