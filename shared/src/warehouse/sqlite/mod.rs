//! The embedded warehouse: one SQLite file, for a laptop, the demo and small teams.
//!
//! A load is one `BEGIN IMMEDIATE` transaction: the ledger is checked inside it, so two
//! processes loading the same object serialise on SQLite's write lock and the second sees the
//! first's ledger row. Rows are appended after a savepoint so that a quarantined file rolls back
//! its rows (and any tables or columns it created) but keeps its ledger row and rejects.
//!
//! Files: `schema.sql` (the `_tapline_*` tables), `load.rs` (one load's transaction),
//! `typed_views.rs` (the `bi_*` views' casts), `typed_profile_views.rs` (the typed profile views), `retype.rs` (kinds read again off the values).

mod borrowed_insert;
mod load;
mod retype;
mod typed_profile_views;
mod typed_views;
mod writeback;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Mutex;

use self::load::SqliteLoad;
pub use self::retype::KindChange;
use super::{
    Begin, Checkpoints, ColumnMisfit, ColumnType, FixedTable, FixedTables, LedgerVersion,
    LoadLedger, LoadRecord, LoadStatus, QueryResult, SourceObject, SqlQuery, Warehouse,
    WarehouseError, ledger_column_list,
};
use crate::time::now_utc;
use crate::warehouse::column_kinds::ColumnKind;
use crate::warehouse::column_types::ColumnTypes;

/// SQLite's default `SQLITE_MAX_COLUMN` is 2000 per table; four go to lineage.
const MAX_DATA_COLUMNS: usize = 2000 - 4;

/// The `_tapline_*` tables, each created where missing.
const SCHEMA: &str = include_str!("schema.sql");

/// The SQLite warehouse. One connection, shared: SQLite has one writer at a time anyway.
pub struct SqliteWarehouse {
    path: PathBuf,
    journal: Journal,
    conn: Arc<Mutex<Connection>>,
    /// Column types to pin at each load's commit (`None`: keep the stored pins).
    column_types: Option<Arc<ColumnTypes>>,
}

/// SQLite's journal mode: the trade between load speed and readers during a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Journal {
    /// Rollback journal (the default): appended pages are written once, so bulk loads run
    /// markedly faster than with WAL; readers wait while a large load spills and commits.
    #[default]
    Rollback,
    /// Write-ahead log: readers (a BI tool) never wait for a load, at the price of writing
    /// every page twice.
    Wal,
}

impl Journal {
    /// Parses the `journal=` URL parameter.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "rollback" | "delete" => Some(Journal::Rollback),
            "wal" => Some(Journal::Wal),
            _ => None,
        }
    }

    fn pragma(self) -> &'static str {
        match self {
            Journal::Rollback => "DELETE",
            Journal::Wal => "WAL",
        }
    }
}

fn op(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> WarehouseError {
    move |e| {
        let retryable = matches!(
            e.sqlite_error_code(),
            Some(
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::SystemIoFailure
            )
        );
        WarehouseError::Operation {
            operation,
            retryable,
            source: Box::new(e),
        }
    }
}

impl SqliteWarehouse {
    /// Opens (creating if needed) the SQLite file at `path` and its `_tapline_*` tables.
    pub async fn open(path: impl AsRef<Path>, journal: Journal) -> Result<Self, WarehouseError> {
        let path = path.as_ref().to_path_buf();
        let for_task = path.clone();
        let conn = tokio::task::spawn_blocking(move || open_connection(&for_task, journal))
            .await
            .map_err(|e| WarehouseError::Open {
                target: path.display().to_string(),
                source: Box::new(e),
            })??;
        Ok(Self {
            path,
            journal,
            conn: Arc::new(Mutex::new(conn)),
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

    async fn with_conn<T, F>(&self, f: F) -> Result<T, WarehouseError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, WarehouseError> + Send + 'static,
    {
        let mut guard = self.conn.clone().lock_owned().await;
        run_blocking(move || f(&mut guard)).await
    }
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WarehouseError> + Send + 'static,
) -> Result<T, WarehouseError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| WarehouseError::Operation {
            operation: "task",
            retryable: false,
            source: Box::new(e),
        })?
}

fn open_connection(path: &Path, journal: Journal) -> Result<Connection, WarehouseError> {
    let open_err = |e: BoxedErr| WarehouseError::Open {
        target: path.display().to_string(),
        source: e,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| open_err(Box::new(e)))?;
    }
    let conn = Connection::open(path).map_err(|e| open_err(Box::new(e)))?;
    // The busy timeout makes concurrent loaders wait, not fail. 16 KiB pages (new files only)
    // suit wide event rows and cut the per-page cost of bulk appends. NORMAL sync never
    // corrupts the file; in WAL mode it may lose the last commit on power loss.
    conn.busy_timeout(std::time::Duration::from_secs(60))
        .map_err(|e| open_err(Box::new(e)))?;
    conn.execute_batch(&format!(
        "PRAGMA page_size = 16384; PRAGMA journal_mode = {}; PRAGMA synchronous = NORMAL; \
         PRAGMA cache_size = -16000;",
        journal.pragma()
    ))
    .map_err(|e| open_err(Box::new(e)))?;
    conn.execute_batch(SCHEMA)
        .map_err(|e| open_err(Box::new(e)))?;
    add_missing_columns(&conn).map_err(|e| open_err(Box::new(e)))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

type BoxedErr = Box<dyn std::error::Error + Send + Sync>;

/// Columns `_tapline_*` tables gained after files were first written, as (table, column, the
/// statements that add it to an older file): `kind` (existing columns become text: their rows
/// were never classified, and text hides no value in the typed views where a narrower kind could
/// NULL some), `pinned` (no pins yet) and the ledger's `object_created_at` (older loads: unknown).
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    (
        "_tapline_columns",
        "kind",
        "ALTER TABLE _tapline_columns ADD COLUMN kind TEXT;
         UPDATE _tapline_columns SET kind = 'text';",
    ),
    (
        "_tapline_columns",
        "pinned",
        "ALTER TABLE _tapline_columns ADD COLUMN pinned TEXT;",
    ),
    (
        "_tapline_loads",
        "object_created_at",
        "ALTER TABLE _tapline_loads ADD COLUMN object_created_at TEXT;",
    ),
];

/// Adds to an older file the [`ADDED_COLUMNS`] it lacks, under the write lock so two
/// processes opening it add each once.
fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    let missing = |conn: &Connection| -> rusqlite::Result<Vec<&'static str>> {
        let present: Vec<(String, String)> = conn
            .prepare(
                "SELECT m.name, c.name FROM sqlite_master m, pragma_table_info(m.name) c
                 WHERE m.type = 'table' AND m.name IN ('_tapline_columns', '_tapline_loads')",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ADDED_COLUMNS
            .iter()
            .filter(|(table, name, _)| !present.iter().any(|(t, c)| t == table && c == name))
            .map(|(_, _, ddl)| *ddl)
            .collect())
    };
    if missing(conn)?.is_empty() {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let added = missing(conn).and_then(|ddl| {
        for statements in ddl {
            conn.execute_batch(statements)?;
        }
        conn.execute_batch("COMMIT")
    });
    if added.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    added
}

impl Warehouse for SqliteWarehouse {
    fn describe(&self) -> String {
        match self.journal {
            Journal::Rollback => format!("sqlite://{}", self.path.display()),
            Journal::Wal => format!("sqlite://{}?journal=wal", self.path.display()),
        }
    }
}

#[async_trait]
impl LoadLedger for SqliteWarehouse {
    fn max_columns(&self) -> usize {
        MAX_DATA_COLUMNS
    }

    async fn begin_load(
        &self,
        object: &SourceObject,
        retry_quarantined: bool,
    ) -> Result<Begin, WarehouseError> {
        let guard = self.conn.clone().lock_owned().await;
        SqliteLoad::begin(guard, object, retry_quarantined, self.column_types.clone()).await
    }

    async fn record_failure(
        &self,
        object: &SourceObject,
        error: &str,
    ) -> Result<(), WarehouseError> {
        let object = object.clone();
        let error = error.to_string();
        self.with_conn(move |conn| {
            let now = now_utc();
            conn.execute(
                "INSERT INTO _tapline_loads (uri, version, status, bytes, error, started_at, finished_at)
                 VALUES (?1, ?2, 'failed', ?3, ?4, ?5, ?5)
                 ON CONFLICT (uri, version) DO UPDATE SET
                   status = 'failed', error = excluded.error, finished_at = excluded.finished_at
                 WHERE status NOT IN ('loaded', 'replaced')",
                params![object.uri, object.version, object.bytes.map(|b| b as i64), error, now],
            )
            .map_err(op("record failure"))?;
            Ok(())
        })
        .await
    }

    async fn recent_loads(&self, limit: usize) -> Result<Vec<LoadRecord>, WarehouseError> {
        self.with_conn(move |conn| {
            let sql = format!(
                "SELECT {} FROM _tapline_loads
                 ORDER BY COALESCE(finished_at, started_at) DESC, load_id DESC LIMIT ?1",
                ledger_columns()
            );
            let mut stmt = conn.prepare(&sql).map_err(op("read ledger"))?;
            let rows = stmt
                .query_map([limit as i64], ledger_row)
                .map_err(op("read ledger"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(op("read ledger"))
        })
        .await
    }

    async fn commits_since(
        &self,
        since: &str,
        limit: usize,
    ) -> Result<Vec<LoadRecord>, WarehouseError> {
        let since = since.to_string();
        self.with_conn(move |conn| {
            // Timestamps are fixed-width UTC text here: text order is time order.
            let sql = format!(
                "SELECT {} FROM _tapline_loads
                 WHERE status IN ('loaded', 'replaced')
                   AND finished_at >= ?1
                 ORDER BY finished_at DESC, load_id DESC LIMIT ?2",
                ledger_columns()
            );
            let mut stmt = conn.prepare(&sql).map_err(op("read ledger"))?;
            let rows = stmt
                .query_map(params![since, limit as i64], ledger_row)
                .map_err(op("read ledger"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(op("read ledger"))
        })
        .await
    }

    async fn ledger_versions(
        &self,
        uri_prefix: &str,
    ) -> Result<Vec<LedgerVersion>, WarehouseError> {
        let prefix = uri_prefix.to_string();
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT uri, version, status FROM _tapline_loads
                     WHERE substr(uri, 1, length(?1)) = ?1",
                )
                .map_err(op("read ledger"))?;
            let rows = stmt
                .query_map([prefix], |r| {
                    let status: String = r.get(2)?;
                    Ok(LedgerVersion {
                        uri: r.get(0)?,
                        version: r.get(1)?,
                        // Anything unexpected is "not done": the load's own check decides.
                        status: LoadStatus::parse(&status).unwrap_or(LoadStatus::Failed),
                    })
                })
                .map_err(op("read ledger"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(op("read ledger"))
        })
        .await
    }
}

/// Writes one `_tapline_state` value: by `put_state`, and by a load's commit in its
/// transaction.
fn write_state(conn: &Connection, key: &str, value: &str) -> Result<(), WarehouseError> {
    conn.execute(
        "INSERT INTO _tapline_state (key, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        params![key, value, now_utc()],
    )
    .map_err(op("write state"))?;
    Ok(())
}

#[async_trait]
impl Checkpoints for SqliteWarehouse {
    async fn get_state(&self, key: &str) -> Result<Option<String>, WarehouseError> {
        let key = key.to_string();
        self.with_conn(move |conn| {
            conn.query_row(
                "SELECT value FROM _tapline_state WHERE key = ?1",
                [key],
                |r| r.get(0),
            )
            .optional()
            .map_err(op("read state"))
        })
        .await
    }

    async fn put_state(&self, key: &str, value: &str) -> Result<(), WarehouseError> {
        let (key, value) = (key.to_string(), value.to_string());
        self.with_conn(move |conn| write_state(conn, &key, &value))
            .await
    }
}

#[async_trait]
impl FixedTables for SqliteWarehouse {
    async fn replace_rows(
        &self,
        table: &FixedTable,
        rows: &[Vec<Option<String>>],
    ) -> Result<u64, WarehouseError> {
        let (create, upsert) =
            table.replace_statements(rows, ident, "INTEGER", |i, kind| match kind {
                ColumnType::Text => format!("?{}", i + 1),
                ColumnType::Integer => format!("CAST(?{} AS INTEGER)", i + 1),
            })?;
        let rows = rows.to_vec();
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(op("replace rows"))?;
            tx.execute_batch(&create).map_err(op("create table"))?;
            let mut stmt = tx.prepare(&upsert).map_err(op("replace rows"))?;
            for row in &rows {
                stmt.execute(rusqlite::params_from_iter(row.iter()))
                    .map_err(op("replace rows"))?;
            }
            drop(stmt);
            tx.commit().map_err(op("commit"))?;
            Ok(rows.len() as u64)
        })
        .await
    }
}

/// A connection of its own to the file at `path`, opened read-only: SQLite counts BEGIN,
/// COMMIT, ATTACH and DETACH as read-only statements, and ATTACH would create a file; on this
/// connection nothing can be written, created or left open for the next load.
fn read_only_connection(path: &Path) -> Result<Connection, WarehouseError> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(op("query"))?;
    conn.busy_timeout(std::time::Duration::from_secs(60))
        .map_err(op("query"))?;
    Ok(conn)
}

/// Per pinned column of `conn`'s event tables, the non-NULL raw values the typed views' cast
/// makes NULL (see [`SqlQuery::column_misfits`]); text pins fit everything and are not read.
fn column_misfits(conn: &Connection) -> Result<Vec<ColumnMisfit>, WarehouseError> {
    let read = op("count misfits");
    let pinned: Vec<(String, String, String)> = conn
        .prepare(
            "SELECT c.table_name, c.column_name, c.pinned FROM _tapline_columns c
             JOIN _tapline_tables t ON t.table_name = c.table_name
             WHERE c.pinned IS NOT NULL AND c.pinned <> 'text'
             ORDER BY c.table_name, c.column_name",
        )
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(read)?;
    let mut misfits = Vec::new();
    for (table, column, pinned) in pinned {
        let kind = ColumnKind::parse(&pinned);
        let quoted = ident(&column);
        let values: i64 = conn
            .query_row(
                &format!(
                    "SELECT count(*) FROM {} WHERE {quoted} IS NOT NULL AND ({}) IS NULL",
                    ident(&table),
                    typed_views::cast(&quoted, kind)
                ),
                [],
                |r| r.get(0),
            )
            .map_err(op("count misfits"))?;
        if values > 0 {
            misfits.push(ColumnMisfit {
                table,
                column,
                kind,
                values: values as u64,
            });
        }
    }
    Ok(misfits)
}

#[async_trait]
impl SqlQuery for SqliteWarehouse {
    async fn column_misfits(&self) -> Result<Vec<ColumnMisfit>, WarehouseError> {
        let path = self.path.clone();
        run_blocking(move || column_misfits(&read_only_connection(&path)?)).await
    }

    async fn query(&self, sql: &str) -> Result<QueryResult, WarehouseError> {
        let sql = sql.to_string();
        let path = self.path.clone();
        run_blocking(move || {
            let conn = read_only_connection(&path)?;
            // `prepare` refuses a second statement (`COMMIT; CREATE …`) before anything runs.
            let mut stmt = conn.prepare(&sql).map_err(|e| match e {
                rusqlite::Error::MultipleStatement => WarehouseError::Operation {
                    operation: "query",
                    retryable: false,
                    source: "only one SQL statement is allowed per query".into(),
                },
                e => op("query")(e),
            })?;
            if !stmt.readonly() {
                return Err(WarehouseError::Operation {
                    operation: "query",
                    retryable: false,
                    source: "only read-only queries are allowed".into(),
                });
            }
            let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
            let n = columns.len();
            let mut rows = stmt.query([]).map_err(op("query"))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(op("query"))? {
                let mut values = Vec::with_capacity(n);
                for i in 0..n {
                    values.push(match row.get_ref(i).map_err(op("query"))? {
                        ValueRef::Null => None,
                        ValueRef::Integer(v) => Some(v.to_string()),
                        ValueRef::Real(v) => Some(v.to_string()),
                        ValueRef::Text(t) | ValueRef::Blob(t) => {
                            Some(String::from_utf8_lossy(t).into_owned())
                        }
                    });
                }
                out.push(values);
            }
            Ok(QueryResult { columns, rows: out })
        })
        .await
    }
}

/// The ledger columns, read as stored: SQLite keeps timestamps as ISO-8601 text.
fn ledger_columns() -> String {
    ledger_column_list(str::to_string)
}

fn ledger_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<LoadRecord> {
    let status: String = row.get(3)?;
    Ok(LoadRecord {
        load_id: row.get(0)?,
        uri: row.get(1)?,
        version: row.get(2)?,
        status: LoadStatus::parse(&status).unwrap_or(LoadStatus::Failed),
        bytes: row.get::<_, Option<i64>>(4)?.map(|b| b as u64),
        rows_loaded: row.get::<_, i64>(5)? as u64,
        rows_rejected: row.get::<_, i64>(6)? as u64,
        error: row.get(7)?,
        attempts: row.get::<_, i64>(8)? as u32,
        started_at: row.get(9)?,
        finished_at: row.get(10)?,
        object_created_at: row.get(11)?,
    })
}

/// Quotes an identifier for SQLite.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
