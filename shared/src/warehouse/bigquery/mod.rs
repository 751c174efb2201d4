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
//! The loser's commit returns [`Committed::Theirs`] with the winner's ledger row, so the loader
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
//! Configuration: `bigquery://PROJECT/DATASET[?location=EU]`. The endpoint is
//! `BIGQUERY_ENDPOINT` when set (a double or an emulator), else Google's. Credentials are
//! Application Default Credentials, except that with `BIGQUERY_ENDPOINT` set and no
//! `GOOGLE_APPLICATION_CREDENTIALS`, requests carry no token (the emulator convention).

pub mod api;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Write};
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use self::api::{Api, ApiError, Param};
use super::catalog::Catalog;
use super::{
    Begin, COL_LOAD_ID, COL_LOADED_AT, COL_SOURCE_LINE, COL_SOURCE_URI, ColumnType, Committed,
    FixedTable, LINEAGE_COLUMNS, LedgerVersion, LoadRecord, LoadStatus, LoadTransaction, Outcome,
    QueryResult, SourceObject, Warehouse, WarehouseError,
};
use crate::config::ConfigError;
use crate::export::{EVENT_NAME_COLUMN, Reject, RowBatch, TS_COLUMN};
use crate::google_auth::GoogleAuth;
use crate::time::now_utc;

/// The variable naming a BigQuery endpoint other than Google's (a double, an emulator).
pub const ENV_BIGQUERY_ENDPOINT: &str = "BIGQUERY_ENDPOINT";
/// The variable that configures a credentials file for Application Default Credentials.
const ENV_CREDENTIALS: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// BigQuery allows 10,000 columns per table; four go to lineage.
const MAX_DATA_COLUMNS: usize = 10_000 - 4;
/// Rejects kept per file; the ledger counts every one.
const MAX_STORED_REJECTS: usize = 10_000;
/// Commit jobs tried per version before giving up for now (each failed one is burned).
const MAX_COMMIT_JOBS: u32 = 50;
/// Label on commit jobs saying what they committed.
const OUTCOME_LABEL: &str = "tapline_outcome";
/// Label on event tables.
const EVENT_LABEL: &str = "tapline";
/// Checkpoints are appended here (writes never contend); the view `_tapline_state` shows the
/// latest value of each key, like the other warehouses' table of that name.
const STATE_LOG: &str = "_tapline_state_log";
/// State values superseded for longer than this are pruned from `_tapline_state_log`.
const STATE_LOG_KEEP_US: i64 = 7 * 24 * 3600 * 1_000_000;
/// Staging tables expire after a day even if a loader dies before dropping them.
const STAGING_TTL_MS: i64 = 24 * 3600 * 1000;
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

/// The `_tapline_*` tables: name and schema.
fn ledger_tables() -> Vec<(&'static str, Vec<Value>)> {
    vec![
        (
            "_tapline_loads",
            vec![
                field("load_id", "INT64", true),
                field("uri", "STRING", true),
                field("version", "STRING", true),
                field("status", "STRING", true),
                field("bytes", "INT64", false),
                field("rows_loaded", "INT64", true),
                field("rows_rejected", "INT64", true),
                field("error", "STRING", false),
                field("attempts", "INT64", true),
                field("started_at", "TIMESTAMP", true),
                field("finished_at", "TIMESTAMP", false),
            ],
        ),
        (
            "_tapline_load_tables",
            vec![
                field("load_id", "INT64", true),
                field("table_name", "STRING", true),
                field("rows", "INT64", true),
            ],
        ),
        (
            "_tapline_rejects",
            vec![
                field("load_id", "INT64", true),
                field("uri", "STRING", true),
                field("line", "INT64", false),
                field("column_name", "STRING", false),
                field("reason", "STRING", true),
                field("raw_line", "STRING", false),
            ],
        ),
        (
            "_tapline_tables",
            vec![
                field("table_name", "STRING", true),
                field("event_name", "STRING", true),
                field("created_by_load", "INT64", true),
                field("created_at", "TIMESTAMP", true),
            ],
        ),
        (
            STATE_LOG,
            vec![
                field("key", "STRING", true),
                field("value", "STRING", true),
                field("updated_at", "TIMESTAMP", true),
                // Microseconds since the epoch: orders writes within one second.
                field("written_us", "INT64", true),
            ],
        ),
        (
            "_tapline_columns",
            vec![
                field("table_name", "STRING", true),
                field("column_name", "STRING", true),
                field("raw_name", "STRING", true),
                field("added_by_load", "INT64", true),
                field("added_at", "TIMESTAMP", true),
            ],
        ),
    ]
}

const LEDGER_COLUMNS: &str = "load_id, uri, version, status, bytes, rows_loaded, rows_rejected, \
    error, attempts, started_at, finished_at";

/// The current row of each version: its `loaded`/`replaced` row, else its latest attempt.
fn current_ledger_sql(filter: &str) -> String {
    format!(
        "SELECT {LEDGER_COLUMNS} FROM (SELECT {LEDGER_COLUMNS}, ROW_NUMBER() OVER (\
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
}

/// The dataset and the client, shared by the warehouse and its loads.
#[derive(Clone)]
struct Dataset {
    api: Arc<Api>,
    dataset: String,
}

/// `bigquery://PROJECT/DATASET[?location=L]` → (project, dataset, location).
fn parse_url(url: &str) -> Result<(String, String, Option<String>), ConfigError> {
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
    let valid_dataset = !dataset.is_empty()
        && dataset.len() <= 1024
        && dataset
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_dataset {
        return Err(bad("the dataset id may hold only letters, digits and '_'"));
    }
    let mut location = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("location", value)) if !value.is_empty() => location = Some(value.to_string()),
            _ => return Err(bad("unknown parameter: only location=LOCATION")),
        }
    }
    Ok((project.to_string(), dataset.to_string(), location))
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
        let (project, dataset, location) = parse_url(url)?;
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
        match api.get_dataset(&dataset).await {
            // Jobs in a regional dataset are only found again (jobs.get) with their location.
            Ok(resource) => {
                if api.location.is_none() {
                    api.location = resource["location"].as_str().map(str::to_string);
                }
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
        }
        let existing: Vec<String> = api
            .list_tables(&dataset)
            .await
            .map_err(|e| open_err(Box::new(e)))?
            .iter()
            .filter_map(|t| t["tableReference"]["tableId"].as_str().map(str::to_string))
            .collect();
        for (name, fields) in ledger_tables() {
            if existing.iter().any(|t| t == name) {
                continue;
            }
            let table = json!({
                "tableReference": { "projectId": project, "datasetId": dataset, "tableId": name },
                "schema": { "fields": fields },
                "labels": { EVENT_LABEL: "ledger" },
            });
            match api.insert_table(&dataset, &table).await {
                Ok(_) => {}
                Err(e) if e.is_duplicate() => {}
                Err(e) => return Err(open_err(Box::new(e))),
            }
        }
        if !existing.iter().any(|t| t == "_tapline_state") {
            let view = json!({
                "tableReference": { "projectId": project, "datasetId": dataset, "tableId": "_tapline_state" },
                "view": {
                    "query": format!(
                        "SELECT key, value, updated_at FROM (SELECT key, value, updated_at, \
                         ROW_NUMBER() OVER (PARTITION BY key ORDER BY written_us DESC) AS _rank \
                         FROM {}.{}) AS s WHERE _rank = 1",
                        ident(&dataset),
                        ident(STATE_LOG)
                    ),
                    "useLegacySql": false,
                },
            });
            match api.insert_table(&dataset, &view).await {
                Ok(_) => {}
                Err(e) if e.is_duplicate() => {}
                Err(e) => return Err(open_err(Box::new(e))),
            }
        }
        Ok(Self {
            ds: Dataset {
                api: Arc::new(api),
                dataset,
            },
            target,
            state_pruned: Default::default(),
        })
    }
}

impl Dataset {
    /// Runs DML (or a script) as a query job with a fresh id and waits for it.
    async fn run_dml(
        &self,
        operation: &'static str,
        key: &str,
        sql: &str,
        params: &[(&str, Param)],
    ) -> Result<(), WarehouseError> {
        let job_id = format!("tapline_{key}_dml_{}", uuid::Uuid::new_v4().simple());
        let job = self
            .api
            .insert_query_job(&job_id, &self.dataset, sql, params, json!({}))
            .await
            .map_err(op(operation))?;
        let status = self.api.wait_for_job(job).await.map_err(op(operation))?;
        match status.error {
            Some(e) => Err(op(operation)(e)),
            None => Ok(()),
        }
    }

    /// The latest value written under `key` in `_tapline_state` (append-only: writes never
    /// contend, the newest wins).
    async fn read_state(&self, key: &str) -> Result<Option<String>, WarehouseError> {
        let (_, rows) = self
            .api
            .query(
                &self.dataset,
                "SELECT value FROM _tapline_state_log WHERE key = @key \
                 ORDER BY written_us DESC LIMIT 1",
                &[("key", Param::Str(key.to_string()))],
            )
            .await
            .map_err(op("read state"))?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten()))
    }

    /// Appends `value` under `key` in `_tapline_state`; committed when this returns.
    /// Returns the write's `written_us`.
    async fn write_state(&self, key: &str, value: &str) -> Result<i64, WarehouseError> {
        let written_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        self.run_dml(
            "write state",
            "state",
            "INSERT INTO _tapline_state_log (key, value, updated_at, written_us) \
             VALUES (@key, @value, @now, @written_us)",
            &[
                ("key", Param::Str(key.to_string())),
                ("value", Param::Str(value.to_string())),
                ("now", Param::Timestamp(now_utc())),
                ("written_us", Param::Int(written_us)),
            ],
        )
        .await?;
        Ok(written_us)
    }

    /// Deletes the state values written before `before_us` that a newer value of their key
    /// superseded: the log stays about as large as the number of keys plus a week of writes,
    /// and the latest value of every key is kept, however old.
    async fn prune_state(&self, before_us: i64) -> Result<(), WarehouseError> {
        self.run_dml(
            "prune state",
            "state_prune",
            "DELETE FROM _tapline_state_log AS old WHERE old.written_us < @before_us \
             AND EXISTS (SELECT 1 FROM _tapline_state_log AS newer \
             WHERE newer.key = old.key AND newer.written_us > old.written_us)",
            &[("before_us", Param::Int(before_us))],
        )
        .await
    }

    /// Writes `rows` into a table Tapline defines (`columns`: name and BigQuery type), creating
    /// it when missing; a row whose `key` columns match a stored row replaces it. The rows are
    /// staged by a load job, then one transaction deletes the matching rows and inserts.
    async fn upsert_rows(
        &self,
        table: &str,
        columns: &[(&str, &str)],
        key: &[&str],
        rows: &[Vec<Option<String>>],
    ) -> Result<u64, WarehouseError> {
        let fields: Vec<Value> = columns
            .iter()
            .map(|(name, kind)| field(name, kind, key.contains(name)))
            .collect();
        match self.api.get_table(&self.dataset, table).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                let resource = json!({
                    "tableReference": {
                        "projectId": self.api.project,
                        "datasetId": self.dataset,
                        "tableId": table,
                    },
                    "schema": { "fields": fields },
                    "labels": { EVENT_LABEL: "fixed" },
                });
                match self.api.insert_table(&self.dataset, &resource).await {
                    Ok(_) => {}
                    Err(e) if e.is_duplicate() => {}
                    Err(e) => return Err(op("create table")(e)),
                }
            }
            Err(e) => return Err(op("read catalog")(e)),
        }
        // The last row of a key wins, as it would row by row.
        let key_index: Vec<usize> = key
            .iter()
            .filter_map(|k| columns.iter().position(|(c, _)| c == k))
            .collect();
        let mut latest: HashMap<Vec<Option<&str>>, usize> = HashMap::new();
        for (i, row) in rows.iter().enumerate() {
            latest.insert(key_index.iter().map(|&k| row[k].as_deref()).collect(), i);
        }
        let mut keep: Vec<usize> = latest.into_values().collect();
        keep.sort_unstable();
        let file = tempfile::NamedTempFile::new().map_err(io_err("stage rows"))?;
        let mut out = BufWriter::new(file);
        for &i in &keep {
            let mut line = serde_json::Map::new();
            for ((name, _), value) in columns.iter().zip(&rows[i]) {
                if let Some(v) = value {
                    line.insert(name.to_string(), json!(v));
                }
            }
            writeln!(out, "{}", Value::Object(line)).map_err(io_err("stage rows"))?;
        }
        let file = out
            .into_inner()
            .map_err(|e| io_err("stage rows")(e.into_error()))?;
        let stage_key = hex::encode(&Sha256::digest(table.as_bytes())[..8]);
        let staged = self
            .stage_file(&stage_key, "rows", fields, file.path().to_path_buf())
            .await?;
        let names: Vec<String> = columns.iter().map(|(c, _)| ident(c)).collect();
        let matches: Vec<String> = key
            .iter()
            .map(|k| format!("s.{k} = t.{k}", k = ident(k)))
            .collect();
        let script = format!(
            "BEGIN TRANSACTION;\n\
             DELETE FROM {t} AS t WHERE EXISTS (SELECT 1 FROM {s} AS s WHERE {on});\n\
             INSERT INTO {t} ({cols}) SELECT {cols} FROM {s};\n\
             COMMIT TRANSACTION;",
            t = ident(table),
            s = ident(&staged),
            on = matches.join(" AND "),
            cols = names.join(", "),
        );
        let result = self.run_dml("replace rows", &stage_key, &script, &[]).await;
        if let Err(e) = self.api.delete_table(&self.dataset, &staged).await {
            tracing::warn!(table = %staged, error = %e, "Could not drop a staging table; it expires within a day.");
        }
        result.map(|()| keep.len() as u64)
    }

    /// Uploads one staged file into a new staging table; returns the staging table's name.
    async fn stage_file(
        &self,
        key: &str,
        suffix: &str,
        fields: Vec<Value>,
        path: std::path::PathBuf,
    ) -> Result<String, WarehouseError> {
        let name = format!(
            "_tapline_stage_{}_{}_{suffix}",
            &key[..16.min(key.len())],
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let expires =
            crate::time::parse_utc(&now_utc()).unwrap_or_default() * 1000 + STAGING_TTL_MS;
        let resource = json!({
            "tableReference": {
                "projectId": self.api.project,
                "datasetId": self.dataset,
                "tableId": name,
            },
            "schema": { "fields": fields },
            "expirationTime": expires.to_string(),
            "labels": { EVENT_LABEL: "staging" },
        });
        self.api
            .insert_table(&self.dataset, &resource)
            .await
            .map_err(op("stage rows"))?;
        let configuration = json!({
            "load": {
                "destinationTable": {
                    "projectId": self.api.project,
                    "datasetId": self.dataset,
                    "tableId": name,
                },
                "sourceFormat": "NEWLINE_DELIMITED_JSON",
                "schema": { "fields": fields },
                "createDisposition": "CREATE_NEVER",
                "writeDisposition": "WRITE_APPEND",
                "schemaUpdateOptions": ["ALLOW_FIELD_ADDITION"],
                "maxBadRecords": 0,
            },
            "labels": { EVENT_LABEL: "stage" },
        });
        let job_id = format!("tapline_{}_stage_{}", key, uuid::Uuid::new_v4().simple());
        let size = std::fs::metadata(&path)
            .map_err(io_err("stage rows"))?
            .len();
        // Small files in one request; larger ones resumably, so a dropped connection costs a
        // chunk, not the file.
        let job = if size > api::RESUMABLE_CHUNK {
            self.api
                .insert_resumable_job(&job_id, configuration, &path, size)
                .await
        } else {
            let body: api::UploadBody = Box::new(move || {
                let path = path.clone();
                futures_util::stream::once(async move { tokio::fs::File::open(path).await })
                    .map_ok(tokio_util::io::ReaderStream::new)
                    .try_flatten()
                    .boxed()
            });
            self.api
                .insert_upload_job(&job_id, configuration, &body)
                .await
        }
        .map_err(op("stage rows"))?;
        let status = self.api.wait_for_job(job).await.map_err(op("stage rows"))?;
        if let Some(e) = status.error {
            return Err(op("stage rows")(e));
        }
        Ok(name)
    }

    async fn ledger_rows(
        &self,
        sql: &str,
        params: &[(&str, Param)],
    ) -> Result<Vec<LoadRecord>, WarehouseError> {
        let (_, rows) = self
            .api
            .query(&self.dataset, sql, params)
            .await
            .map_err(op("read ledger"))?;
        Ok(rows.into_iter().map(ledger_record).collect())
    }

    async fn current(&self, object: &SourceObject) -> Result<Option<LoadRecord>, WarehouseError> {
        let sql = current_ledger_sql("WHERE uri = @uri AND version = @version");
        let params = [
            ("uri", Param::Str(object.uri.clone())),
            ("version", Param::Str(object.version.clone())),
        ];
        Ok(self.ledger_rows(&sql, &params).await?.into_iter().next())
    }

    /// Event tables (by `friendlyName` and the `tapline=event` label) and every name taken.
    async fn read_catalog(&self) -> Result<(Catalog, HashMap<String, String>), WarehouseError> {
        let tables = self
            .api
            .list_tables(&self.dataset)
            .await
            .map_err(op("read catalog"))?;
        let names = tables
            .iter()
            .filter_map(|t| t["tableReference"]["tableId"].as_str().map(str::to_string));
        let mut catalog = Catalog::new(names);
        let mut events = HashMap::new();
        for t in &tables {
            let (Some(name), Some(event)) = (
                t["tableReference"]["tableId"].as_str(),
                t["friendlyName"].as_str(),
            ) else {
                continue;
            };
            if t["labels"][EVENT_LABEL].as_str() == Some("event") {
                catalog.add_table(event.to_string(), name.to_string());
                events.insert(event.to_string(), name.to_string());
            }
        }
        Ok((catalog, events))
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
    }
}

#[async_trait]
impl Warehouse for BigQueryWarehouse {
    fn describe(&self) -> String {
        self.target.clone()
    }

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
        let (key, load_id) = version_key(object);
        Ok(Begin::Started(Box::new(BigQueryLoad {
            ds: self.ds.clone(),
            retry_quarantined,
            object: object.clone(),
            key,
            load_id,
            attempt: previous.map_or(1, |p| p.attempts + 1),
            loaded_at: now_utc(),
            catalog,
            fetched: Default::default(),
            staged: BTreeMap::new(),
            view_stale: false,
        })))
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
            "INSERT INTO _tapline_loads ({LEDGER_COLUMNS}) VALUES (@load_id, @uri, @version, \
             'failed', @bytes, 0, 0, @error, @attempts, @now, @now)"
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
}

/// Rows of one event table, written as NDJSON to a temporary file until commit.
struct Staged {
    file: BufWriter<tempfile::NamedTempFile>,
    /// Raw names of the columns rows carry (besides lineage), in first-seen order.
    columns: Vec<String>,
    rows: u64,
}

/// One object version's load: rows wait in temporary files; nothing reaches BigQuery before
/// [`LoadTransaction::commit`], so dropping it leaves nothing behind.
struct BigQueryLoad {
    ds: Dataset,
    /// A quarantined version is being retried on purpose.
    retry_quarantined: bool,
    object: SourceObject,
    key: String,
    load_id: i64,
    attempt: u32,
    loaded_at: String,
    catalog: Catalog,
    /// Event tables whose columns were read (tables.get) for this load.
    fetched: std::collections::HashSet<String>,
    /// Event → its staged rows, in table-name order for stable job ids.
    staged: BTreeMap<String, Staged>,
    view_stale: bool,
}

fn io_err(operation: &'static str) -> impl FnOnce(std::io::Error) -> WarehouseError {
    move |e| WarehouseError::Operation {
        operation,
        retryable: true,
        source: Box::new(e),
    }
}

impl BigQueryLoad {
    /// Table metadata holds a long event name in its cut form (see [`fit_metadata`]): the
    /// table read under that form is this event's.
    fn resolve_cut_event(&mut self, event: &str) {
        if self.catalog.table(event).is_none() {
            let cut = fit_metadata(event, MAX_FRIENDLY_NAME_CHARS);
            if cut != event {
                self.catalog.rename_event(&cut, event);
            }
        }
    }

    /// Likewise for raw column names read back from field descriptions.
    fn resolve_cut_columns(&mut self, event: &str, columns: &[String]) {
        let Some(table) = self.catalog.table(event).map(|t| t.name.clone()) else {
            return;
        };
        for raw in columns {
            let cut = fit_metadata(raw, MAX_FIELD_DESCRIPTION_CHARS);
            if cut != *raw {
                self.catalog.rename_column(&table, &cut, raw);
            }
        }
    }

    /// Reads an existing event table's columns (raw names from descriptions) once per load.
    async fn fetch_columns(&mut self, event: &str) -> Result<(), WarehouseError> {
        // Once per event: after the first batch the catalog also holds tables this load plans
        // (created only at commit).
        if !self.fetched.insert(event.to_string()) {
            return Ok(());
        }
        let Some(table) = self.catalog.table(event).map(|t| t.name.clone()) else {
            return Ok(());
        };
        let resource = self
            .ds
            .api
            .get_table(&self.ds.dataset, &table)
            .await
            .map_err(op("read catalog"))?;
        add_columns(&mut self.catalog, &table, &resource);
        Ok(())
    }

    /// The BigQuery schema of an event table's columns: raw names → typed fields.
    fn fields_for(&self, event: &str, raws: &[String]) -> Vec<Value> {
        let table = self.catalog.table(event).expect("planned");
        let mut fields: Vec<Value> = raws
            .iter()
            .map(|raw| {
                let name = &table.columns[raw];
                let mut f = match raw.as_str() {
                    TS_COLUMN => field(name, "TIMESTAMP", false),
                    EVENT_NAME_COLUMN => field(name, "STRING", false),
                    _ => field(name, "STRING", false),
                };
                f["description"] = json!(fit_metadata(raw, MAX_FIELD_DESCRIPTION_CHARS));
                f
            })
            .collect();
        fields.push(field(COL_SOURCE_URI, "STRING", false));
        fields.push(field(COL_SOURCE_LINE, "INT64", false));
        fields.push(field(COL_LOAD_ID, "INT64", false));
        fields.push(field(COL_LOADED_AT, "TIMESTAMP", false));
        fields
    }

    /// Creates the event table or adds the columns this load needs. Columns are only ever
    /// added, so doing this before the commit script is harmless if the script fails.
    async fn ensure_table(&mut self, event: &str) -> Result<(), WarehouseError> {
        let table = self.catalog.table(event).expect("planned").name.clone();
        let all: Vec<String> = {
            let t = self.catalog.table(event).expect("planned");
            let mut raws: Vec<(&String, &String)> = t.columns.iter().collect();
            raws.sort_by(|a, b| a.1.cmp(b.1));
            raws.into_iter().map(|(raw, _)| raw.clone()).collect()
        };
        let wanted = self.fields_for(event, &all);
        let existing = match self.ds.api.get_table(&self.ds.dataset, &table).await {
            Ok(resource) => resource,
            Err(e) if e.is_not_found() => {
                let resource = json!({
                    "tableReference": {
                        "projectId": self.ds.api.project,
                        "datasetId": self.ds.dataset,
                        "tableId": table,
                    },
                    "friendlyName": fit_metadata(event, MAX_FRIENDLY_NAME_CHARS),
                    "description": fit_metadata(
                        &format!("CleverTap event {event:?}, loaded by Tapline."),
                        MAX_TABLE_DESCRIPTION_CHARS,
                    ),
                    "labels": { EVENT_LABEL: "event" },
                    "schema": { "fields": required_lineage(&wanted) },
                    "timePartitioning": { "type": "DAY", "field": ts_column(&wanted) },
                });
                match self.ds.api.insert_table(&self.ds.dataset, &resource).await {
                    Ok(_) => return Ok(()),
                    // Another loader created it: check it is the same event, then add columns.
                    Err(e) if e.is_duplicate() => self
                        .ds
                        .api
                        .get_table(&self.ds.dataset, &table)
                        .await
                        .map_err(op("create table"))?,
                    Err(e) => return Err(op("create table")(e)),
                }
            }
            Err(e) => return Err(op("read catalog")(e)),
        };
        if existing["friendlyName"].as_str()
            != Some(fit_metadata(event, MAX_FRIENDLY_NAME_CHARS).as_str())
        {
            return Err(WarehouseError::Operation {
                operation: "create table",
                retryable: true,
                source: format!("table {table} was created for another event meanwhile").into(),
            });
        }
        let mut fields = existing["schema"]["fields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut added = false;
        for f in wanted {
            match fields.iter().find(|e| e["name"] == f["name"]) {
                Some(e)
                    if e["description"] != f["description"] && f.get("description").is_some() =>
                {
                    return Err(WarehouseError::Operation {
                        operation: "add column",
                        retryable: true,
                        source: format!(
                            "column {} of {table} was added for another name meanwhile",
                            f["name"]
                        )
                        .into(),
                    });
                }
                Some(_) => {}
                None => {
                    fields.push(f);
                    added = true;
                }
            }
        }
        if added {
            self.ds
                .api
                .patch_table(
                    &self.ds.dataset,
                    &table,
                    &json!({ "schema": { "fields": fields } }),
                )
                .await
                .map_err(op("add column"))?;
        }
        Ok(())
    }

    /// Runs the commit script under the version's next free commit job id. `Ok(false)`: a
    /// commit of this version already succeeded under another loader.
    async fn run_commit(
        &self,
        script: &str,
        params: &[(&str, Param)],
        outcome: &str,
        quarantine_retry: bool,
    ) -> Result<bool, WarehouseError> {
        let mut last_error = None;
        for n in 1..=MAX_COMMIT_JOBS {
            let job_id = format!("tapline_{}_commit_{n}", self.key);
            let labels = json!({ OUTCOME_LABEL: outcome });
            let (job, ours) = match self
                .ds
                .api
                .insert_query_job(&job_id, &self.ds.dataset, script, params, labels)
                .await
            {
                Ok(job) => (job, true),
                Err(e) if e.is_duplicate() => (
                    self.ds.api.get_job(&job_id).await.map_err(op("commit"))?,
                    false,
                ),
                Err(e) => return Err(op("commit")(e)),
            };
            let status = self.ds.api.wait_for_job(job).await.map_err(op("commit"))?;
            match status.error {
                None if ours => return Ok(true),
                None => {
                    let theirs = status.labels.get(OUTCOME_LABEL).and_then(Value::as_str);
                    // A quarantine may be retried; anything else committed is final.
                    if theirs == Some("quarantined") && quarantine_retry {
                        continue;
                    }
                    return Ok(false);
                }
                Some(e) if ours && !e.is_retryable() => return Err(op("commit")(e)),
                Some(e) => last_error = Some(e),
            }
        }
        Err(op("commit")(last_error.unwrap_or(ApiError::Protocol {
            operation: "commit",
            detail: format!("{MAX_COMMIT_JOBS} commit jobs failed"),
        })))
    }

    /// Rebuilds `all_events` from a fresh listing, plus the tables this load wrote (`touched`
    /// events) should the listing not show them yet.
    async fn rebuild_view(&self, touched: &[String]) -> Result<(), WarehouseError> {
        let (mut catalog, events) = self.ds.read_catalog().await?;
        for table in events.values() {
            let resource = self
                .ds
                .api
                .get_table(&self.ds.dataset, table)
                .await
                .map_err(op("read catalog"))?;
            add_columns(&mut catalog, table, &resource);
        }
        for event in touched.iter() {
            if let Some(own) = self.catalog.table(event)
                && !events.values().any(|t| *t == own.name)
            {
                catalog.add_table(event.clone(), own.name.clone());
                for (raw, column) in &own.columns {
                    catalog.add_column(&own.name, raw.clone(), column.clone());
                }
            }
        }
        let dataset = self.ds.dataset.clone();
        let body = catalog.all_events_select_with(ident, "STRING", &|t| {
            format!("{}.{}", ident(&dataset), ident(t))
        });
        let resource = json!({
            "tableReference": {
                "projectId": self.ds.api.project,
                "datasetId": self.ds.dataset,
                "tableId": "all_events",
            },
            "view": { "query": body, "useLegacySql": false },
        });
        match self.ds.api.insert_table(&self.ds.dataset, &resource).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_duplicate() => self
                .ds
                .api
                .update_table(&self.ds.dataset, "all_events", &resource)
                .await
                .map(|_| ())
                .map_err(op("rebuild all_events")),
            Err(e) => Err(op("rebuild all_events")(e)),
        }
    }

    fn record(
        &self,
        status: LoadStatus,
        error: Option<String>,
        bytes: u64,
        rows: u64,
        rejected: u64,
        finished_at: String,
    ) -> LoadRecord {
        LoadRecord {
            load_id: self.load_id,
            uri: self.object.uri.clone(),
            version: self.object.version.clone(),
            status,
            bytes: Some(bytes),
            rows_loaded: rows,
            rows_rejected: rejected,
            error,
            attempts: self.attempt,
            started_at: self.loaded_at.clone(),
            finished_at: Some(finished_at),
        }
    }
}

/// Registers an event table's columns: each field's description is its raw CleverTap name.
fn add_columns(catalog: &mut Catalog, table: &str, resource: &Value) {
    for f in resource["schema"]["fields"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let (Some(name), Some(raw)) = (f["name"].as_str(), f["description"].as_str()) {
            catalog.add_column(table, raw.to_string(), name.to_string());
        }
    }
}

/// Event tables' `ts` and lineage are REQUIRED; data columns stay NULLABLE.
fn required_lineage(fields: &[Value]) -> Vec<Value> {
    fields
        .iter()
        .map(|f| {
            let mut f = f.clone();
            let required = f["description"]
                .as_str()
                .is_some_and(|d| d == TS_COLUMN || d == EVENT_NAME_COLUMN)
                || LINEAGE_COLUMNS.contains(&f["name"].as_str().unwrap_or(""));
            if required {
                f["mode"] = json!("REQUIRED");
            }
            f
        })
        .collect()
}

fn ts_column(fields: &[Value]) -> Value {
    fields
        .iter()
        .find(|f| f["description"] == TS_COLUMN)
        .map(|f| f["name"].clone())
        .unwrap_or(json!("ts"))
}

#[async_trait]
impl LoadTransaction for BigQueryLoad {
    fn load_id(&self) -> i64 {
        self.load_id
    }

    async fn append(&mut self, batch: RowBatch) -> Result<(), WarehouseError> {
        let columns = batch.schema().columns().to_vec();
        let mut rows = batch.rows().peekable();
        while let Some(first) = rows.peek().copied() {
            let event = first.event_name().to_string();
            self.resolve_cut_event(&event);
            self.fetch_columns(&event).await?;
            self.resolve_cut_columns(&event, &columns);
            if self.catalog.needs_ddl(&event, &columns) {
                let plan = self.catalog.plan(&event, &columns, MAX_DATA_COLUMNS)?;
                self.view_stale |= plan.view_stale;
            }
            let table = self.catalog.table(&event).expect("planned");
            let names: Vec<&String> = columns.iter().map(|raw| &table.columns[raw]).collect();
            if !self.staged.contains_key(&event) {
                let file = tempfile::NamedTempFile::new().map_err(io_err("stage rows"))?;
                self.staged.insert(
                    event.clone(),
                    Staged {
                        file: BufWriter::with_capacity(1 << 20, file),
                        columns: Vec::new(),
                        rows: 0,
                    },
                );
            }
            let staged = self.staged.get_mut(&event).expect("inserted above");
            for raw in &columns {
                if !staged.columns.contains(raw) {
                    staged.columns.push(raw.clone());
                }
            }
            let mut line = String::new();
            while let Some(row) = rows.next_if(|r| r.event_name() == event) {
                line.clear();
                line.push('{');
                for (i, name) in names.iter().enumerate() {
                    if let Some(value) = row.value(i) {
                        push_json_string(&mut line, name);
                        line.push(':');
                        push_json_string(&mut line, value);
                        line.push(',');
                    }
                }
                push_json_string(&mut line, COL_SOURCE_URI);
                line.push(':');
                push_json_string(&mut line, &self.object.uri);
                // INT64 as a JSON string: exact beyond 2^53 whatever parses it.
                line.push_str(&format!(
                    ",\"{COL_SOURCE_LINE}\":{},\"{COL_LOAD_ID}\":\"{}\",\"{COL_LOADED_AT}\":\"{}\"}}\n",
                    row.line, self.load_id, self.loaded_at
                ));
                staged
                    .file
                    .write_all(line.as_bytes())
                    .map_err(io_err("stage rows"))?;
                staged.rows += 1;
            }
        }
        Ok(())
    }

    async fn commit(
        mut self: Box<Self>,
        outcome: Outcome,
        rejects: Vec<Reject>,
    ) -> Result<Committed, WarehouseError> {
        let (status, error, bytes, rows, rejected) = match &outcome {
            Outcome::Loaded {
                bytes,
                rows,
                rejected,
            } => (LoadStatus::Loaded, None, *bytes, *rows, *rejected),
            Outcome::Quarantined {
                reason,
                bytes,
                rejected,
                ..
            } => (
                LoadStatus::Quarantined,
                Some(reason.clone()),
                *bytes,
                0,
                *rejected,
            ),
        };
        let mut statements = vec!["BEGIN TRANSACTION".to_string()];
        let mut staging = Vec::new();
        let mut extra: Vec<(String, Param)> = Vec::new();
        let staged = std::mem::take(&mut self.staged);
        let touched: Vec<String> = staged.keys().cloned().collect();
        let result = async {
            if status == LoadStatus::Loaded {
                for (index, (event, mut s)) in staged.into_iter().enumerate() {
                    s.file.flush().map_err(io_err("stage rows"))?;
                    if s.rows == 0 {
                        continue;
                    }
                    self.ensure_table(&event).await?;
                    let fields = self.fields_for(&event, &s.columns);
                    let file = s.file.into_inner().map_err(|e| io_err("stage rows")(e.into_error()))?;
                    let name = self.ds.stage_file(&self.key, &index.to_string(), fields.clone(), file.path().to_path_buf()).await?;
                    staging.push((name.clone(), file));
                    let table = self.catalog.table(&event).expect("planned").name.clone();
                    let list: Vec<String> = fields
                        .iter()
                        .map(|f| ident(f["name"].as_str().unwrap_or("")))
                        .collect();
                    statements.push(format!(
                        "INSERT INTO {t} ({cols}) SELECT {cols} FROM {s}",
                        t = ident(&table),
                        cols = list.join(", "),
                        s = ident(&name),
                    ));
                    let t = bind(&mut extra, Param::Str(table.clone()));
                    statements.push(format!(
                        "INSERT INTO _tapline_load_tables (load_id, table_name, rows) VALUES \
                         (@load_id, {t}, {})",
                        s.rows
                    ));
                    // The catalog mirror, once per table and column.
                    let e = bind(&mut extra, Param::Str(event.clone()));
                    statements.push(format!(
                        "INSERT INTO _tapline_tables (table_name, event_name, created_by_load, created_at) \
                         SELECT {t}, {e}, @load_id, @now FROM (SELECT 1) AS one WHERE NOT EXISTS \
                         (SELECT 1 FROM _tapline_tables WHERE table_name = {t})"
                    ));
                    let columns = self.catalog.table(&event).expect("planned").columns.clone();
                    for raw in &s.columns {
                        let c = bind(&mut extra, Param::Str(columns[raw].clone()));
                        let r = bind(&mut extra, Param::Str(raw.clone()));
                        statements.push(format!(
                            "INSERT INTO _tapline_columns (table_name, column_name, raw_name, added_by_load, added_at) \
                             SELECT {t}, {c}, {r}, @load_id, @now FROM (SELECT 1) AS one WHERE NOT EXISTS \
                             (SELECT 1 FROM _tapline_columns WHERE table_name = {t} AND column_name = {c})"
                        ));
                    }
                }
                // An older version's rows go in the same transaction.
                let older = self
                    .ds
                    .api
                    .query(
                        &self.ds.dataset,
                        "SELECT DISTINCT t.table_name FROM _tapline_load_tables AS t \
                         JOIN _tapline_loads AS l ON l.load_id = t.load_id \
                         WHERE l.uri = @uri AND l.status = 'loaded' AND l.load_id <> @load_id",
                        &[
                            ("uri", Param::Str(self.object.uri.clone())),
                            ("load_id", Param::Int(self.load_id)),
                        ],
                    )
                    .await
                    .map_err(op("find older versions"))?
                    .1;
                for table in older.into_iter().filter_map(|r| r.into_iter().next().flatten()) {
                    statements.push(format!(
                        "DELETE FROM {} WHERE {} = @uri AND {} <> @load_id",
                        ident(&table),
                        ident(COL_SOURCE_URI),
                        ident(COL_LOAD_ID)
                    ));
                }
                statements.push(
                    "UPDATE _tapline_loads SET status = 'replaced' \
                     WHERE uri = @uri AND status = 'loaded' AND load_id <> @load_id"
                        .to_string(),
                );
            }
            let kept: Vec<&Reject> = rejects.iter().take(MAX_STORED_REJECTS).collect();
            if !kept.is_empty() {
                let (name, file) = self.stage_rejects(&kept).await?;
                statements.push(format!(
                    "INSERT INTO _tapline_rejects (load_id, uri, line, column_name, reason, raw_line) \
                     SELECT load_id, uri, line, column_name, reason, raw_line FROM {}",
                    ident(&name)
                ));
                staging.push((name, file));
            }
            statements.push(format!(
                "INSERT INTO _tapline_loads ({LEDGER_COLUMNS}) VALUES (@load_id, @uri, @version, \
                 @status, @bytes, @rows, @rejected, @error, @attempts, @started, @now)"
            ));
            statements.push("COMMIT TRANSACTION".to_string());
            let script = statements.join(";\n") + ";";
            // The ledger row's finished_at, and the one this commit reports: the same value,
            // however long the commit job takes.
            let finished_at = now_utc();
            let fixed = [
                ("load_id", Param::Int(self.load_id)),
                ("uri", Param::Str(self.object.uri.clone())),
                ("version", Param::Str(self.object.version.clone())),
                ("status", Param::Str(status.as_str().to_string())),
                ("bytes", Param::Int(bytes as i64)),
                ("rows", Param::Int(rows as i64)),
                ("rejected", Param::Int(rejected as i64)),
                (
                    "error",
                    error.clone().map_or(Param::NullStr, Param::Str),
                ),
                ("attempts", Param::Int(self.attempt as i64)),
                ("started", Param::Timestamp(self.loaded_at.clone())),
                ("now", Param::Timestamp(finished_at.clone())),
            ];
            let params: Vec<(&str, Param)> = fixed
                .into_iter()
                .chain(extra.iter().map(|(n, p)| (n.as_str(), p.clone())))
                .collect();
            let committed = self
                .run_commit(&script, &params, status.as_str(), self.retry_quarantined)
                .await?;
            Ok::<(bool, String), WarehouseError>((committed, finished_at))
        }
        .await;
        for (name, _) in &staging {
            if let Err(e) = self.ds.api.delete_table(&self.ds.dataset, name).await {
                tracing::warn!(table = %name, error = %e, "Could not drop a staging table; it expires within a day.");
            }
        }
        let (committed, finished_at) = result?;
        if !committed {
            // Another loader committed this version: report what the ledger says.
            return self
                .ds
                .current(&self.object)
                .await?
                .map(Committed::Theirs)
                .ok_or_else(|| WarehouseError::Operation {
                    operation: "commit",
                    retryable: true,
                    source: "a commit job succeeded but its ledger row is not visible".into(),
                });
        }
        if self.view_stale && status == LoadStatus::Loaded {
            self.rebuild_view(&touched).await?;
        }
        Ok(Committed::Ours(self.record(
            status,
            error,
            bytes,
            rows,
            rejected,
            finished_at,
        )))
    }
}

impl BigQueryLoad {
    async fn stage_rejects(
        &self,
        rejects: &[&Reject],
    ) -> Result<(String, tempfile::NamedTempFile), WarehouseError> {
        let file = tempfile::NamedTempFile::new().map_err(io_err("stage rejects"))?;
        let mut out = BufWriter::new(file);
        for r in rejects {
            let line = json!({
                "load_id": self.load_id,
                "uri": self.object.uri,
                "line": r.line,
                "column_name": r.column,
                "reason": r.reason,
                "raw_line": r.raw,
            });
            writeln!(out, "{line}").map_err(io_err("stage rejects"))?;
        }
        let file = out
            .into_inner()
            .map_err(|e| io_err("stage rejects")(e.into_error()))?;
        let fields = ledger_tables()
            .into_iter()
            .find(|(n, _)| *n == "_tapline_rejects")
            .map(|(_, f)| f)
            .unwrap_or_default();
        let name = self
            .ds
            .stage_file(&self.key, "rejects", fields, file.path().to_path_buf())
            .await?;
        Ok((name, file))
    }
}

/// Adds a query parameter; returns its `@name` for the SQL text.
fn bind(params: &mut Vec<(String, Param)>, value: Param) -> String {
    let name = format!("p{}", params.len());
    params.push((name.clone(), value));
    format!("@{name}")
}

/// Appends `text` as a JSON string.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_project_dataset_and_location() {
        assert_eq!(
            parse_url("bigquery://my-proj/clevertap?location=EU").unwrap(),
            ("my-proj".into(), "clevertap".into(), Some("EU".into()))
        );
        assert_eq!(
            parse_url("bigquery://p/d").unwrap(),
            ("p".into(), "d".into(), None)
        );
        for bad in [
            "bigquery://p",
            "bigquery://p/bad-name",
            "bigquery:///d",
            "bigquery://p/d?x=1",
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

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        push_json_string(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001é\"");
        let v: String = serde_json::from_str(&s).unwrap();
        assert_eq!(v, "a\"b\\c\nd\u{1}é");
    }
}
