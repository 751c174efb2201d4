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
        Self::with(&["--rows", rows, "--row-group-rows", row_group_rows])
    }

    /// The generator's files with `args` after `parquet --out <dir>`.
    fn with(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(bin("tapline-sample-exports"))
            .args(["parquet", "--out", dir.path().to_str().unwrap()])
            .args(args)
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

/// Gzip pages and data pages v2 (several per column chunk, each checked before rows are
/// built) give the CSV's rows too.
#[test]
fn gzip_and_v2_pages_give_the_same_rows() {
    let files = Generated::with(&[
        "--rows",
        "300",
        "--row-group-rows",
        "120",
        "--codec",
        "gzip",
        "--v2-pages",
    ]);
    let (csv_run, csv_db) = files.load("csv");
    assert_eq!(csv_run.code, 0, "{}", csv_run.stdout);
    let (pq_run, pq_db) = files.load("parquet");
    assert_eq!(pq_run.code, 0, "{}{}", pq_run.stdout, pq_run.stderr);
    let columns = data_columns(&csv_db, "charged");
    assert_eq!(columns, data_columns(&pq_db, "charged"));
    let csv_rows = all_rows(&csv_db, "charged", &columns);
    assert_eq!(csv_rows.len(), 300);
    assert_eq!(csv_rows, all_rows(&pq_db, "charged", &columns));
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

/// The file in `tests/fixtures/parquet` on which the parquet crate's row reader panicked (a level
/// above its column's maximum) is quarantined with the reason, nothing from it loaded, while the
/// good file beside it loads whole.
#[test]
fn a_row_group_with_levels_out_of_range_is_quarantined_beside_a_good_file() {
    let files = Generated::new("50", "20");
    let good = std::fs::read_dir(files.path("parquet"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let good_name = good.file_name().unwrap().to_str().unwrap().to_string();
    let dir = files.path("mixed");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&good, dir.join(&good_name)).unwrap();
    let damaged_name = good_name.replace("-0-0.parquet", "-7-0.parquet");
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/parquet/levels-out-of-range.parquet");
    std::fs::copy(fixture, dir.join(&damaged_name)).unwrap();

    let (run, db) = files.load("mixed");
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let outcomes = sqlite_rows(
        &db,
        "SELECT uri, status, rows_loaded, rows_rejected, error FROM _tapline_loads ORDER BY uri",
    );
    let outcome = |name: &str| -> Vec<String> {
        outcomes
            .iter()
            .find(|r| r[0].as_deref().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("no outcome for {name}: {outcomes:?}"))
            .iter()
            .skip(1)
            .map(|v| v.clone().unwrap_or_default())
            .collect()
    };
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert_eq!(outcome(&good_name), ["loaded", "50", "0", ""]);
    assert_eq!(
        outcome(&damaged_name),
        ["quarantined", "0", "0", LEVELS_OUT_OF_RANGE_REASON]
    );
    assert_eq!(
        sqlite_value(
            &db,
            "SELECT count(*) || ' ' || count(DISTINCT _source_uri) FROM charged"
        ),
        Some("50 1".to_string())
    );
}

/// The reason the fixture's first damaged row group gives.
const LEVELS_OUT_OF_RANGE_REASON: &str = "corrupt or truncated data: row group 1 cannot be decoded: \
     column \"deviceInfo.key_value.value.member4\": a definition level of 7, above the column's \
     maximum 4";

/// Variants of a good file with bytes flipped in its column chunks (page headers, levels and
/// values; deterministic seeds): every one is loaded or quarantined, none panics the loader (a
/// debug build, where a panic is exit code 101 and an overflow panics too). A loaded variant
/// still holds the footer's 300 rows, loaded or rejected; a quarantined one loaded none (some
/// decode but reject too many rows). Without `parquet_checks`, several of these seeds panic the
/// crate's record reader (a level above its column's maximum, `record/triplet.rs`).
#[test]
fn parquet_with_flipped_bytes_in_its_pages_loads_or_is_quarantined_never_panics() {
    let files = Generated::new(&FLIP_ROWS.to_string(), "100");
    let (loaded, quarantined) = load_flipped_variants(&files);
    eprintln!("{FLIP_VARIANTS} variants: {loaded} loaded, {quarantined} quarantined");
}

/// The same over gzip pages and data pages v2, several per column chunk (the v2 level sections
/// and page boundaries).
#[test]
fn gzip_v2_parquet_with_flipped_bytes_loads_or_is_quarantined_never_panics() {
    let rows = FLIP_ROWS.to_string();
    let files = Generated::with(&[
        "--rows",
        &rows,
        "--row-group-rows",
        "100",
        "--codec",
        "gzip",
        "--v2-pages",
    ]);
    let (loaded, quarantined) = load_flipped_variants(&files);
    eprintln!("{FLIP_VARIANTS} gzip v2 variants: {loaded} loaded, {quarantined} quarantined");
}

const FLIP_VARIANTS: u64 = 200;
const FLIP_ROWS: u64 = 300;

/// Writes [`FLIP_VARIANTS`] byte-flipped copies of the good Parquet file, loads them in one run
/// and checks every outcome; returns how many loaded and how many were quarantined.
fn load_flipped_variants(files: &Generated) -> (u64, u64) {
    let good = std::fs::read_dir(files.path("parquet"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let good_name = good.file_name().unwrap().to_str().unwrap().to_string();
    let bytes = std::fs::read(&good).unwrap();
    let footer_len =
        u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap()) as usize;
    // Column chunks: after the leading magic, before the footer.
    let pages = 4..bytes.len() - 8 - footer_len;
    let dir = files.path("flipped");
    std::fs::create_dir_all(&dir).unwrap();
    for seed in 0..FLIP_VARIANTS {
        let mut rng = SplitMix(seed);
        let mut variant = bytes.clone();
        for _ in 0..=rng.next() % 4 {
            let at = pages.start + (rng.next() as usize) % pages.len();
            variant[at] ^= (rng.next() % 255 + 1) as u8;
        }
        let name = good_name.replace("-0-0.parquet", &format!("-{}-0.parquet", 100 + seed));
        std::fs::write(dir.join(name), variant).unwrap();
    }

    let (run, db) = files.load("flipped");
    assert!(
        !run.stderr.contains("panicked"),
        "a variant panicked the loader: {}",
        run.stderr
    );
    assert!([0, 2].contains(&run.code), "{}{}", run.stdout, run.stderr);
    let outcomes = sqlite_rows(
        &db,
        "SELECT status, CASE status WHEN 'loaded' THEN rows_loaded + rows_rejected \
         ELSE rows_loaded END, count(*) FROM _tapline_loads GROUP BY 1, 2",
    );
    let count = |status: &str, rows: u64| {
        outcomes
            .iter()
            .find(|r| r[0].as_deref() == Some(status) && r[1] == Some(rows.to_string()))
            .map_or(0, |r| r[2].as_deref().unwrap().parse::<u64>().unwrap())
    };
    // Reasons name a column and what is wrong, never a value (the crate's own error for a
    // string that is not UTF-8 quotes its bytes).
    let longest_reason = sqlite_value(&db, "SELECT max(length(error)) FROM _tapline_loads");
    assert!(
        longest_reason.unwrap().parse::<usize>().unwrap() < 300,
        "{outcomes:?}"
    );
    let (loaded, quarantined) = (count("loaded", FLIP_ROWS), count("quarantined", 0));
    assert_eq!(loaded + quarantined, FLIP_VARIANTS, "{outcomes:?}");
    assert!(loaded > 0 && quarantined > 0, "{outcomes:?}");
    (loaded, quarantined)
}

/// SplitMix64: a few lines of deterministic randomness, no crate.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Page checksums, when a writer stores them (pyarrow with `write_page_checksum=True`; parquet-mr
/// by default), are verified: a flipped byte in a string value ("Mumbai" read as "Mumbaj") is a
/// quarantine, not a silently wrong row. The fixtures' README says how they were made.
#[test]
fn a_page_whose_checksum_does_not_match_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    std::fs::create_dir_all(&exports).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/parquet");
    let name = |index: u32| format!("1663664837-1663785000-Charged-20220921-{index}-0.parquet");
    for (fixture, index) in [
        ("page-checksums.parquet", 0),
        ("page-checksum-mismatch.parquet", 1),
    ] {
        std::fs::copy(fixtures.join(fixture), exports.join(name(index))).unwrap();
    }
    let db = dir.path().join("w.sqlite");
    let run = tapline(&[
        "load",
        exports.to_str().unwrap(),
        "--warehouse",
        &format!("sqlite://{}", db.display()),
        "--timezone",
        "Asia/Kolkata",
    ]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        sqlite_rows(
            &db,
            "SELECT status, rows_loaded, rows_rejected, error FROM _tapline_loads ORDER BY uri"
        ),
        [
            [
                Some("loaded".to_string()),
                Some("3".to_string()),
                Some("0".to_string()),
                None
            ],
            [
                Some("quarantined".to_string()),
                Some("0".to_string()),
                Some("0".to_string()),
                Some(
                    "corrupt or truncated data: row group 1 cannot be decoded: column \
                     \"eventProps.key_value.value.member1\": Parquet error: Page CRC checksum \
                     mismatch"
                        .to_string()
                )
            ],
        ]
    );
    assert_eq!(
        sqlite_value(
            &db,
            "SELECT group_concat(event_props_city, ',') FROM charged WHERE event_props_city IS NOT NULL"
        ),
        Some("Mumbai,Pune".to_string())
    );
}
