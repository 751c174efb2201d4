//! One BigQuery dataset through the REST client: its fixed tables (`ledger_tables.json` and the
//! `_tapline_state` view, created at open), checkpoints, fixed-table upserts, staging uploads,
//! ledger reads and the catalog kept in table metadata.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::api::{self, Api, ApiError, Param};
use super::{EVENT_LABEL, current_ledger_sql, field, ident, io_err, ledger_record, op};
use crate::export::Reject;
use crate::time::now_utc;
use crate::warehouse::catalog::Catalog;
use crate::warehouse::column_kinds::ColumnKind;
use crate::warehouse::{LoadRecord, SourceObject, WarehouseError};

/// Checkpoints are appended here (writes never contend); the view `_tapline_state` shows the
/// latest value of each key, like the other warehouses' table of that name.
pub(super) const STATE_LOG: &str = "_tapline_state_log";
/// Staging tables expire after a day even if a loader dies before dropping them.
const STAGING_TTL_MS: i64 = 24 * 3600 * 1000;

/// The `_tapline_*` tables, in BigQuery's JSON schema form (`bq mk --schema`): tables.insert
/// takes schemas, not DDL. `_tapline_state_log.written_us` is microseconds since the epoch: it
/// orders writes within one second.
const LEDGER_TABLES_JSON: &str = include_str!("ledger_tables.json");

/// One table of [`LEDGER_TABLES_JSON`].
#[derive(serde::Deserialize)]
struct FixedTableSchema {
    name: String,
    fields: Vec<Value>,
}

/// The `_tapline_*` tables: name and schema fields.
fn ledger_tables() -> Vec<FixedTableSchema> {
    serde_json::from_str(LEDGER_TABLES_JSON).expect("ledger_tables.json is valid (unit-tested)")
}

/// A `tableReference` object, as tables.insert takes it.
fn table_reference(project: &str, dataset: &str, table: &str) -> Value {
    json!({ "projectId": project, "datasetId": dataset, "tableId": table })
}

/// Creates the `_tapline_*` tables and the `_tapline_state` view where missing.
pub(super) async fn create_fixed_tables(api: &Api, dataset: &str) -> Result<(), ApiError> {
    let project = &api.project;
    let existing: Vec<String> = api
        .list_tables(dataset)
        .await?
        .iter()
        .filter_map(|t| t["tableReference"]["tableId"].as_str().map(str::to_string))
        .collect();
    for FixedTableSchema { name, fields } in ledger_tables() {
        if existing.contains(&name) {
            continue;
        }
        let table = json!({
            "tableReference": table_reference(project, dataset, &name),
            "schema": { "fields": fields },
            "labels": { EVENT_LABEL: "ledger" },
        });
        match api.insert_table(dataset, &table).await {
            Ok(_) => {}
            Err(e) if e.is_duplicate() => {}
            Err(e) => return Err(e),
        }
    }
    if !existing.iter().any(|t| t == "_tapline_state") {
        let view = json!({
            "tableReference": table_reference(project, dataset, "_tapline_state"),
            "view": {
                "query": format!(
                    "SELECT key, value, updated_at FROM (SELECT key, value, updated_at, \
                     ROW_NUMBER() OVER (PARTITION BY key ORDER BY written_us DESC) AS _rank \
                     FROM {}.{}) AS s WHERE _rank = 1",
                    ident(dataset),
                    ident(STATE_LOG)
                ),
                "useLegacySql": false,
            },
        });
        match api.insert_table(dataset, &view).await {
            Ok(_) => {}
            Err(e) if e.is_duplicate() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The fields fixed tables gained after datasets were first made, as (table, field, type): a
/// dataset from before them gets them at open, NULL in its rows. `_tapline_columns` gained
/// `kind` and `pinned` with column kinds (NULL reads as text, see [`ColumnRow`]); the ledger
/// gained `object_created_at` with freshness (NULL: unknown).
const ADDED_FIELDS: [(&str, &str, &str); 3] = [
    ("_tapline_columns", "kind", "STRING"),
    ("_tapline_columns", "pinned", "STRING"),
    ("_tapline_loads", "object_created_at", "TIMESTAMP"),
];

/// Adds [`ADDED_FIELDS`] to an older dataset's tables (tables.patch adds NULLABLE fields; the
/// rows keep theirs). Two loaders upgrading at once both send the same schema, so either order
/// ends the same.
pub(super) async fn add_missing_fields(api: &Api, dataset: &str) -> Result<(), ApiError> {
    for table_name in ["_tapline_columns", "_tapline_loads"] {
        let table = api.get_table(dataset, table_name).await?;
        let mut fields = table["schema"]["fields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut added = false;
        for (_, name, kind) in ADDED_FIELDS.iter().filter(|(t, _, _)| *t == table_name) {
            if !fields.iter().any(|f| f["name"] == *name) {
                fields.push(field(name, kind, false));
                added = true;
            }
        }
        if added {
            api.patch_table(
                dataset,
                table_name,
                &json!({ "schema": { "fields": fields } }),
            )
            .await?;
        }
    }
    Ok(())
}

/// One `_tapline_columns` row: a column, the kind of its values and its pin.
#[derive(Debug, Clone)]
pub(super) struct ColumnRow {
    pub(super) table: String,
    pub(super) column: String,
    pub(super) raw: String,
    /// `kind`: NULL in a row from before column kinds reads as text (its values were never
    /// classified, and text hides none of them); `''` is a column with only NULLs so far.
    pub(super) kind: Option<ColumnKind>,
    pub(super) pinned: Option<ColumnKind>,
}

impl ColumnRow {
    /// Registers the row's column, kind and pin in `catalog` (tables it lacks are ignored).
    pub(super) fn register(&self, catalog: &mut Catalog) {
        catalog.add_column(&self.table, self.raw.clone(), self.column.clone());
        if let Some(kind) = self.kind {
            catalog.set_kind(&self.table, &self.raw, kind);
        }
        if let Some(pinned) = self.pinned {
            catalog.set_pinned(&self.table, &self.raw, pinned);
        }
    }
}

/// The stored text of a kind as [`ColumnRow::kind`] reads it.
fn stored_kind(text: Option<&str>) -> Option<ColumnKind> {
    match text {
        None => Some(ColumnKind::Text),
        Some("") => None,
        Some(kind) => Some(ColumnKind::parse(kind)),
    }
}

/// The dataset and the client, shared by the warehouse and its loads.
#[derive(Clone)]
pub(super) struct Dataset {
    pub(super) api: Arc<Api>,
    pub(super) dataset: String,
    /// The dataset of the typed views for BI tools.
    pub(super) bi: BiDataset,
}

/// The typed views' dataset (`<dataset>_bi` unless named) and what it is created with: the raw
/// dataset's location and labels.
#[derive(Clone, Debug)]
pub(super) struct BiDataset {
    pub(super) name: String,
    pub(super) location: Option<String>,
    pub(super) labels: Value,
    /// Seen or created by this handle: not checked again.
    pub(super) exists: Arc<std::sync::atomic::AtomicBool>,
}

impl Dataset {
    /// The `tableReference` of `table` in this dataset.
    pub(super) fn table_reference(&self, table: &str) -> Value {
        table_reference(&self.api.project, &self.dataset, table)
    }

    /// Runs DML (or a script) as a query job with a fresh id and waits for it.
    pub(super) async fn run_dml(
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
    pub(super) async fn read_state(&self, key: &str) -> Result<Option<String>, WarehouseError> {
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
    pub(super) async fn write_state(&self, key: &str, value: &str) -> Result<i64, WarehouseError> {
        let written_us = state_written_us();
        self.run_dml(
            "write state",
            "state",
            &state_insert_sql("@key", "@value", "@now", "@written_us"),
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
    pub(super) async fn prune_state(&self, before_us: i64) -> Result<(), WarehouseError> {
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
    pub(super) async fn upsert_rows(
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
                    "tableReference": self.table_reference(table),
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
    pub(super) async fn stage_file(
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
            "tableReference": self.table_reference(&name),
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

    pub(super) async fn ledger_rows(
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

    pub(super) async fn current(
        &self,
        object: &SourceObject,
    ) -> Result<Option<LoadRecord>, WarehouseError> {
        let sql = current_ledger_sql("WHERE uri = @uri AND version = @version");
        let params = [
            ("uri", Param::Str(object.uri.clone())),
            ("version", Param::Str(object.version.clone())),
        ];
        Ok(self.ledger_rows(&sql, &params).await?.into_iter().next())
    }

    /// Every `_tapline_columns` row (kinds and pins with them).
    pub(super) async fn column_rows(&self) -> Result<Vec<ColumnRow>, WarehouseError> {
        let (_, rows) = self
            .api
            .query(
                &self.dataset,
                "SELECT table_name, column_name, raw_name, kind, pinned FROM _tapline_columns",
                &[],
            )
            .await
            .map_err(op("read catalog"))?;
        Ok(rows
            .into_iter()
            .filter_map(|mut r| {
                r.resize(5, None);
                let mut r = r.into_iter();
                let (table, column, raw) = (r.next()??, r.next()??, r.next()??);
                let kind = stored_kind(r.next().flatten().as_deref());
                let pinned = r.next().flatten().map(|p| ColumnKind::parse(&p));
                Some(ColumnRow {
                    table,
                    column,
                    raw,
                    kind,
                    pinned,
                })
            })
            .collect())
    }

    /// Event tables (by `friendlyName` and the `tapline=event` label) and every name taken.
    pub(super) async fn read_catalog(
        &self,
    ) -> Result<(Catalog, HashMap<String, String>), WarehouseError> {
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

    /// Event tables an older loaded version of `uri` (any load but `load_id`) wrote to.
    pub(super) async fn older_version_tables(
        &self,
        uri: &str,
        load_id: i64,
    ) -> Result<Vec<String>, WarehouseError> {
        let (_, rows) = self
            .api
            .query(
                &self.dataset,
                "SELECT DISTINCT t.table_name FROM _tapline_load_tables AS t \
                 JOIN _tapline_loads AS l ON l.load_id = t.load_id \
                 WHERE l.uri = @uri AND l.status = 'loaded' AND l.load_id <> @load_id",
                &[
                    ("uri", Param::Str(uri.to_string())),
                    ("load_id", Param::Int(load_id)),
                ],
            )
            .await
            .map_err(op("find older versions"))?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect())
    }

    /// Uploads the rejects of the load `load_id` of `uri` into a staging table; returns its
    /// name and the file it was staged from.
    pub(super) async fn stage_rejects(
        &self,
        key: &str,
        load_id: i64,
        uri: &str,
        rejects: &[Reject],
    ) -> Result<(String, tempfile::NamedTempFile), WarehouseError> {
        let file = tempfile::NamedTempFile::new().map_err(io_err("stage rejects"))?;
        let mut out = BufWriter::new(file);
        for r in rejects {
            let line = json!({
                "load_id": load_id,
                "uri": uri,
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
            .find(|t| t.name == "_tapline_rejects")
            .map(|t| t.fields)
            .unwrap_or_default();
        let name = self
            .stage_file(key, "rejects", fields, file.path().to_path_buf())
            .await?;
        Ok((name, file))
    }
}

/// The `written_us` of a state value written now: the latest value of a key wins.
pub(super) fn state_written_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The statement appending one state value to `_tapline_state_log`, its values given as
/// parameter names: by `put_state`, and by a load's commit script in its transaction.
pub(super) fn state_insert_sql(key: &str, value: &str, now: &str, written_us: &str) -> String {
    format!(
        "INSERT INTO _tapline_state_log (key, value, updated_at, written_us) \
         VALUES ({key}, {value}, {now}, {written_us})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_tables_parse_and_the_ledger_has_its_columns() {
        let tables = ledger_tables();
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "_tapline_loads",
                "_tapline_load_tables",
                "_tapline_rejects",
                "_tapline_tables",
                STATE_LOG,
                "_tapline_columns"
            ]
        );
        let loads: Vec<&str> = tables[0]
            .fields
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(loads, crate::warehouse::LEDGER_COLUMNS);
        assert_eq!(
            tables[0].fields[0],
            field("load_id", "INT64", true),
            "fields in the form field() writes"
        );
    }
}
