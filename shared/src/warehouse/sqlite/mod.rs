//! The embedded warehouse: one SQLite file, for a laptop, the demo and small teams.
//!
//! A load is one `BEGIN IMMEDIATE` transaction: the ledger is checked inside it, so two
//! processes loading the same object serialise on SQLite's write lock and the second sees the
//! first's ledger row. Rows are appended after a savepoint so that a quarantined file rolls back
//! its rows (and any tables or columns it created) but keeps its ledger row and rejects.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::catalog::Catalog;
use super::{
    Begin, COL_LOAD_ID, COL_LOADED_AT, COL_SOURCE_LINE, COL_SOURCE_URI, Checkpoints, ColumnType,
    Committed, FixedTable, FixedTables, LINEAGE_COLUMNS, LedgerVersion, LoadLedger, LoadRecord,
    LoadStatus, LoadTransaction, Outcome, QueryResult, SourceObject, SqlQuery, Warehouse,
    WarehouseError, ledger_column_list, stored_rejects,
};
use crate::export::{EVENT_NAME_COLUMN, Reject, RowBatch, TS_COLUMN};
use crate::time::now_utc;

/// SQLite's default `SQLITE_MAX_COLUMN` is 2000 per table; four go to lineage.
const MAX_DATA_COLUMNS: usize = 2000 - 4;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS _tapline_loads (
    load_id       INTEGER PRIMARY KEY,
    uri           TEXT NOT NULL,
    version       TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('loading','loaded','quarantined','failed','replaced')),
    bytes         INTEGER,
    rows_loaded   INTEGER NOT NULL DEFAULT 0,
    rows_rejected INTEGER NOT NULL DEFAULT 0,
    error         TEXT,
    attempts      INTEGER NOT NULL DEFAULT 1,
    replaced_by   INTEGER,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    UNIQUE (uri, version)
);
CREATE INDEX IF NOT EXISTS _tapline_loads_by_uri ON _tapline_loads (uri, status);
CREATE TABLE IF NOT EXISTS _tapline_load_tables (
    load_id     INTEGER NOT NULL,
    table_name  TEXT NOT NULL,
    rows        INTEGER NOT NULL,
    first_rowid INTEGER NOT NULL,
    last_rowid  INTEGER NOT NULL,
    PRIMARY KEY (load_id, table_name)
);
CREATE TABLE IF NOT EXISTS _tapline_rejects (
    load_id     INTEGER NOT NULL,
    uri         TEXT NOT NULL,
    line        INTEGER,
    column_name TEXT,
    reason      TEXT NOT NULL,
    raw_line    TEXT
);
CREATE INDEX IF NOT EXISTS _tapline_rejects_by_load ON _tapline_rejects (load_id);
CREATE TABLE IF NOT EXISTS _tapline_tables (
    table_name      TEXT PRIMARY KEY,
    event_name      TEXT NOT NULL UNIQUE,
    created_by_load INTEGER NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS _tapline_state (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS _tapline_columns (
    table_name    TEXT NOT NULL,
    column_name   TEXT NOT NULL,
    raw_name      TEXT NOT NULL,
    added_by_load INTEGER NOT NULL,
    added_at      TEXT NOT NULL,
    PRIMARY KEY (table_name, column_name),
    UNIQUE (table_name, raw_name)
);
"#;

/// The SQLite warehouse. One connection, shared: SQLite has one writer at a time anyway.
pub struct SqliteWarehouse {
    path: PathBuf,
    journal: Journal,
    conn: Arc<Mutex<Connection>>,
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
        })
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
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

type BoxedErr = Box<dyn std::error::Error + Send + Sync>;

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
        let mut guard = self.conn.clone().lock_owned().await;
        let object = object.clone();
        run_blocking(move || {
            let conn = &mut *guard;
            if !conn.is_autocommit() {
                // A previous load's task died mid-transaction: start clean.
                conn.execute_batch("ROLLBACK").map_err(op("rollback"))?;
            }
            conn.execute_batch("BEGIN IMMEDIATE").map_err(op("begin"))?;
            let started = match start_ledger_row(conn, &object, retry_quarantined) {
                Ok(Ok(started)) => started,
                Ok(Err(done)) => {
                    conn.execute_batch("ROLLBACK").map_err(op("rollback"))?;
                    return Ok(Begin::Done(done));
                }
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(e);
                }
            };
            let catalog = match read_catalog(conn).and_then(|c| {
                conn.execute_batch("SAVEPOINT rows")
                    .map_err(op("savepoint"))
                    .map(|_| c)
            }) {
                Ok(c) => c,
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(e);
                }
            };
            let state = LoadState {
                object,
                load_id: started.0,
                loaded_at: started.1,
                catalog,
                insert_sql: HashMap::new(),
                appended: HashMap::new(),
                view_stale: false,
            };
            Ok(Begin::Started(Box::new(SqliteLoad {
                load_id: started.0,
                inner: Some((guard, state)),
            })))
        })
        .await
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
        self.with_conn(move |conn| {
            conn.execute(
                "INSERT INTO _tapline_state (key, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![key, value, now_utc()],
            )
            .map_err(op("write state"))?;
            Ok(())
        })
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

#[async_trait]
impl SqlQuery for SqliteWarehouse {
    async fn query(&self, sql: &str) -> Result<QueryResult, WarehouseError> {
        let sql = sql.to_string();
        let path = self.path.clone();
        run_blocking(move || {
            // A connection of its own, opened read-only: SQLite counts BEGIN, COMMIT, ATTACH
            // and DETACH as read-only statements, and ATTACH would create a file; on this
            // connection nothing can be written, created or left open for the next load.
            let conn = Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(op("query"))?;
            conn.busy_timeout(std::time::Duration::from_secs(60))
                .map_err(op("query"))?;
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
    })
}

/// Inside the open transaction: the ledger row for this attempt, `(load_id, started_at)`, or
/// the record saying it is already done.
fn start_ledger_row(
    conn: &Connection,
    object: &SourceObject,
    retry_quarantined: bool,
) -> Result<Result<(i64, String), LoadRecord>, WarehouseError> {
    let existing = conn
        .query_row(
            &format!(
                "SELECT {} FROM _tapline_loads WHERE uri = ?1 AND version = ?2",
                ledger_columns()
            ),
            params![object.uri, object.version],
            ledger_row,
        )
        .optional()
        .map_err(op("read ledger"))?;
    let now = now_utc();
    let bytes = object.bytes.map(|b| b as i64);
    match existing {
        Some(done) if done.is_done(retry_quarantined) => Ok(Err(done)),
        Some(previous) => {
            conn.execute(
                "UPDATE _tapline_loads SET status = 'loading', attempts = attempts + 1,
                   started_at = ?2, finished_at = NULL, error = NULL, bytes = ?3
                 WHERE load_id = ?1",
                params![previous.load_id, now, bytes],
            )
            .map_err(op("write ledger"))?;
            Ok(Ok((previous.load_id, now)))
        }
        None => {
            conn.execute(
                "INSERT INTO _tapline_loads (uri, version, status, bytes, started_at)
                 VALUES (?1, ?2, 'loading', ?3, ?4)",
                params![object.uri, object.version, bytes, now],
            )
            .map_err(op("write ledger"))?;
            Ok(Ok((conn.last_insert_rowid(), now)))
        }
    }
}

/// Reads the catalog (event tables and their columns) inside the open transaction.
fn read_catalog(conn: &Connection) -> Result<Catalog, WarehouseError> {
    let read = op("read catalog");
    let taken: Vec<String> = conn
        .prepare_cached("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(read)?;
    let mut catalog = Catalog::new(taken);
    let tables: Vec<(String, String)> = conn
        .prepare_cached("SELECT event_name, table_name FROM _tapline_tables")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(op("read catalog"))?;
    for (event, table) in tables {
        catalog.add_table(event, table);
    }
    let columns: Vec<(String, String, String)> = conn
        .prepare_cached("SELECT table_name, raw_name, column_name FROM _tapline_columns")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(op("read catalog"))?;
    for (table, raw, column) in columns {
        catalog.add_column(&table, raw, column);
    }
    Ok(catalog)
}

/// Quotes an identifier for SQLite.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An open load. Holds the connection (and so SQLite's write lock) until commit or drop.
struct SqliteLoad {
    load_id: i64,
    /// The connection and the load's state; away on a blocking thread during each call.
    inner: Option<(OwnedMutexGuard<Connection>, LoadState)>,
}

/// What a load appended to one table. SQLite gives appended rows consecutive rowids (one
/// writer, max rowid + 1), so the range finds them again without an index on `_load_id`,
/// which would cost a quarter of the load time.
#[derive(Debug, Clone, Copy)]
struct Appended {
    rows: u64,
    first_rowid: i64,
    last_rowid: i64,
}

impl Drop for SqliteLoad {
    fn drop(&mut self) {
        if let Some((conn, _)) = self.inner.as_mut()
            && !conn.is_autocommit()
        {
            // Not committed: nothing of this load may remain.
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
}

impl SqliteLoad {
    /// Runs `f` on a blocking thread with the connection and the load's state.
    async fn blocking<T, F>(&mut self, f: F) -> Result<T, WarehouseError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &mut LoadState) -> Result<T, WarehouseError> + Send + 'static,
    {
        let (mut conn, mut state) = self.inner.take().ok_or_else(|| WarehouseError::Operation {
            operation: "load",
            retryable: false,
            source: "the load's connection was lost after an earlier failure".into(),
        })?;
        let (conn, state, result) = tokio::task::spawn_blocking(move || {
            let result = f(&mut conn, &mut state);
            (conn, state, result)
        })
        .await
        .map_err(|e| WarehouseError::Operation {
            operation: "load",
            retryable: false,
            source: Box::new(e),
        })?;
        self.inner = Some((conn, state));
        result
    }
}

/// The part of a load that travels to the blocking thread.
struct LoadState {
    object: SourceObject,
    load_id: i64,
    loaded_at: String,
    catalog: Catalog,
    /// Insert statements by (event, batch columns), so a file's batches share one.
    insert_sql: HashMap<(String, Vec<String>), String>,
    appended: HashMap<String, Appended>,
    /// A table or a view column was added: `all_events` is rebuilt at commit.
    view_stale: bool,
}

#[async_trait]
impl LoadTransaction for SqliteLoad {
    fn load_id(&self) -> i64 {
        self.load_id
    }

    async fn append(&mut self, batch: RowBatch) -> Result<(), WarehouseError> {
        self.blocking(move |conn, state| state.append(conn, &batch))
            .await
    }

    async fn commit(
        mut self: Box<Self>,
        outcome: Outcome,
        rejects: Vec<Reject>,
    ) -> Result<Committed, WarehouseError> {
        // The version's lock is held from `begin_load`: no other loader can commit it.
        self.blocking(move |conn, state| state.commit(conn, outcome, rejects))
            .await
            .map(Committed::Ours)
    }
}

impl LoadState {
    fn append(&mut self, conn: &Connection, batch: &RowBatch) -> Result<(), WarehouseError> {
        let columns = batch.schema().columns();
        let mut rows = batch.rows().peekable();
        while let Some(first) = rows.peek().copied() {
            let event = first.event_name().to_string();
            let sql = self.insert_sql(conn, &event, columns)?;
            let table = self
                .catalog
                .table(&event)
                .expect("planned by insert_sql")
                .name
                .clone();
            let mut stmt = conn.prepare_cached(&sql).map_err(op("prepare insert"))?;
            let n = columns.len();
            stmt.raw_bind_parameter(n + 1, &self.object.uri)
                .map_err(op("bind"))?;
            stmt.raw_bind_parameter(n + 3, self.load_id)
                .map_err(op("bind"))?;
            stmt.raw_bind_parameter(n + 4, &self.loaded_at)
                .map_err(op("bind"))?;
            let mut count = 0u64;
            while let Some(row) = rows.next_if(|r| r.event_name() == event) {
                for i in 0..n {
                    stmt.raw_bind_parameter(i + 1, row.value(i))
                        .map_err(op("bind"))?;
                }
                stmt.raw_bind_parameter(n + 2, row.line as i64)
                    .map_err(op("bind"))?;
                stmt.raw_execute().map_err(op("insert"))?;
                count += 1;
            }
            let last = conn.last_insert_rowid();
            let first = last - count as i64 + 1;
            self.appended
                .entry(table)
                .and_modify(|a| {
                    a.rows += count;
                    a.first_rowid = a.first_rowid.min(first);
                    a.last_rowid = a.last_rowid.max(last);
                })
                .or_insert(Appended {
                    rows: count,
                    first_rowid: first,
                    last_rowid: last,
                });
        }
        Ok(())
    }

    /// The insert statement for `columns` into the table of `event`, creating the table and
    /// adding columns first when needed.
    fn insert_sql(
        &mut self,
        conn: &Connection,
        event: &str,
        columns: &[String],
    ) -> Result<String, WarehouseError> {
        let key = (event.to_string(), columns.to_vec());
        if let Some(sql) = self.insert_sql.get(&key) {
            return Ok(sql.clone());
        }
        let plan = self.catalog.plan(event, columns, MAX_DATA_COLUMNS)?;
        if plan.create {
            let mut defs: Vec<String> = plan
                .added
                .iter()
                .map(|(raw, column)| {
                    let required = raw == TS_COLUMN || raw == EVENT_NAME_COLUMN;
                    format!(
                        "{} TEXT{}",
                        ident(column),
                        if required { " NOT NULL" } else { "" }
                    )
                })
                .collect();
            defs.push(format!("{} TEXT NOT NULL", ident(COL_SOURCE_URI)));
            defs.push(format!("{} INTEGER NOT NULL", ident(COL_SOURCE_LINE)));
            defs.push(format!("{} INTEGER NOT NULL", ident(COL_LOAD_ID)));
            defs.push(format!("{} TEXT NOT NULL", ident(COL_LOADED_AT)));
            conn.execute_batch(&format!(
                "CREATE TABLE {} ({})",
                ident(&plan.table),
                defs.join(", ")
            ))
            .map_err(op("create table"))?;
            conn.execute(
                "INSERT INTO _tapline_tables (table_name, event_name, created_by_load, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![plan.table, event, self.load_id, self.loaded_at],
            )
            .map_err(op("record table"))?;
        } else {
            for (_, column) in &plan.added {
                conn.execute_batch(&format!(
                    "ALTER TABLE {} ADD COLUMN {} TEXT",
                    ident(&plan.table),
                    ident(column)
                ))
                .map_err(op("add column"))?;
            }
        }
        for (raw, column) in &plan.added {
            conn.execute(
                "INSERT INTO _tapline_columns (table_name, column_name, raw_name, added_by_load, added_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![plan.table, column, raw, self.load_id, self.loaded_at],
            )
            .map_err(op("record column"))?;
        }
        self.view_stale |= plan.view_stale;
        let table = self.catalog.table(event).expect("planned above");
        let names: Vec<String> = columns
            .iter()
            .map(|raw| ident(&table.columns[raw]))
            .chain(LINEAGE_COLUMNS.iter().map(|c| ident(c)))
            .collect();
        let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            ident(&table.name),
            names.join(", "),
            placeholders.join(", ")
        );
        self.insert_sql.insert(key, sql.clone());
        Ok(sql)
    }

    fn commit(
        &mut self,
        conn: &Connection,
        outcome: Outcome,
        rejects: Vec<Reject>,
    ) -> Result<LoadRecord, WarehouseError> {
        let now = now_utc();
        let (status, error, bytes, rows, rejected) = match outcome {
            Outcome::Loaded {
                bytes,
                rows,
                rejected,
            } => {
                self.replace_older_versions(conn)?;
                conn.execute(
                    "DELETE FROM _tapline_load_tables WHERE load_id = ?1",
                    [self.load_id],
                )
                .map_err(op("write ledger"))?;
                for (table, a) in &self.appended {
                    conn.execute(
                        "INSERT INTO _tapline_load_tables (load_id, table_name, rows, first_rowid, last_rowid)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![self.load_id, table, a.rows as i64, a.first_rowid, a.last_rowid],
                    )
                    .map_err(op("write ledger"))?;
                }
                if self.view_stale {
                    rebuild_all_events(conn, &self.catalog)?;
                }
                conn.execute_batch("RELEASE rows").map_err(op("release"))?;
                (LoadStatus::Loaded, None, bytes, rows, rejected)
            }
            Outcome::Quarantined {
                reason,
                bytes,
                rows: _,
                rejected,
            } => {
                conn.execute_batch("ROLLBACK TO rows; RELEASE rows")
                    .map_err(op("rollback rows"))?;
                (LoadStatus::Quarantined, Some(reason), bytes, 0, rejected)
            }
        };
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO _tapline_rejects (load_id, uri, line, column_name, reason, raw_line)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(op("write rejects"))?;
        for r in stored_rejects(&rejects) {
            insert
                .execute(params![
                    self.load_id,
                    self.object.uri,
                    r.line as i64,
                    r.column,
                    r.reason,
                    r.raw
                ])
                .map_err(op("write rejects"))?;
        }
        drop(insert);
        conn.execute(
            "UPDATE _tapline_loads SET status = ?2, error = ?3, bytes = ?4, rows_loaded = ?5,
               rows_rejected = ?6, finished_at = ?7 WHERE load_id = ?1",
            params![
                self.load_id,
                status.as_str(),
                error,
                bytes as i64,
                rows as i64,
                rejected as i64,
                now
            ],
        )
        .map_err(op("write ledger"))?;
        let record = conn
            .query_row(
                &format!(
                    "SELECT {} FROM _tapline_loads WHERE load_id = ?1",
                    ledger_columns()
                ),
                [self.load_id],
                ledger_row,
            )
            .map_err(op("read ledger"))?;
        conn.execute_batch("COMMIT").map_err(op("commit"))?;
        Ok(record)
    }

    /// A new version of a uri replaces the rows of every older loaded version.
    fn replace_older_versions(&self, conn: &Connection) -> Result<(), WarehouseError> {
        let mut older = conn
            .prepare_cached(
                "SELECT l.load_id, t.table_name, t.rows, t.first_rowid, t.last_rowid
                 FROM _tapline_loads l JOIN _tapline_load_tables t ON t.load_id = l.load_id
                 WHERE l.uri = ?1 AND l.status = 'loaded' AND l.load_id <> ?2",
            )
            .map_err(op("find older versions"))?;
        let targets: Vec<(i64, String, i64, i64, i64)> = older
            .query_map(params![self.object.uri, self.load_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(op("find older versions"))?
            .collect::<Result<_, _>>()
            .map_err(op("find older versions"))?;
        for (load_id, table, rows, first, last) in &targets {
            let deleted = conn
                .execute(
                    &format!(
                        "DELETE FROM {} WHERE rowid BETWEEN ?2 AND ?3 AND {} = ?1",
                        ident(table),
                        ident(COL_LOAD_ID)
                    ),
                    params![load_id, first, last],
                )
                .map_err(op("replace older version"))?;
            if deleted as i64 != *rows {
                // A VACUUM renumbered rowids: find the rest the slow way.
                conn.execute(
                    &format!(
                        "DELETE FROM {} WHERE {} = ?1",
                        ident(table),
                        ident(COL_LOAD_ID)
                    ),
                    [load_id],
                )
                .map_err(op("replace older version"))?;
            }
        }
        conn.execute(
            "UPDATE _tapline_loads SET status = 'replaced', replaced_by = ?2
             WHERE uri = ?1 AND status = 'loaded' AND load_id <> ?2",
            params![self.object.uri, self.load_id],
        )
        .map_err(op("replace older version"))?;
        Ok(())
    }
}
/// Rebuilds the `all_events` view over every event table.
fn rebuild_all_events(conn: &Connection, catalog: &Catalog) -> Result<(), WarehouseError> {
    let body = if catalog.is_empty() {
        "SELECT NULL AS ts WHERE 0".to_string()
    } else {
        catalog.all_events_select(ident)
    };
    conn.execute_batch(&format!(
        "DROP VIEW IF EXISTS all_events;\nCREATE VIEW all_events AS\n{body};"
    ))
    .map_err(op("rebuild all_events"))
}
