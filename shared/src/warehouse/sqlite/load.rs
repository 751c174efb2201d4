//! One SQLite load: a `BEGIN IMMEDIATE` transaction holding the file's write lock, the ledger
//! row, rows inserted after a savepoint (tables created or widened as they come), and the commit
//! or quarantine that ends it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::OwnedMutexGuard;

use super::borrowed_insert::BorrowedInsert;
use super::typed_views::rebuild_typed_views;
use super::writeback::EarlyWriteback;
use super::{MAX_DATA_COLUMNS, ident, ledger_columns, ledger_row, op, run_blocking, write_state};
use crate::export::{EVENT_NAME_COLUMN, Reject, RowBatch, TS_COLUMN};
use crate::time::{now_utc, write_ts_text};
use crate::warehouse::catalog::Catalog;
use crate::warehouse::column_kinds::{ColumnKind, ColumnKindTracker};
use crate::warehouse::column_types::ColumnTypes;
use crate::warehouse::profile_views::{self, PROFILES_VIEW, ViewDialect};
use crate::warehouse::{
    Begin, COL_LOAD_ID, COL_LOADED_AT, COL_SOURCE_LINE, COL_SOURCE_URI, Committed, LINEAGE_COLUMNS,
    LoadRecord, LoadStatus, LoadTransaction, Outcome, SourceObject, StateWrite, WarehouseError,
    stored_rejects,
};

impl SqliteLoad {
    /// Opens the load of `object` on the connection `guard` holds: `BEGIN IMMEDIATE`, the
    /// ledger row in `loading`, and the savepoint rows go after. `Begin::Done` (and the
    /// transaction rolled back) when the ledger says the version needs no new attempt.
    /// `column_types`, when given, become the stored pins at commit.
    pub(super) async fn begin(
        mut guard: OwnedMutexGuard<Connection>,
        object: &SourceObject,
        retry_quarantined: bool,
        column_types: Option<Arc<ColumnTypes>>,
    ) -> Result<Begin, WarehouseError> {
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
                insert_statements: HashMap::new(),
                appended: HashMap::new(),
                view_stale: false,
                profile_views_stale: false,
                kinds: ColumnKindTracker::for_load(),
                column_types,
                typed_stale: HashSet::new(),
                state: None,
                object_created_at: None,
                writeback: conn.path().and_then(EarlyWriteback::start),
            };
            Ok(Begin::Started(Box::new(SqliteLoad {
                load_id: started.0,
                inner: Some((guard, state)),
            })))
        })
        .await
    }
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
pub(super) fn read_catalog(conn: &Connection) -> Result<Catalog, WarehouseError> {
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
    type ColumnRow = (String, String, String, Option<String>, Option<String>);
    let columns: Vec<ColumnRow> = conn
        .prepare_cached(
            "SELECT table_name, raw_name, column_name, kind, pinned FROM _tapline_columns",
        )
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect()
        })
        .map_err(op("read catalog"))?;
    for (table, raw, column, kind, pinned) in columns {
        if let Some(kind) = kind {
            catalog.set_kind(&table, &raw, ColumnKind::parse(&kind));
        }
        if let Some(pinned) = pinned {
            catalog.set_pinned(&table, &raw, ColumnKind::parse(&pinned));
        }
        catalog.add_column(&table, raw, column);
    }
    Ok(catalog)
}

/// An open load. Holds the connection (and so SQLite's write lock) until commit or drop.
pub(super) struct SqliteLoad {
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
    insert_statements: HashMap<(String, Vec<String>), String>,
    appended: HashMap<String, Appended>,
    /// A table or a view column was added: `all_events` is rebuilt at commit.
    view_stale: bool,
    /// The profile snapshot table was created or widened: the profile views are rebuilt.
    profile_views_stale: bool,
    /// The kinds of the values appended, widened into `_tapline_columns.kind` at commit.
    kinds: ColumnKindTracker,
    /// The pins this load makes the stored ones at commit (`None`: the stored pins stay).
    column_types: Option<Arc<ColumnTypes>>,
    /// Event tables whose typed view is rebuilt at commit (a column added or a kind widened).
    typed_stale: HashSet<String>,
    /// The state value the commit writes with the rows.
    state: Option<StateWrite>,
    /// When the object was created in its bucket, for the ledger row.
    object_created_at: Option<String>,
    /// Writes the appended pages back while the load runs, so that the commit's `fsync` finds
    /// little left to write (`None`: an in-memory file, or no thread could start).
    writeback: Option<EarlyWriteback>,
}

#[async_trait]
impl LoadTransaction for SqliteLoad {
    fn load_id(&self) -> i64 {
        self.load_id
    }

    fn write_state_at_commit(&mut self, state: StateWrite) {
        if let Some((_, load)) = self.inner.as_mut() {
            load.state = Some(state);
        }
    }

    fn record_object_created_at(&mut self, created_at: Option<String>) {
        if let Some((_, load)) = self.inner.as_mut() {
            load.object_created_at = created_at;
        }
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
        self.kinds.observe(batch);
        let columns = batch.schema().columns();
        let ts_index = batch.rows().next().and_then(|r| r.ts_index());
        // Every row's `ts` as text, written before the inserts so that it is bound in place
        // like the other fields: a copied text costs SQLite a malloc and a free per row.
        let mut ts_text = String::new();
        let mut ts_ends = Vec::new();
        if ts_index.is_some() {
            ts_text.reserve(batch.row_count() * 20);
            ts_ends.reserve(batch.row_count());
            let mut buf = [0u8; 20];
            for row in batch.rows() {
                ts_text.push_str(write_ts_text(row.ts_micros(), &mut buf));
                ts_ends.push(ts_text.len());
            }
        }
        let ts_of = |i: usize| &ts_text[if i == 0 { 0 } else { ts_ends[i - 1] }..ts_ends[i]];
        let mut rows = batch.rows().enumerate().peekable();
        while let Some((_, first)) = rows.peek().copied() {
            let event = first.event_name().to_string();
            let sql = self.insert_statement(conn, &event, columns)?;
            let table = self
                .catalog
                .table(&event)
                .expect("planned by insert_statement")
                .name
                .clone();
            let n = columns.len();
            let mut count = 0u64;
            let mut stmt = BorrowedInsert::prepare(conn, &sql).map_err(op("prepare insert"))?;
            stmt.bind_copied(n + 1, &self.object.uri)
                .map_err(op("bind"))?;
            stmt.bind_int(n + 3, self.load_id).map_err(op("bind"))?;
            stmt.bind_copied(n + 4, &self.loaded_at)
                .map_err(op("bind"))?;
            // Parameters NULL now (a fresh statement's all are): a NULL field after a NULL in
            // the same column needs no bind, and most property columns are NULL most of the time.
            let mut null_bound = vec![true; n];
            while let Some((index, row)) = rows.next_if(|(_, r)| r.event_name() == event) {
                for (i, null) in null_bound.iter_mut().enumerate() {
                    let value = if Some(i) == ts_index {
                        Some(ts_of(index))
                    } else {
                        row.value(i)
                    };
                    match value {
                        Some(text) => {
                            stmt.bind_borrowed(i + 1, Some(text)).map_err(op("bind"))?;
                            *null = false;
                        }
                        None if *null => {}
                        None => {
                            stmt.bind_borrowed(i + 1, None).map_err(op("bind"))?;
                            *null = true;
                        }
                    }
                }
                stmt.bind_int(n + 2, row.line as i64).map_err(op("bind"))?;
                stmt.execute().map_err(op("insert"))?;
                count += 1;
            }
            drop(stmt);
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
        if let Some(writeback) = &self.writeback {
            writeback.nudge();
        }
        Ok(())
    }

    /// The insert statement for `columns` into the table of `event`, once the table has them
    /// (created or widened the first time these columns come).
    fn insert_statement(
        &mut self,
        conn: &Connection,
        event: &str,
        columns: &[String],
    ) -> Result<String, WarehouseError> {
        let key = (event.to_string(), columns.to_vec());
        if let Some(sql) = self.insert_statements.get(&key) {
            return Ok(sql.clone());
        }
        self.create_or_widen_table(conn, event, columns)?;
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
        self.insert_statements.insert(key, sql.clone());
        Ok(sql)
    }

    /// Creates the table of `event`, or adds the `columns` it lacks, and records them in
    /// `_tapline_tables` and `_tapline_columns`.
    fn create_or_widen_table(
        &mut self,
        conn: &Connection,
        event: &str,
        columns: &[String],
    ) -> Result<(), WarehouseError> {
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
        self.profile_views_stale |= plan.profile_views_stale;
        if !plan.added.is_empty() {
            self.typed_stale.insert(plan.table);
        }
        Ok(())
    }

    fn commit(
        &mut self,
        conn: &Connection,
        outcome: Outcome,
        rejects: Vec<Reject>,
    ) -> Result<LoadRecord, WarehouseError> {
        // The rows are all appended: the commit's own fsync writes back what is left.
        self.writeback.take();
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
                self.record_kinds(conn)?;
                self.record_pins(conn)?;
                rebuild_views(
                    conn,
                    &self.catalog,
                    self.view_stale,
                    self.profile_views_stale,
                )?;
                rebuild_typed_views(conn, &self.catalog, &self.typed_stale, self.view_stale)?;
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
        if let Some(state) = self.state.take() {
            write_state(conn, &state.key, &state.value)?;
        }
        conn.execute(
            "UPDATE _tapline_loads SET status = ?2, error = ?3, bytes = ?4, rows_loaded = ?5,
               rows_rejected = ?6, finished_at = ?7, object_created_at = ?8 WHERE load_id = ?1",
            params![
                self.load_id,
                status.as_str(),
                error,
                bytes as i64,
                rows as i64,
                rejected as i64,
                now,
                self.object_created_at
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

    /// Widens each observed column's stored kind with the kind of this load's values (never
    /// narrowing it); a table whose kinds changed gets its typed view rebuilt.
    fn record_kinds(&mut self, conn: &Connection) -> Result<(), WarehouseError> {
        let mut update = conn
            .prepare_cached(
                "UPDATE _tapline_columns SET kind = ?3 WHERE table_name = ?1 AND raw_name = ?2",
            )
            .map_err(op("record kinds"))?;
        for (event, raw, seen) in self.kinds.observed() {
            if let Some((table, kind)) = self.catalog.widen_kind(event, raw, seen) {
                update
                    .execute(params![table, raw, kind.as_str()])
                    .map_err(op("record kinds"))?;
                self.typed_stale.insert(table);
            }
        }
        Ok(())
    }

    /// Makes the stored pins those of the load's column types (after its columns are planned,
    /// so a column it added is pinned in the same transaction); every table whose pins changed,
    /// whether this load touched it or not, gets its typed view rebuilt.
    fn record_pins(&mut self, conn: &Connection) -> Result<(), WarehouseError> {
        let Some(types) = self.column_types.as_deref() else {
            return Ok(());
        };
        let mut update = conn
            .prepare_cached(
                "UPDATE _tapline_columns SET pinned = ?3 WHERE table_name = ?1 AND raw_name = ?2",
            )
            .map_err(op("record pins"))?;
        for change in self.catalog.apply_column_types(types) {
            update
                .execute(params![
                    change.table,
                    change.raw,
                    change.pinned.map(ColumnKind::as_str)
                ])
                .map_err(op("record pins"))?;
            self.typed_stale.insert(change.table);
        }
        Ok(())
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
/// Rebuilds the views over the tables this load created or widened: `all_events` when an event
/// table did, the profile views when the snapshot table did (see [`profile_views`]).
fn rebuild_views(
    conn: &Connection,
    catalog: &Catalog,
    all_events_stale: bool,
    profiles_stale: bool,
) -> Result<(), WarehouseError> {
    let all_events = all_events_stale.then(|| {
        if catalog.is_empty() {
            "SELECT NULL AS ts WHERE 0".to_string()
        } else {
            catalog.all_events_select(ident)
        }
    });
    if profiles_stale {
        keep_legacy_profiles_table(conn)?;
    }
    let dialect = ViewDialect {
        ident,
        relation: &|t| ident(t),
    };
    let script = profile_views::rebuild_script(catalog, &dialect, all_events, profiles_stale);
    conn.execute_batch(&script).map_err(op("rebuild views"))
}

/// Tapline before profile snapshots kept `tapline pull profiles` in a table named `profiles`;
/// the view takes the name, and the old rows stay in `_tapline_profiles_v1`.
fn keep_legacy_profiles_table(conn: &Connection) -> Result<(), WarehouseError> {
    let table: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [PROFILES_VIEW],
            |r| r.get::<_, i64>(0),
        )
        .map_err(op("rebuild views"))?
        > 0;
    if table {
        tracing::warn!(
            "Renaming the table profiles (from an earlier Tapline) to _tapline_profiles_v1: profiles is now a view over profile_snapshots."
        );
        conn.execute_batch("ALTER TABLE profiles RENAME TO _tapline_profiles_v1")
            .map_err(op("rebuild views"))?;
    }
    Ok(())
}
