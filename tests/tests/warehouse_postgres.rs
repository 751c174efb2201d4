//! The warehouse conformance suite on a real PostgreSQL 15, started by
//! `tests/scripts/with-postgres.sh` (which `make test` uses) and named by
//! `TAPLINE_TEST_POSTGRES_URL`. Each store is its own schema.

use async_trait::async_trait;
use tapline::warehouse::Warehouse;
use tapline::warehouse::postgres::PostgresWarehouse;
use tapline_tests::conformance::Harness;

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
