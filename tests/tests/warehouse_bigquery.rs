//! The warehouse conformance suite on the BigQuery adapter, against the REST double in
//! `tapline_tests::bigquery` (BigQuery itself cannot run here). Each store is a dataset.

use async_trait::async_trait;
use tapline::google_auth::GoogleAuth;
use tapline::warehouse::Warehouse;
use tapline::warehouse::bigquery::BigQueryWarehouse;
use tapline_tests::bigquery::BigQueryDouble;
use tapline_tests::conformance::Harness;
use tokio::sync::OnceCell;

struct BigQuery {
    double: OnceCell<BigQueryDouble>,
}

#[async_trait]
impl Harness for BigQuery {
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

tapline_tests::warehouse_conformance_tests!(BigQuery {
    double: OnceCell::new()
});
