//! The warehouse conformance suite on the BigQuery adapter, twice: against the REST double in
//! `tapline_tests::doubles::bigquery` (ours: GoogleSQL run in SQLite) and against bqemulator (a
//! third-party emulator: GoogleSQL run by DuckDB), which `make test` starts and names in
//! `TAPLINE_TEST_BQEMULATOR_URL`. BigQuery itself cannot run here. Each store is a dataset.

use async_trait::async_trait;
use tapline::google_auth::GoogleAuth;
use tapline::warehouse::Warehouse;
use tapline::warehouse::bigquery::BigQueryWarehouse;
use tapline_tests::conformance::warehouse::Harness;
use tapline_tests::doubles::bigquery::BigQueryDouble;
use tapline_tests::doubles::bigquery::emulator::BigQueryEmulator;
use tokio::sync::OnceCell;

struct Double {
    double: OnceCell<BigQueryDouble>,
}

#[async_trait]
impl Harness for Double {
    async fn open(&self, name: &str) -> Box<dyn Warehouse> {
        let double = self
            .double
            .get_or_init(|| BigQueryDouble::start("tapline-test", &[]))
            .await;
        // The same name is the same store: a second handle.
        if !double.has_dataset(name) {
            double.add_dataset(name);
        }
        let url = format!("bigquery://tapline-test/{name}");
        Box::new(
            BigQueryWarehouse::open_at(&url, Some(&double.endpoint), GoogleAuth::anonymous())
                .await
                .expect("open bigquery"),
        )
    }
}

struct Emulator {
    emulator: BigQueryEmulator,
}

#[async_trait]
impl Harness for Emulator {
    async fn open(&self, name: &str) -> Box<dyn Warehouse> {
        let url = self.emulator.warehouse_url(name).await;
        Box::new(
            BigQueryWarehouse::open_at(
                &url,
                Some(&self.emulator.endpoint),
                GoogleAuth::anonymous(),
            )
            .await
            .expect("open bigquery"),
        )
    }
}

/// On our double: every case.
mod double {
    use super::*;
    tapline_tests::warehouse_conformance_tests!(Double {
        double: OnceCell::new()
    });

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn legacy_profiles_table_is_refused() {
        let harness = Double {
            double: OnceCell::new(),
        };
        tapline_tests::conformance::warehouse::legacy_profiles_table_is_refused(&harness).await;
    }
}

/// On bqemulator, every case but two loaders racing on one version: the emulator runs a
/// second jobs.insert under a used job id instead of answering `409 duplicate`, so that
/// arbitration is checked on the double only (`double::concurrent_loaders_load_once`).
mod bqemulator {
    use super::*;
    tapline_tests::warehouse_conformance_tests!(single_loader: Emulator {
        emulator: BigQueryEmulator::new()
    });

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn legacy_profiles_table_is_refused() {
        let harness = Emulator {
            emulator: BigQueryEmulator::new(),
        };
        tapline_tests::conformance::warehouse::legacy_profiles_table_is_refused(&harness).await;
    }
}
