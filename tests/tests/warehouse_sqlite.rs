//! The warehouse conformance suite on the embedded SQLite warehouse (both journal modes).

use async_trait::async_trait;
use tapline::warehouse::sqlite::{Journal, SqliteWarehouse};
use tapline::warehouse::{LoadLedger, SqlQuery, Warehouse};
use tapline_tests::conformance::warehouse::Harness;

struct Sqlite {
    dir: tempfile::TempDir,
    journal: Journal,
}

#[async_trait]
impl Harness for Sqlite {
    async fn open(&self, name: &str) -> Box<dyn Warehouse> {
        let path = self.dir.path().join(format!("{name}.sqlite"));
        Box::new(
            SqliteWarehouse::open(path, self.journal)
                .await
                .expect("open sqlite"),
        )
    }
}

mod rollback_journal {
    use super::*;
    tapline_tests::warehouse_conformance_tests!(Sqlite {
        dir: tempfile::tempdir().unwrap(),
        journal: Journal::Rollback,
    });
}

mod wal_journal {
    use super::*;
    tapline_tests::warehouse_conformance_tests!(Sqlite {
        dir: tempfile::tempdir().unwrap(),
        journal: Journal::Wal,
    });
}

/// `tapline query` on SQLite: one statement, on a connection that cannot write. SQLite counts
/// BEGIN, COMMIT and ATTACH as read-only statements, so the read-only check alone let
/// `ATTACH` create a file and `BEGIN` hold a transaction open on the loader's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_cannot_escape_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let w = SqliteWarehouse::open(dir.path().join("w.sqlite"), Journal::Rollback)
        .await
        .unwrap();
    let chain = |e: tapline::warehouse::WarehouseError| tapline::error::error_chain(&e);
    assert_eq!(
        chain(
            w.query("COMMIT; CREATE TABLE escaped (x int)")
                .await
                .unwrap_err()
        ),
        "warehouse query failed: only one SQL statement is allowed per query"
    );
    assert_eq!(
        chain(w.query("CREATE TABLE escaped (x int)").await.unwrap_err()),
        "warehouse query failed: only read-only queries are allowed"
    );
    let attached = dir.path().join("attached.sqlite");
    let err = w
        .query(&format!("ATTACH '{}' AS a", attached.display()))
        .await
        .unwrap_err();
    assert!(chain(err).starts_with("warehouse query failed: "));
    assert!(!attached.exists(), "ATTACH created a file");
    // BEGIN (refused or not) on the query's own connection holds nothing: a load right
    // after commits.
    let _ = w.query("BEGIN IMMEDIATE").await;
    let o = tapline_tests::conformance::warehouse::object("s3://b/k.csv", "v1");
    let t = match w.begin_load(&o, false).await.unwrap() {
        tapline::warehouse::Begin::Started(t) => t,
        tapline::warehouse::Begin::Done(_) => panic!("new object"),
    };
    t.commit(
        tapline::warehouse::Outcome::Loaded {
            bytes: 1,
            rows: 0,
            rejected: 0,
        },
        vec![],
    )
    .await
    .unwrap();
    let tables = w
        .query("SELECT count(*) FROM sqlite_master WHERE name = 'escaped'")
        .await
        .unwrap();
    assert_eq!(tables.rows, vec![vec![Some("0".to_string())]]);
    assert_eq!(w.recent_loads(5).await.unwrap().len(), 1);
}

/// An earlier Tapline's `profiles` table is kept under another name when the view takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_profiles_table_is_kept() {
    let harness = Sqlite {
        dir: tempfile::tempdir().unwrap(),
        journal: Journal::Wal,
    };
    tapline_tests::conformance::warehouse::legacy_profiles_table_is_kept(&harness).await;
}
