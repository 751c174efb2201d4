//! Where a BigQuery end-to-end test runs: our double (which also lets a test check request
//! shapes) or bqemulator (a BigQuery implementation we did not write). A test written against
//! [`BigQueryTarget`] runs on both; one that needs faults, RUNNING jobs or 409 races takes a
//! [`BigQueryDouble`] instead.

use serde_json::Value;
use tapline::google_auth::GoogleAuth;
use tapline::warehouse::Warehouse;
use tapline::warehouse::bigquery::BigQueryWarehouse;

use super::BigQueryDouble;
use super::emulator::{BigQueryEmulator, PROJECT};

/// A BigQuery endpoint with one dataset for the test.
pub enum BigQueryTarget {
    /// Our double, project `tapline-test`.
    Double {
        /// The running double.
        double: BigQueryDouble,
        /// The test's dataset.
        dataset: String,
    },
    /// bqemulator (`TAPLINE_TEST_BQEMULATOR_URL`), in a dataset of this process's own.
    Emulator {
        /// The emulator.
        emulator: BigQueryEmulator,
        /// The test's dataset.
        dataset: String,
    },
}

impl BigQueryTarget {
    /// A fresh double with the dataset `name`.
    pub async fn double(name: &str) -> Self {
        Self::Double {
            double: BigQueryDouble::start(PROJECT, &[name]).await,
            dataset: name.to_string(),
        }
    }

    /// bqemulator with a new dataset for `name`; panics when it is not running.
    pub async fn emulator(name: &str) -> Self {
        let emulator = BigQueryEmulator::new();
        let dataset = emulator.new_dataset(name).await;
        Self::Emulator { emulator, dataset }
    }

    /// What `BIGQUERY_ENDPOINT` should say.
    pub fn endpoint(&self) -> &str {
        match self {
            Self::Double { double, .. } => &double.endpoint,
            Self::Emulator { emulator, .. } => &emulator.endpoint,
        }
    }

    /// The test's dataset.
    pub fn dataset(&self) -> &str {
        match self {
            Self::Double { dataset, .. } | Self::Emulator { dataset, .. } => dataset,
        }
    }

    /// `bigquery://tapline-test/DATASET`.
    pub fn url(&self) -> String {
        format!("bigquery://{PROJECT}/{}", self.dataset())
    }

    /// The double, for checks only it can make (calls, job ids, request shapes).
    pub fn as_double(&self) -> Option<&BigQueryDouble> {
        match self {
            Self::Double { double, .. } => Some(double),
            Self::Emulator { .. } => None,
        }
    }

    /// The dataset through the adapter, without credentials.
    pub async fn open(&self) -> Box<dyn Warehouse> {
        Box::new(
            BigQueryWarehouse::open_at(&self.url(), Some(self.endpoint()), GoogleAuth::anonymous())
                .await
                .expect("open bigquery"),
        )
    }

    /// Rows of `sql` read past Tapline (SQL both SQLite and GoogleSQL accept), every cell as
    /// text. TIMESTAMP cells differ by target (the double's stored text, the emulator's int64
    /// microseconds): read those through Tapline (`tapline query`, `Warehouse::query`).
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        match self {
            Self::Double { double, dataset } => double.rows(dataset, sql),
            Self::Emulator { emulator, dataset } => emulator.rows(dataset, sql).await,
        }
    }

    /// [`Self::rows`] with another dataset of the project as the default (the BI dataset).
    pub async fn rows_in(&self, dataset: &str, sql: &str) -> Vec<Vec<Option<String>>> {
        match self {
            Self::Double { double, .. } => double.rows(dataset, sql),
            Self::Emulator { emulator, .. } => emulator.rows(dataset, sql).await,
        }
    }

    /// [`Self::table`] in another dataset of the project.
    pub async fn table_in(&self, dataset: &str, table: &str) -> Option<Value> {
        match self {
            Self::Double { double, .. } => double.table(dataset, table),
            Self::Emulator { emulator, .. } => emulator.table(dataset, table).await,
        }
    }

    /// The first cell of `sql`.
    pub async fn value(&self, sql: &str) -> Option<String> {
        self.rows(sql).await[0][0].clone()
    }

    /// A table's resource (schema, partitioning, labels).
    pub async fn table(&self, table: &str) -> Option<Value> {
        match self {
            Self::Double { double, dataset } => double.table(dataset, table),
            Self::Emulator { emulator, dataset } => emulator.table(dataset, table).await,
        }
    }

    /// Table ids of the dataset.
    pub async fn tables(&self) -> Vec<String> {
        match self {
            Self::Double { double, dataset } => double.tables(dataset),
            Self::Emulator { emulator, dataset } => emulator.tables(dataset).await,
        }
    }
}

/// The end-to-end tests that run on both BigQuery targets: `on_double::NAME` on our double (its
/// dataset `clevertap`) and `on_bqemulator::NAME` on bqemulator (`TAPLINE_TEST_BQEMULATOR_URL`,
/// started by `make test`; a dataset of the test's name), each calling `NAME(target)` of the
/// invoking file with a [`BigQueryTarget`].
#[macro_export]
macro_rules! on_both_bigquery_targets {
    ($($name:ident),+ $(,)?) => {
        mod on_double {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::doubles::bigquery::target::BigQueryTarget::double("clevertap").await).await;
                }
            )+
        }

        mod on_bqemulator {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(
                        $crate::doubles::bigquery::target::BigQueryTarget::emulator(stringify!($name)).await,
                    )
                    .await;
                }
            )+
        }
    };
}
