//! bqemulator, a BigQuery emulator we did not write (REST API, GoogleSQL run by DuckDB), as a
//! second BigQuery target beside the double. `tests/scripts/with-bqemulator.sh` (which
//! `make test` uses) starts it and names it in `TAPLINE_TEST_BQEMULATOR_URL`; the tests that
//! use it fail without it. One emulator serves a whole run, so every test works in datasets
//! of its own ([`BigQueryEmulator::new_dataset`]).

use serde_json::{Value, json};

/// The project every emulator test uses (the emulator creates projects on first use).
pub const PROJECT: &str = "tapline-test";

/// The emulator's endpoint (`http://127.0.0.1:PORT`); panics when `make test`'s wrapper did
/// not start it.
pub fn bqemulator_url() -> String {
    std::env::var("TAPLINE_TEST_BQEMULATOR_URL").unwrap_or_else(|_| {
        panic!(
            "TAPLINE_TEST_BQEMULATOR_URL is not set: run `make test` or tests/scripts/with-bqemulator.sh"
        )
    })
}

/// A handle on the running emulator.
pub struct BigQueryEmulator {
    /// What `BIGQUERY_ENDPOINT` should say.
    pub endpoint: String,
    http: reqwest::Client,
    /// Makes this process's dataset names its own: the emulator outlives each test.
    prefix: String,
}

impl Default for BigQueryEmulator {
    fn default() -> Self {
        Self::new()
    }
}

impl BigQueryEmulator {
    /// The emulator `TAPLINE_TEST_BQEMULATOR_URL` names.
    pub fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Self {
            endpoint: bqemulator_url(),
            http: reqwest::Client::new(),
            prefix: format!("t{}_{nanos}", std::process::id()),
        }
    }

    /// The dataset id this process uses for `name` (unique to the process).
    pub fn dataset_id(&self, name: &str) -> String {
        format!("{}_{name}", self.prefix)
    }

    /// Creates (once) the dataset for `name`; returns its id.
    pub async fn new_dataset(&self, name: &str) -> String {
        let id = self.dataset_id(name);
        let url = format!("{}/bigquery/v2/projects/{PROJECT}/datasets", self.endpoint);
        let response = self
            .http
            .post(&url)
            .json(&json!({ "datasetReference": { "projectId": PROJECT, "datasetId": id } }))
            .send()
            .await
            .expect("datasets.insert");
        let status = response.status().as_u16();
        assert!(
            status == 200 || status == 409,
            "datasets.insert {id}: HTTP {status}: {}",
            response.text().await.unwrap_or_default()
        );
        id
    }

    /// A `bigquery://` URL for the dataset of `name` (created when missing).
    pub async fn warehouse_url(&self, name: &str) -> String {
        format!("bigquery://{PROJECT}/{}", self.new_dataset(name).await)
    }

    /// tables.get: a table's resource, `None` when it does not exist.
    pub async fn table(&self, dataset: &str, table: &str) -> Option<Value> {
        let url = format!(
            "{}/bigquery/v2/projects/{PROJECT}/datasets/{dataset}/tables/{table}",
            self.endpoint
        );
        let response = self.http.get(&url).send().await.expect("tables.get");
        match response.status().as_u16() {
            404 => None,
            200 => Some(response.json().await.expect("table JSON")),
            status => panic!("tables.get {dataset}.{table}: HTTP {status}"),
        }
    }

    /// Table ids of a dataset.
    pub async fn tables(&self, dataset: &str) -> Vec<String> {
        let url = format!(
            "{}/bigquery/v2/projects/{PROJECT}/datasets/{dataset}/tables",
            self.endpoint
        );
        let list: Value = self
            .http
            .get(&url)
            .send()
            .await
            .expect("tables.list")
            .json()
            .await
            .expect("tables.list JSON");
        let mut ids: Vec<String> = list["tables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["tableReference"]["tableId"].as_str().map(str::to_string))
            .collect();
        ids.sort();
        ids
    }

    /// Runs `sql` with `dataset` as default (jobs.query, not through Tapline); every cell as
    /// text, TIMESTAMPs as int64 microseconds.
    pub async fn rows(&self, dataset: &str, sql: &str) -> Vec<Vec<Option<String>>> {
        let answer = self.query(dataset, sql).await;
        answer["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|row| {
                row["f"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|cell| match &cell["v"] {
                        Value::Null => None,
                        Value::String(s) => Some(s.clone()),
                        other => Some(other.to_string()),
                    })
                    .collect()
            })
            .collect()
    }

    /// The schema fields of `sql`'s answer: `(name, type)`, types as the REST API names them.
    pub async fn answer_types(&self, dataset: &str, sql: &str) -> Vec<(String, String)> {
        let answer = self.query(dataset, sql).await;
        answer["schema"]["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                let text = |k: &str| f[k].as_str().unwrap_or("").to_string();
                (text("name"), text("type"))
            })
            .collect()
    }

    /// jobs.query's answer, which must carry no error.
    async fn query(&self, dataset: &str, sql: &str) -> Value {
        let url = format!("{}/bigquery/v2/projects/{PROJECT}/queries", self.endpoint);
        let answer: Value = self
            .http
            .post(&url)
            .json(&json!({
                "query": sql,
                "useLegacySql": false,
                "defaultDataset": { "projectId": PROJECT, "datasetId": dataset },
                "formatOptions": { "useInt64Timestamp": true },
            }))
            .send()
            .await
            .expect("jobs.query")
            .json()
            .await
            .expect("jobs.query JSON");
        assert!(answer["error"].is_null(), "{sql}: {answer}");
        answer
    }
}
