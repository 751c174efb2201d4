//! The BigQuery commit script's catalog statements: a load's new columns are recorded by one
//! statement, each exactly once, on both targets; and the statements a load of the bench file's
//! shape sends, as `tests/bench/bigquery_commit_statements.txt` lists them for `run_bench.py`'s
//! bytes billed (BigQuery bills each statement at least 10 MB per table it references).

use regex::Regex;
use tapline::warehouse::{Begin, Outcome, Warehouse};
use tapline_tests::conformance::warehouse::{batch, object};
use tapline_tests::doubles::bigquery::target::BigQueryTarget;

/// `ts`, `eventName` and `properties` more columns, `eventProps.p00` on.
fn columns(properties: usize) -> Vec<String> {
    ["ts", "eventName"]
        .into_iter()
        .map(str::to_string)
        .chain((0..properties).map(|i| format!("eventProps.p{i:02}")))
        .collect()
}

/// Loads two rows of event Charged with `columns` (every property an integer) as `uri`.
async fn load(w: &dyn Warehouse, uri: &str, columns: &[String]) {
    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
    let rows: Vec<(u64, Vec<Option<&str>>)> = (1..=2)
        .map(|line| {
            let mut row = vec![Some("2022-09-21T04:32:45Z"), Some("Charged")];
            row.extend(std::iter::repeat_n(Some("7"), columns.len() - 2));
            (line, row)
        })
        .collect();
    let mut t = match w.begin_load(&object(uri, "v1"), false).await.unwrap() {
        Begin::Started(t) => t,
        Begin::Done(r) => panic!("already {:?}", r.status),
    };
    t.append(batch(&names, &rows)).await.unwrap();
    t.commit(
        Outcome::Loaded {
            bytes: 100,
            rows: 2,
            rejected: 0,
        },
        Vec::new(),
    )
    .await
    .expect("commit");
}

/// (raw name, rows naming it, kind) of each catalogued column.
async fn catalogued(target: &BigQueryTarget) -> Vec<(String, String, String)> {
    target
        .rows(
            "SELECT raw_name, CAST(COUNT(*) AS STRING), MAX(kind) FROM _tapline_columns \
             GROUP BY raw_name ORDER BY raw_name",
        )
        .await
        .into_iter()
        .map(|r| {
            let cell = |i: usize| r[i].clone().unwrap_or_default();
            (cell(0), cell(1), cell(2))
        })
        .collect()
}

tapline_tests::on_both_bigquery_targets!(forty_new_columns_are_recorded_once);

/// A load that brings 40 new columns records each once (with its kind), and a second file with
/// the same columns adds no row.
async fn forty_new_columns_are_recorded_once(target: BigQueryTarget) {
    let w = target.open().await;
    let columns = columns(40);
    load(w.as_ref(), "file:///exports/a.csv.gz", &columns).await;
    let first = catalogued(&target).await;
    let properties: Vec<&(String, String, String)> = first
        .iter()
        .filter(|(raw, _, _)| raw.starts_with("eventProps."))
        .collect();
    assert_eq!(properties.len(), 40, "{first:?}");
    for (raw, count, kind) in &properties {
        assert_eq!((count.as_str(), kind.as_str()), ("1", "integer"), "{raw}");
    }
    assert!(first.iter().all(|(_, count, _)| count == "1"), "{first:?}");

    load(w.as_ref(), "file:///exports/b.csv.gz", &columns).await;
    assert_eq!(catalogued(&target).await, first);
    let tables = target
        .value("SELECT CAST(COUNT(*) AS STRING) FROM _tapline_tables")
        .await;
    assert_eq!(tables.as_deref(), Some("1"));
    let loaded = target
        .value("SELECT CAST(COUNT(*) AS STRING) FROM _tapline_load_tables")
        .await;
    assert_eq!(loaded.as_deref(), Some("2"));
}

/// Where the statement list lives, for `run_bench.py`.
const STATEMENTS_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/bench/bigquery_commit_statements.txt"
);

/// One line per statement of a commit script: its first keyword and the tables it names
/// (`staging` for the load's staging table, `event` for the event table), sorted, each once.
fn statement_lines(script: &str) -> Vec<String> {
    let named = Regex::new(r"(?i)\b(?:FROM|INTO|UPDATE|JOIN)\s+(`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)")
        .expect("regex");
    script
        .split(";\n")
        .map(|statement| {
            let statement = statement.trim().trim_end_matches(';');
            let verb = statement.split_whitespace().next().unwrap_or("");
            let mut tables: Vec<String> = named
                .captures_iter(statement)
                .map(|c| {
                    let name = c[1].trim_matches('`');
                    if name.starts_with("_tapline_stage_") {
                        "staging".to_string()
                    } else if name.starts_with("_tapline_") {
                        name.to_string()
                    } else {
                        "event".to_string()
                    }
                })
                .collect();
            tables.sort();
            tables.dedup();
            std::iter::once(verb.to_uppercase())
                .chain(tables)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The commit scripts of two loads of one 31-column event (the bench file's shape: 21 fixed
/// columns and 10 properties) into a new dataset, as the double received them, are the ones
/// `tests/bench/bigquery_commit_statements.txt` lists (`TAPLINE_BLESS=1` rewrites it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_shaped_commit_scripts_are_the_listed_ones() {
    let target = BigQueryTarget::double("clevertap").await;
    let double = target.as_double().expect("the double");
    let w = target.open().await;
    let columns = columns(29);
    let mut scripts = Vec::new();
    for uri in ["file:///exports/a.csv.gz", "file:///exports/b.csv.gz"] {
        let before = double.job_ids().len();
        load(w.as_ref(), uri, &columns).await;
        let commit: Vec<String> = double.job_ids()[before..]
            .iter()
            .filter(|id| id.contains("_commit_"))
            .cloned()
            .collect();
        assert_eq!(commit.len(), 1, "{commit:?}");
        let job = double.job(&commit[0]).expect("commit job");
        let script = job["configuration"]["query"]["query"]
            .as_str()
            .expect("a query job")
            .to_string();
        scripts.push(statement_lines(&script));
    }
    let mut text = String::from(
        "# The BigQuery commit scripts of two loads of one event table of 31 columns (the bench\n\
         # file's shape) into a new dataset: one statement a line, its keyword and the tables it\n\
         # names (`event`: the event table, `staging`: the load's staging table). Written and\n\
         # checked by tests/tests/warehouse_bigquery_commit.rs (TAPLINE_BLESS=1 rewrites it); read\n\
         # by tests/bench/run_bench.py for BigQuery's minimum bytes billed per statement.\n",
    );
    for (title, lines) in ["[first load]", "[next load]"].iter().zip(&scripts) {
        text.push_str(title);
        text.push('\n');
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
    }
    if std::env::var_os("TAPLINE_BLESS").is_some() {
        std::fs::write(STATEMENTS_FILE, &text).expect("write the statement list");
    }
    let listed = std::fs::read_to_string(STATEMENTS_FILE).unwrap_or_default();
    assert_eq!(
        listed, text,
        "{STATEMENTS_FILE} is not the commit scripts' list: rerun with TAPLINE_BLESS=1"
    );
}
