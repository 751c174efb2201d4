//! BigQuery, through its REST API: load jobs (free, atomic per job), never streaming inserts.
//!
//! BigQuery has no transaction that spans load jobs, so a file commits in two steps:
//! 1. its rows are uploaded (multipart NDJSON) into one **staging table** per event table,
//!    named for this attempt and set to expire after a day;
//! 2. one **commit script** (a query job running a multi-statement transaction) copies the
//!    staged rows into the event tables, deletes an older version's rows, records the rejects,
//!    the catalog and the ledger row, and commits: rows and ledger become visible together.
//!
//! Exactly once: the commit script's job id is derived from (uri, version) and a sequence
//! number: `tapline_<key>_commit_<n>`. A loader tries n = 1, 2, … and only moves to n + 1 after
//! seeing job n fail, so at most one commit of a version can succeed; a `409 duplicate` means
//! another loader got there first, and that job's outcome (its `tapline_outcome` label) decides.
//! The loser's commit returns [`Committed::Theirs`](crate::warehouse::Committed::Theirs) with the winner's ledger row, so the loader
//! reports the file as already loaded and a summary counts it once.
//! The staging step costs one query over the file's own rows (the `INSERT … SELECT`); the load
//! itself is free.
//!
//! The catalog (which event each table holds, which raw name each column has) lives in the
//! tables' own metadata: the table's `friendlyName` is the event name and each column's
//! `description` its raw CleverTap name. `_tapline_tables` and `_tapline_columns` mirror it for
//! queries. The ledger `_tapline_loads` is append-only (one row per attempt's outcome; an
//! older version's `loaded` row becomes `replaced`), so concurrent loads never contend on it;
//! the current state of a version is its `loaded`/`replaced` row, else its latest attempt.
//!
//! Configuration: `bigquery://PROJECT/DATASET[?location=EU][&bi_dataset=NAME]`. The typed views
//! for BI tools live in their own dataset (`bi_dataset`, default `<DATASET>_bi`), created by the
//! first load that builds them, in the raw dataset's location (see `typed_views.rs`); a handle
//! that only reads, or only writes fixed tables (the relay), never needs it. The endpoint is
//! `BIGQUERY_ENDPOINT` when set (a double or an emulator), else Google's. Credentials are
//! Application Default Credentials, except that with `BIGQUERY_ENDPOINT` set and no
//! `GOOGLE_APPLICATION_CREDENTIALS`, requests carry no token (the emulator convention).

//!
//! Files: `api.rs` (REST), `dataset.rs` (fixed tables, staging, ledger and catalog reads),
//! `load.rs` (one load), `commit_script.rs` (the commit transaction and its job ids),
//! `typed_views.rs` (the BI dataset's views and their casts).

pub mod api;
mod commit_script;
mod dataset;
mod load;
mod typed_views;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use self::api::{Api, ApiError, Param};
use self::dataset::{BiDataset, Dataset};
use self::load::BigQueryLoad;
use super::{
    Begin, Checkpoints, ColumnType, FixedTable, FixedTables, LedgerVersion, LoadLedger, LoadRecord,
    LoadStatus, QueryResult, SourceObject, SqlQuery, Warehouse, WarehouseError, ledger_column_list,
};
use crate::config::ConfigError;
use crate::google_auth::GoogleAuth;
use crate::time::now_utc;
use crate::warehouse::column_types::ColumnTypes;

/// The variable naming a BigQuery endpoint other than Google's (a double, an emulator).
pub const ENV_BIGQUERY_ENDPOINT: &str = "BIGQUERY_ENDPOINT";
/// The variable that configures a credentials file for Application Default Credentials.
const ENV_CREDENTIALS: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// BigQuery allows 10,000 columns per table; four go to lineage.
const MAX_DATA_COLUMNS: usize = 10_000 - 4;
/// Label on event tables.
const EVENT_LABEL: &str = "tapline";
/// State values superseded for longer than this are pruned from `_tapline_state_log`.
const STATE_LOG_KEEP_US: i64 = 7 * 24 * 3600 * 1_000_000;
/// BigQuery's documented limits on table metadata, in characters: a field's description, a
/// table's description and its friendlyName. Longer raw names are cut with [`fit_metadata`];
/// the full names stay in `_tapline_columns` and `_tapline_tables`.
const MAX_FIELD_DESCRIPTION_CHARS: usize = 1_024;
const MAX_TABLE_DESCRIPTION_CHARS: usize = 16_384;
const MAX_FRIENDLY_NAME_CHARS: usize = 1_024;

/// `text` as it fits in a metadata field of `limit` characters: unchanged when it fits, else
/// its start, `…` and a digest of the whole, so the cut form is still one name's own (the
/// catalog matches a raw name by this form) and two long names sharing a start stay apart.
fn fit_metadata(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_string();
    }
    let digest = hex::encode(&Sha256::digest(text.as_bytes())[..8]);
    let tail = format!("… sha256:{digest}");
    let keep = limit - tail.chars().count();
    let mut cut: String = text.chars().take(keep).collect();
    cut.push_str(&tail);
    cut
}

fn field(name: &str, kind: &str, required: bool) -> Value {
    json!({ "name": name, "type": kind, "mode": if required { "REQUIRED" } else { "NULLABLE" } })
}

/// The ledger columns: BigQuery answers TIMESTAMPs in a form the API client turns into text.
fn ledger_columns() -> String {
    ledger_column_list(str::to_string)
}

/// The current row of each version: its `loaded`/`replaced` row, else its latest attempt.
fn current_ledger_sql(filter: &str) -> String {
    let columns = ledger_columns();
    format!(
        "SELECT {columns} FROM (SELECT {columns}, ROW_NUMBER() OVER (\
           PARTITION BY uri, version ORDER BY \
           CASE WHEN status IN ('loaded', 'replaced') THEN 1 ELSE 0 END DESC, attempts DESC, \
           finished_at DESC) AS _rank FROM _tapline_loads {filter}) AS l WHERE _rank = 1"
    )
}

/// Quotes an identifier for GoogleSQL.
fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "\\`"))
}

fn op(operation: &'static str) -> impl FnOnce(ApiError) -> WarehouseError {
    move |e| WarehouseError::Operation {
        operation,
        retryable: e.is_retryable(),
        source: Box::new(e),
    }
}

/// A stable key for one object version: job ids and the load id derive from it.
fn version_key(object: &SourceObject) -> (String, i64) {
    let digest = Sha256::new()
        .chain_update(object.uri.as_bytes())
        .chain_update([0])
        .chain_update(object.version.as_bytes())
        .finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    // Positive and at least 1, like an identity column.
    let load_id = (i64::from_be_bytes(id) & i64::MAX).max(1);
    (hex::encode(&digest[..16]), load_id)
}

/// The BigQuery warehouse.
pub struct BigQueryWarehouse {
    ds: Dataset,
    target: String,
    /// Whether this handle has pruned `_tapline_state_log` yet (once per handle: per CLI run,
    /// per function instance).
    state_pruned: std::sync::atomic::AtomicBool,
    /// Column types to pin at each load's commit (`None`: keep the stored pins).
    column_types: Option<Arc<ColumnTypes>>,
}

/// What a `bigquery://PROJECT/DATASET[?location=L][&bi_dataset=NAME]` URL names.
#[derive(Debug, PartialEq, Eq)]
struct BigQueryUrl {
    project: String,
    dataset: String,
    location: Option<String>,
    /// The typed views' dataset: `bi_dataset`, else `<dataset>_bi`.
    bi_dataset: String,
}

/// A dataset id BigQuery accepts: letters, digits and `_`, at most 1,024 characters.
fn valid_dataset_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 1024 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_url(url: &str) -> Result<BigQueryUrl, ConfigError> {
    let bad = |reason: &str| ConfigError::Warehouse {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = url
        .strip_prefix("bigquery://")
        .ok_or_else(|| bad("expected bigquery://PROJECT/DATASET"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (project, dataset) = path
        .trim_end_matches('/')
        .split_once('/')
        .ok_or_else(|| bad("expected bigquery://PROJECT/DATASET"))?;
    let valid_project = !project.is_empty()
        && project
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':'));
    if !valid_project {
        return Err(bad(
            "the project id may hold letters, digits, '-', '.' and ':'",
        ));
    }
    if !valid_dataset_id(dataset) {
        return Err(bad("the dataset id may hold only letters, digits and '_'"));
    }
    let mut location = None;
    let mut bi_dataset = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("location", value)) if !value.is_empty() => location = Some(value.to_string()),
            Some(("bi_dataset", value)) if valid_dataset_id(value) => {
                bi_dataset = Some(value.to_string())
            }
            Some(("bi_dataset", _)) => {
                return Err(bad(
                    "bi_dataset may hold only letters, digits and '_' (a dataset id)",
                ));
            }
            _ => {
                return Err(bad(
                    "unknown parameter: only location=LOCATION and bi_dataset=DATASET",
                ));
            }
        }
    }
    let bi_dataset = bi_dataset.unwrap_or_else(|| format!("{dataset}_bi"));
    if bi_dataset == dataset {
        return Err(bad("bi_dataset must differ from the raw dataset"));
    }
    if !valid_dataset_id(&bi_dataset) {
        return Err(bad(
            "the dataset id is too long for its typed views' dataset (<dataset>_bi): name one with bi_dataset=DATASET",
        ));
    }
    Ok(BigQueryUrl {
        project: project.to_string(),
        dataset: dataset.to_string(),
        location,
        bi_dataset,
    })
}

impl BigQueryWarehouse {
    /// Opens the dataset a `bigquery://PROJECT/DATASET` URL names (it must exist) and creates
    /// the `_tapline_*` tables in it.
    pub async fn open(url: &str) -> Result<Self, WarehouseError> {
        let endpoint = std::env::var(ENV_BIGQUERY_ENDPOINT).ok();
        let auth = match &endpoint {
            Some(_) if std::env::var_os(ENV_CREDENTIALS).is_none() => GoogleAuth::anonymous(),
            _ => GoogleAuth::application_default().map_err(|e| {
                WarehouseError::Config(ConfigError::Warehouse {
                    url: url.to_string(),
                    reason: format!("cannot read Google credentials: {e}"),
                })
            })?,
        };
        Self::open_at(url, endpoint.as_deref(), auth).await
    }

    /// [`Self::open`] with the endpoint (`None`: Google's) and credentials given.
    pub async fn open_at(
        url: &str,
        endpoint: Option<&str>,
        auth: GoogleAuth,
    ) -> Result<Self, WarehouseError> {
        let BigQueryUrl {
            project,
            dataset,
            location,
            bi_dataset,
        } = parse_url(url)?;
        let target = url.to_string();
        let open_err = |source: Box<dyn std::error::Error + Send + Sync>| WarehouseError::Open {
            target: target.clone(),
            source,
        };
        let api = Api::new(
            endpoint.unwrap_or(api::PRODUCTION_ENDPOINT),
            auth,
            &project,
            location,
        )
        .map_err(|e| open_err(Box::new(e)))?;
        let mut api = api;
        let raw = match api.get_dataset(&dataset).await {
            // Jobs in a regional dataset are only found again (jobs.get) with their location.
            Ok(resource) => {
                if api.location.is_none() {
                    api.location = resource["location"].as_str().map(str::to_string);
                }
                resource
            }
            Err(e) if e.is_not_found() => {
                return Err(WarehouseError::Config(ConfigError::Warehouse {
                    url: target,
                    reason: format!(
                        "dataset {project}:{dataset} does not exist; create it first \
                         (infra/gcp does, or `bq mk --dataset {project}:{dataset}`)"
                    ),
                }));
            }
            Err(e) if !e.is_retryable() => {
                return Err(WarehouseError::Config(ConfigError::Warehouse {
                    url: target,
                    reason: e.to_string(),
                }));
            }
            Err(e) => return Err(open_err(Box::new(e))),
        };
        dataset::create_fixed_tables(&api, &dataset)
            .await
            .map_err(|e| open_err(Box::new(e)))?;
        dataset::add_missing_fields(&api, &dataset)
            .await
            .map_err(|e| open_err(Box::new(e)))?;
        let bi = BiDataset {
            name: bi_dataset,
            location: raw["location"]
                .as_str()
                .or(api.location.as_deref())
                .map(str::to_string),
            labels: raw.get("labels").cloned().unwrap_or_else(|| json!({})),
            exists: Default::default(),
        };
        Ok(Self {
            ds: Dataset {
                api: Arc::new(api),
                dataset,
                bi,
            },
            target,
            state_pruned: Default::default(),
            column_types: None,
        })
    }

    /// Pins column types for the typed views ([`ColumnTypes`]): each load's commit makes the
    /// stored pins these. `None` keeps the stored pins.
    pub fn with_column_types(mut self, types: Option<Arc<ColumnTypes>>) -> Self {
        self.column_types = types;
        self
    }

    /// The column types this handle pins, if any.
    pub fn column_types(&self) -> Option<&ColumnTypes> {
        self.column_types.as_deref()
    }
}

fn ledger_record(row: Vec<Option<String>>) -> LoadRecord {
    let text = |i: usize| row.get(i).cloned().flatten();
    let number = |i: usize| text(i).and_then(|v| v.parse::<i64>().ok());
    LoadRecord {
        load_id: number(0).unwrap_or_default(),
        uri: text(1).unwrap_or_default(),
        version: text(2).unwrap_or_default(),
        status: text(3)
            .and_then(|s| LoadStatus::parse(&s))
            .unwrap_or(LoadStatus::Failed),
        bytes: number(4).map(|b| b as u64),
        rows_loaded: number(5).unwrap_or_default() as u64,
        rows_rejected: number(6).unwrap_or_default() as u64,
        error: text(7),
        attempts: number(8).unwrap_or(1) as u32,
        started_at: text(9).unwrap_or_default(),
        finished_at: text(10),
        object_created_at: text(11),
    }
}

impl Warehouse for BigQueryWarehouse {
    fn describe(&self) -> String {
        self.target.clone()
    }
}

#[async_trait]
impl LoadLedger for BigQueryWarehouse {
    fn max_columns(&self) -> usize {
        MAX_DATA_COLUMNS
    }

    async fn begin_load(
        &self,
        object: &SourceObject,
        retry_quarantined: bool,
    ) -> Result<Begin, WarehouseError> {
        let previous = self.ds.current(object).await?;
        if let Some(done) = previous.as_ref().filter(|r| r.is_done(retry_quarantined)) {
            return Ok(Begin::Done(done.clone()));
        }
        let (catalog, _) = self.ds.read_catalog().await?;
        let column_rows = self.ds.column_rows().await?;
        Ok(Begin::Started(Box::new(BigQueryLoad::new(
            self.ds.clone(),
            object,
            retry_quarantined,
            previous.map_or(1, |p| p.attempts + 1),
            catalog,
            column_rows,
            self.column_types.clone(),
        ))))
    }

    async fn record_failure(
        &self,
        object: &SourceObject,
        error: &str,
    ) -> Result<(), WarehouseError> {
        let previous = self.ds.current(object).await?;
        if previous
            .as_ref()
            .is_some_and(|p| matches!(p.status, LoadStatus::Loaded | LoadStatus::Replaced))
        {
            return Ok(());
        }
        let (_, load_id) = version_key(object);
        let now = now_utc();
        let sql = format!(
            "INSERT INTO _tapline_loads ({}) VALUES (@load_id, @uri, @version, \
             'failed', @bytes, 0, 0, @error, @attempts, @now, @now, NULL)",
            ledger_columns()
        );
        let params = [
            ("load_id", Param::Int(load_id)),
            ("uri", Param::Str(object.uri.clone())),
            ("version", Param::Str(object.version.clone())),
            (
                "bytes",
                object
                    .bytes
                    .map_or(Param::NullStr, |b| Param::Int(b as i64)),
            ),
            ("error", Param::Str(error.to_string())),
            (
                "attempts",
                Param::Int(previous.map_or(1, |p| p.attempts as i64 + 1)),
            ),
            ("now", Param::Timestamp(now)),
        ];
        self.ds
            .run_dml("record failure", &version_key(object).0, &sql, &params)
            .await
    }

    async fn recent_loads(&self, limit: usize) -> Result<Vec<LoadRecord>, WarehouseError> {
        let sql = format!(
            "{} ORDER BY COALESCE(finished_at, started_at) DESC, load_id DESC LIMIT {limit}",
            current_ledger_sql("")
        );
        self.ds.ledger_rows(&sql, &[]).await
    }

    async fn commits_since(
        &self,
        since: &str,
        limit: usize,
    ) -> Result<Vec<LoadRecord>, WarehouseError> {
        let sql = format!(
            "{} ORDER BY finished_at DESC, load_id DESC LIMIT {limit}",
            current_ledger_sql(
                "WHERE status IN ('loaded', 'replaced') \
                 AND finished_at >= @since"
            )
        );
        let params = [("since", Param::Timestamp(since.to_string()))];
        self.ds.ledger_rows(&sql, &params).await
    }

    async fn ledger_versions(
        &self,
        uri_prefix: &str,
    ) -> Result<Vec<LedgerVersion>, WarehouseError> {
        let sql = current_ledger_sql("WHERE SUBSTR(uri, 1, LENGTH(@prefix)) = @prefix");
        let params = [("prefix", Param::Str(uri_prefix.to_string()))];
        Ok(self
            .ds
            .ledger_rows(&sql, &params)
            .await?
            .into_iter()
            .map(|r| LedgerVersion {
                uri: r.uri,
                version: r.version,
                status: r.status,
            })
            .collect())
    }
}

#[async_trait]
impl Checkpoints for BigQueryWarehouse {
    async fn get_state(&self, key: &str) -> Result<Option<String>, WarehouseError> {
        self.ds.read_state(key).await
    }

    async fn put_state(&self, key: &str, value: &str) -> Result<(), WarehouseError> {
        let written_us = self.ds.write_state(key, value).await?;
        if !self
            .state_pruned
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            // Best effort: a failed prune leaves old rows for the next handle to remove.
            if let Err(e) = self.ds.prune_state(written_us - STATE_LOG_KEEP_US).await {
                tracing::warn!(error = %crate::error::chain::error_chain(&e), "Could not prune _tapline_state_log.");
            }
        }
        Ok(())
    }
}

#[async_trait]
impl FixedTables for BigQueryWarehouse {
    async fn replace_rows(
        &self,
        table: &FixedTable,
        rows: &[Vec<Option<String>>],
    ) -> Result<u64, WarehouseError> {
        table.check(rows)?;
        let columns: Vec<(&str, &str)> = table
            .columns
            .iter()
            .map(|(name, kind)| {
                let bq = match kind {
                    ColumnType::Text => "STRING",
                    ColumnType::Integer => "INT64",
                };
                (*name, bq)
            })
            .collect();
        self.ds
            .upsert_rows(table.name, &columns, table.key, rows)
            .await
    }
}

#[async_trait]
impl SqlQuery for BigQueryWarehouse {
    async fn query(&self, sql: &str) -> Result<QueryResult, WarehouseError> {
        // BigQuery has no read-only session: ask it what the statement is before running it,
        // so `tapline query` with a loader's credentials cannot write (a script is refused too).
        let kind = self
            .ds
            .api
            .statement_type(&self.ds.dataset, sql)
            .await
            .map_err(op("query"))?;
        if kind != "SELECT" {
            return Err(WarehouseError::Operation {
                operation: "query",
                retryable: false,
                source: format!(
                    "only read-only queries are allowed (BigQuery reads this as a {kind} statement)"
                )
                .into(),
            });
        }
        let (fields, rows) = self
            .ds
            .api
            .query(&self.ds.dataset, sql, &[])
            .await
            .map_err(op("query"))?;
        Ok(QueryResult {
            columns: fields
                .iter()
                .map(|f| f["name"].as_str().unwrap_or("").to_string())
                .collect(),
            rows,
        })
    }

    async fn column_misfits(&self) -> Result<Vec<super::ColumnMisfit>, WarehouseError> {
        typed_views::column_misfits(&self.ds).await
    }
}

fn io_err(operation: &'static str) -> impl FnOnce(std::io::Error) -> WarehouseError {
    move |e| WarehouseError::Operation {
        operation,
        retryable: true,
        source: Box::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_project_dataset_location_and_bi_dataset() {
        let url = |project: &str, dataset: &str, location: Option<&str>, bi: &str| BigQueryUrl {
            project: project.into(),
            dataset: dataset.into(),
            location: location.map(str::to_string),
            bi_dataset: bi.into(),
        };
        assert_eq!(
            parse_url("bigquery://my-proj/clevertap?location=EU").unwrap(),
            url("my-proj", "clevertap", Some("EU"), "clevertap_bi")
        );
        assert_eq!(
            parse_url("bigquery://p/d").unwrap(),
            url("p", "d", None, "d_bi")
        );
        assert_eq!(
            parse_url("bigquery://p/d?bi_dataset=Reports&location=US").unwrap(),
            url("p", "d", Some("US"), "Reports")
        );
        let long = "d".repeat(1024);
        assert!(parse_url(&format!("bigquery://p/{long}")).is_err());
        assert!(parse_url(&format!("bigquery://p/{long}?bi_dataset=b")).is_ok());
        for bad in [
            "bigquery://p",
            "bigquery://p/bad-name",
            "bigquery:///d",
            "bigquery://p/d?x=1",
            "bigquery://p/d?bi_dataset=",
            "bigquery://p/d?bi_dataset=a-b",
            "bigquery://p/d?bi_dataset=d",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn version_keys_are_stable_and_distinct() {
        let a = SourceObject {
            uri: "s3://b/k".into(),
            version: "e1".into(),
            bytes: None,
        };
        let b = SourceObject {
            version: "e2".into(),
            ..a.clone()
        };
        assert_eq!(version_key(&a), version_key(&a.clone()));
        assert_ne!(version_key(&a).0, version_key(&b).0);
        assert!(version_key(&a).1 > 0);
        assert_eq!(version_key(&a).0.len(), 32);
    }
}
