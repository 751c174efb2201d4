//! The warehouse conformance suite on a real PostgreSQL 15, started by
//! `tests/scripts/with-postgres.sh` (which `make test` uses) and named by
//! `TAPLINE_TEST_POSTGRES_URL`. Each store is its own schema.

use async_trait::async_trait;
use tapline::warehouse::postgres::PostgresWarehouse;
use tapline::warehouse::{LoadLedger, Warehouse};
use tapline_tests::conformance::warehouse::Harness;

struct Postgres {
    prefix: String,
}

impl Postgres {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Self {
            prefix: format!("t{}_{nanos}", std::process::id()),
        }
    }
}

#[async_trait]
impl Harness for Postgres {
    async fn open(&self, name: &str) -> Box<dyn Warehouse> {
        let url = tapline_tests::postgres_url();
        let separator = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{separator}schema={}_{name}", self.prefix);
        Box::new(PostgresWarehouse::open(&url).await.expect("open postgres"))
    }
}

tapline_tests::warehouse_conformance_tests!(Postgres::new());

/// Runs `sql` with psql on the test server's `database`; the output unaligned, trimmed.
fn psql(database: &str, sql: &str) -> String {
    let url = tapline_tests::postgres_url();
    let url = match url.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{database}"),
        None => panic!("unexpected TAPLINE_TEST_POSTGRES_URL {url}"),
    };
    let out = std::process::Command::new("psql")
        .args([url.as_str(), "-tAq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A crafted CSV header that, quoted by hand in a simple-protocol batch on a database with
/// `standard_conforming_strings = off`, closed its literal early and ran its own DDL. Now it is
/// a column like any other, its raw name kept exactly, and nothing else ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_crafted_against_backslash_escapes_is_only_a_column_name() {
    use tapline::warehouse::{Begin, LoadStatus, Outcome};
    let database = format!("scs_off_{}", std::process::id());
    psql("postgres", &format!("DROP DATABASE IF EXISTS {database}"));
    psql("postgres", &format!("CREATE DATABASE {database}"));
    psql(
        "postgres",
        &format!("ALTER DATABASE {database} SET standard_conforming_strings = off"),
    );
    assert_eq!(psql(&database, "SHOW standard_conforming_strings"), "off");
    let url = tapline_tests::postgres_url();
    let (server, _) = url.rsplit_once('/').unwrap();
    let w = PostgresWarehouse::open(&format!("{server}/{database}"))
        .await
        .expect("open");
    let crafted = r"x\', 1, now()); CREATE TABLE pwned (x int); --";
    let columns = ["ts", "eventName", crafted, r"trailing\"];
    let o =
        tapline_tests::conformance::warehouse::object("s3://b/1-2-Charged-20220921-0-0.csv", "v1");
    let mut t = match w.begin_load(&o, false).await.unwrap() {
        Begin::Started(t) => t,
        Begin::Done(_) => panic!("new object"),
    };
    t.append(tapline_tests::conformance::warehouse::batch(
        &columns,
        &[(
            2,
            vec![
                Some("2022-09-21T04:39:25Z"),
                Some("Charged"),
                Some("a"),
                Some("b"),
            ],
        )],
    ))
    .await
    .unwrap();
    let record = t
        .commit(
            Outcome::Loaded {
                bytes: 10,
                rows: 1,
                rejected: 0,
            },
            vec![],
        )
        .await
        .unwrap()
        .into_record();
    assert_eq!(record.status, LoadStatus::Loaded);
    assert_eq!(
        psql(
            &database,
            "SELECT raw_name FROM _tapline_columns WHERE table_name = 'charged' ORDER BY column_name"
        ),
        format!("eventName\ntrailing\\\nts\n{crafted}")
    );
    assert_eq!(
        psql(&database, "SELECT to_regclass('pwned') IS NULL"),
        "t",
        "the crafted header ran DDL"
    );
    assert_eq!(
        psql(
            &database,
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname NOT LIKE '\\_tapline\\_%'"
        ),
        "1",
        "only the event table was created"
    );
    assert_eq!(psql(&database, "SELECT count(*) FROM charged"), "1");
    drop(w);
    psql(
        "postgres",
        &format!("DROP DATABASE {database} WITH (FORCE)"),
    );
}

/// `tapline query` runs one statement in a read-only transaction: `COMMIT; CREATE …` is
/// refused before anything runs, and no single statement writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_cannot_escape_their_read_only_transaction() {
    let harness = Postgres::new();
    let w = harness.open("query_escape").await;
    let schema = format!("{}_query_escape", harness.prefix);
    let err = w
        .query("COMMIT; CREATE TABLE escaped (x int)")
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(
        tapline::error::error_chain(&err),
        "warehouse query failed: only one SQL statement is allowed per query"
    );
    let err = w.query("CREATE TABLE escaped (x int)").await.unwrap_err();
    assert!(
        tapline::error::error_chain(&err).contains("read-only transaction"),
        "{}",
        tapline::error::error_chain(&err)
    );
    // A lone COMMIT ends the read-only transaction and nothing more runs.
    w.query("COMMIT").await.unwrap();
    let exists = w
        .query(&format!(
            "SELECT count(*) FROM pg_tables WHERE schemaname = '{schema}' AND tablename = 'escaped'"
        ))
        .await
        .unwrap();
    assert_eq!(exists.rows, vec![vec![Some("0".to_string())]]);
    // The connection is usable afterwards, and reads still work.
    let one = w.query("SELECT 1 AS one").await.unwrap();
    assert_eq!(
        (one.columns, one.rows),
        (vec!["one".to_string()], vec![vec![Some("1".to_string())]])
    );
}

/// An earlier Tapline's `profiles` table is kept under another name when the view takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_profiles_table_is_kept() {
    tapline_tests::conformance::warehouse::legacy_profiles_table_is_kept(&Postgres::new()).await;
}

/// A 1.5 MB batch whose rows switch between two events (so each event's COPY ends and reopens
/// within the batch), then a second batch: every row lands once, whole, in its own table, with
/// its line, and the ledger counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_switching_events_load_every_row_once() {
    use tapline::warehouse::{Begin, Committed, Outcome};
    use tapline_tests::conformance::warehouse::{batch, object};

    let w = Postgres::new().open("chunks").await;
    let o = object("file:///x/1-2-Chunked-20220921-0-0.csv.gz", "v1");
    let mut t = match w.begin_load(&o, false).await.expect("begin") {
        Begin::Started(t) => t,
        Begin::Done(r) => panic!("expected a new load, ledger says {:?}", r.status),
    };
    let columns = ["ts", "eventName", "eventProps.Note"];
    // 300 bytes of text a row, a different text for every line.
    let notes: Vec<String> = (0..6000).map(|i| format!("{i:0>300}")).collect();
    // Runs of 700 rows of one event, then 700 of the other.
    let alpha = |i: usize| (i / 700).is_multiple_of(2);
    let row = |i: usize| {
        let event = if alpha(i) { "Alpha" } else { "Beta" };
        (
            i as u64 + 2,
            vec![
                Some("2022-09-21T04:39:25Z"),
                Some(event),
                Some(notes[i].as_str()),
            ],
        )
    };
    let first: Vec<_> = (0..5000).map(row).collect();
    let second: Vec<_> = (5000..6000).map(row).collect();
    t.append(batch(&columns, &first)).await.unwrap();
    t.append(batch(&columns, &second)).await.unwrap();
    let outcome = Outcome::Loaded {
        bytes: 100,
        rows: 6000,
        rejected: 0,
    };
    let record = match t.commit(outcome, vec![]).await.expect("commit") {
        Committed::Ours(record) => record,
        Committed::Theirs(record) => panic!("another loader committed: {record:?}"),
    };
    assert_eq!(record.rows_loaded, 6000);
    let check = |table: &str, is_alpha: bool| {
        let expected: Vec<usize> = (0..6000).filter(|i| alpha(*i) == is_alpha).collect();
        let sql = format!(
            "SELECT count(*), count(DISTINCT _source_line), sum(_source_line), \
             count(*) FILTER (WHERE event_props_note = lpad((_source_line - 2)::text, 300, '0')) \
             FROM {table}"
        );
        (sql, expected)
    };
    for (table, is_alpha) in [("alpha", true), ("beta", false)] {
        let (sql, expected) = check(table, is_alpha);
        let got = w.query(&sql).await.expect(&sql).rows;
        let n = expected.len().to_string();
        let sum = expected.iter().map(|i| i + 2).sum::<usize>().to_string();
        assert_eq!(
            got,
            vec![vec![Some(n.clone()), Some(n.clone()), Some(sum), Some(n)]],
            "{table}"
        );
    }
    let per_table = w
        .query("SELECT table_name, rows FROM _tapline_load_tables ORDER BY table_name")
        .await
        .unwrap()
        .rows;
    let expected_alpha = (0..6000).filter(|i| alpha(*i)).count().to_string();
    let expected_beta = (0..6000).filter(|i| !alpha(*i)).count().to_string();
    assert_eq!(
        per_table,
        vec![
            vec![Some("alpha".to_string()), Some(expected_alpha)],
            vec![Some("beta".to_string()), Some(expected_beta)],
        ]
    );
}
