//! The warehouse conformance suite on the embedded SQLite warehouse (both journal modes).

use async_trait::async_trait;
use tapline::warehouse::Warehouse;
use tapline::warehouse::sqlite::{Journal, SqliteWarehouse};
use tapline_tests::conformance::Harness;

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
