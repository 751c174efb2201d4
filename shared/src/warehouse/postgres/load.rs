//! One PostgreSQL load: the transaction `begin_load` opens (the version's advisory lock, its
//! ledger row, a savepoint), rows streamed by binary COPY, and the commit or quarantine that
//! ends it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::BytesMut;
use tokio::sync::OwnedMutexGuard;
use tokio_postgres::Client;

use super::copy::{self, Lineage, OpenCopy};
use super::typed_views::{rebuild_typed_views, typed_views_missing};
use super::{MAX_DATA_COLUMNS, PUT_STATE_SQL, ddl, ident, ledger_row, ledger_select, op};
use crate::export::{Reject, RowBatch, TS_COLUMN};
use crate::time::now_utc;
use crate::warehouse::catalog::Catalog;
use crate::warehouse::column_kinds::{ColumnKind, ColumnKindTracker, widen_known};
use crate::warehouse::column_types::ColumnTypes;
use crate::warehouse::profile_views::{self, ViewDialect};

/// Tapline before profile snapshots kept `tapline pull profiles` in a table named `profiles`;
/// the view takes the name, and the old rows stay in `_tapline_profiles_v1`.
const KEEP_LEGACY_PROFILES_TABLE: &str = "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_tables \
     WHERE schemaname = current_schema() AND tablename = 'profiles') THEN \
     ALTER TABLE profiles RENAME TO _tapline_profiles_v1; END IF; END $$;\n";
use crate::warehouse::{
    Begin, COL_LOAD_ID, Committed, LoadRecord, LoadStatus, LoadTransaction, Outcome, SourceObject,
    StateWrite, WarehouseError, stored_rejects,
};

/// Where a load writes, beside its connection.
pub(super) struct LoadTarget<'a> {
    /// The raw schema.
    pub(super) schema: &'a str,
    /// The schema of the typed views.
    pub(super) bi_schema: &'a str,
    /// Column types the commit pins (`None`: keep the stored pins).
    pub(super) column_types: Option<Arc<ColumnTypes>>,
}

/// An open load. Holds the connection until commit or drop.
pub(super) struct PostgresLoad {
    client: Option<OwnedMutexGuard<Client>>,
    needs_rollback: Arc<AtomicBool>,
    schema: String,
    bi_schema: String,
    column_types: Option<Arc<ColumnTypes>>,
    object: SourceObject,
    load_id: i64,
    loaded_at: String,
    catalog: Catalog,
    /// The schema's DDL lock is held (until commit) and the catalog was re-read under it.
    ddl_locked: bool,
    /// COPY statements by (event, batch columns).
    copy_statements: HashMap<(String, Vec<String>), String>,
    /// Rows appended per table.
    appended: HashMap<String, u64>,
    view_stale: bool,
    /// The profile snapshot table was created or widened: the profile views are rebuilt.
    profile_views_stale: bool,
    /// The kinds of the values appended, widened into `_tapline_columns.kind` at commit.
    kinds: ColumnKindTracker,
    /// Event tables whose typed view is rebuilt at commit (a column added, a kind widened, a
    /// pin changed).
    typed_stale: HashSet<String>,
    /// The COPY in progress: it stays open across batches of the same table and columns, so
    /// the server parses while we decode (no round trip per batch).
    copy: Option<OpenCopy>,
    copy_buffer: BytesMut,
    /// The state value the commit writes with the rows.
    state: Option<StateWrite>,
    /// When the object was created in its bucket, for the ledger row.
    object_created_at: Option<String>,
}

impl PostgresLoad {
    /// Opens the load of `object` on `client`: a transaction holding the version's lock, its
    /// ledger row in `loading`, and the savepoint rows go after. `Begin::Done` (and the
    /// transaction rolled back) when the ledger says the version needs no new attempt.
    /// `needs_rollback` is the warehouse's flag for a load dropped outside a runtime.
    pub(super) async fn begin(
        client: OwnedMutexGuard<Client>,
        needs_rollback: Arc<AtomicBool>,
        target: LoadTarget<'_>,
        object: &SourceObject,
        retry_quarantined: bool,
    ) -> Result<Begin, WarehouseError> {
        let schema = target.schema;
        client.batch_execute("BEGIN").await.map_err(op("begin"))?;
        let started = start_ledger_row(&client, object, retry_quarantined).await;
        let (load_id, loaded_at) = match started {
            Ok(Ok(started)) => started,
            Ok(Err(done)) => {
                client
                    .batch_execute("ROLLBACK")
                    .await
                    .map_err(op("rollback"))?;
                return Ok(Begin::Done(done));
            }
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(e);
            }
        };
        let catalog = match read_catalog(&client, schema).await {
            Ok(c) => c,
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(e);
            }
        };
        client
            .batch_execute("SAVEPOINT rows")
            .await
            .map_err(op("savepoint"))?;
        Ok(Begin::Started(Box::new(PostgresLoad {
            client: Some(client),
            needs_rollback,
            schema: schema.to_string(),
            bi_schema: target.bi_schema.to_string(),
            column_types: target.column_types,
            object: object.clone(),
            load_id,
            loaded_at,
            catalog,
            ddl_locked: false,
            copy_statements: HashMap::new(),
            appended: HashMap::new(),
            view_stale: false,
            profile_views_stale: false,
            kinds: ColumnKindTracker::for_load(),
            typed_stale: HashSet::new(),
            state: None,
            object_created_at: None,
            copy: None,
            copy_buffer: BytesMut::new(),
        })))
    }
}

/// Inside the open transaction: the ledger row for this attempt, `(load_id, started_at)`, or
/// the record saying it is already done.
async fn start_ledger_row(
    client: &Client,
    object: &SourceObject,
    retry_quarantined: bool,
) -> Result<Result<(i64, String), LoadRecord>, WarehouseError> {
    // Held until commit: a second loader of this uri waits here, then sees the ledger row.
    client
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&format!("tapline load {}", object.uri)],
        )
        .await
        .map_err(op("lock"))?;
    let existing = client
        .query_opt(
            &format!(
                "SELECT {} FROM _tapline_loads WHERE uri = $1 AND version = $2",
                ledger_select()
            ),
            &[&object.uri, &object.version],
        )
        .await
        .map_err(op("read ledger"))?
        .map(|r| ledger_row(&r));
    let now = now_utc();
    let bytes = object.bytes.map(|b| b as i64);
    match existing {
        Some(done) if done.is_done(retry_quarantined) => Ok(Err(done)),
        Some(previous) => {
            client
                .execute(
                    "UPDATE _tapline_loads SET status = 'loading', attempts = attempts + 1,
                       started_at = $2::text::timestamptz, finished_at = NULL, error = NULL, bytes = $3
                     WHERE load_id = $1",
                    &[&previous.load_id, &now, &bytes],
                )
                .await
                .map_err(op("write ledger"))?;
            Ok(Ok((previous.load_id, now)))
        }
        None => {
            let row = client
                .query_one(
                    "INSERT INTO _tapline_loads (uri, version, status, bytes, started_at)
                     VALUES ($1, $2, 'loading', $3, $4::text::timestamptz) RETURNING load_id",
                    &[&object.uri, &object.version, &bytes, &now],
                )
                .await
                .map_err(op("write ledger"))?;
            Ok(Ok((row.get(0), now)))
        }
    }
}

/// Reads the catalog (event tables and their columns, every name taken in the schema).
async fn read_catalog(client: &Client, schema: &str) -> Result<Catalog, WarehouseError> {
    let taken: Vec<String> = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1",
            &[&schema],
        )
        .await
        .map_err(op("read catalog"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut catalog = Catalog::new(taken);
    for row in client
        .query("SELECT event_name, table_name FROM _tapline_tables", &[])
        .await
        .map_err(op("read catalog"))?
    {
        catalog.add_table(row.get(0), row.get(1));
    }
    for row in client
        .query(
            "SELECT table_name, raw_name, column_name, kind, pinned FROM _tapline_columns",
            &[],
        )
        .await
        .map_err(op("read catalog"))?
    {
        let (table, raw): (&str, &str) = (row.get(0), row.get(1));
        if let Some(kind) = row.get::<_, Option<&str>>(3) {
            catalog.set_kind(table, raw, ColumnKind::parse(kind));
        }
        if let Some(pinned) = row.get::<_, Option<&str>>(4) {
            catalog.set_pinned(table, raw, ColumnKind::parse(pinned));
        }
        catalog.add_column(table, raw.to_string(), row.get(2));
    }
    Ok(catalog)
}

impl Drop for PostgresLoad {
    fn drop(&mut self) {
        // An unfinished COPY is abandoned (the server is told it failed) before the rollback.
        drop(self.copy.take());
        let Some(client) = self.client.take() else {
            return;
        };
        // Not committed: roll back before anyone else uses the connection. The guard moves
        // into the task, so the next user waits for the rollback.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let _ = client.batch_execute("ROLLBACK").await;
                });
            }
            Err(_) => self.needs_rollback.store(true, Ordering::SeqCst),
        }
    }
}

impl PostgresLoad {
    fn client(&self) -> &Client {
        self.client.as_ref().expect("present until commit or drop")
    }

    /// Creates `event`'s table, or adds the `columns` it lacks, under the schema's DDL lock
    /// (taken once per load, with the catalog re-read under it).
    async fn create_or_widen_table(
        &mut self,
        event: &str,
        columns: &[String],
    ) -> Result<(), WarehouseError> {
        if self.catalog.needs_ddl(event, columns) {
            self.lock_ddl().await?;
        }
        let plan = self.catalog.plan(event, columns, MAX_DATA_COLUMNS)?;
        ddl::apply_plan(self.client(), &plan, event, self.load_id, &self.loaded_at).await?;
        self.view_stale |= plan.view_stale;
        self.profile_views_stale |= plan.profile_views_stale;
        if !plan.added.is_empty() {
            self.typed_stale.insert(plan.table);
        }
        Ok(())
    }

    /// Takes the schema's DDL lock (until commit), once per load, and re-reads the catalog under
    /// it: another load may have created tables or columns, or widened kinds, before we held it.
    /// Every write of tables, columns, kinds, pins and views happens under this lock.
    async fn lock_ddl(&mut self) -> Result<(), WarehouseError> {
        if self.ddl_locked {
            return Ok(());
        }
        self.client()
            .execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[&format!("tapline ddl {}", self.schema)],
            )
            .await
            .map_err(op("lock"))?;
        self.catalog = read_catalog(self.client(), &self.schema).await?;
        self.ddl_locked = true;
        Ok(())
    }

    /// Whether this load's commit changes the typed layer: a kind it widens, a pin its column
    /// types change, a typed view to create. Judged on the catalog read at begin, without a
    /// lock; a load that changes nothing (the usual case) takes no lock for it.
    async fn typed_layer_due(&self) -> Result<bool, WarehouseError> {
        if !self.typed_stale.is_empty() || self.view_stale {
            return Ok(true);
        }
        let widens = self.kinds.observed().any(|(event, raw, seen)| {
            self.catalog.table(event).is_some_and(|t| {
                t.columns.contains_key(raw) && widen_known(t.kind(raw), Some(seen)) != t.kind(raw)
            })
        });
        let repins = self
            .column_types
            .as_deref()
            .is_some_and(|types| !self.catalog.clone().apply_column_types(types).is_empty());
        Ok(widens
            || repins
            || typed_views_missing(self.client(), &self.bi_schema, &self.catalog).await?)
    }

    /// Widens the stored kinds with this load's values, makes the stored pins the handle's
    /// column types, and rebuilds the typed views of the tables that changed, all under the
    /// DDL lock and in the load's transaction.
    async fn update_typed_layer(&mut self) -> Result<(), WarehouseError> {
        if !self.typed_layer_due().await? {
            return Ok(());
        }
        self.lock_ddl().await?;
        let mut kinds: (Vec<String>, Vec<String>, Vec<&str>) = Default::default();
        for (event, raw, seen) in self.kinds.observed() {
            if let Some((table, kind)) = self.catalog.widen_kind(event, raw, seen) {
                self.typed_stale.insert(table.clone());
                kinds.0.push(table);
                kinds.1.push(raw.to_string());
                kinds.2.push(kind.as_str());
            }
        }
        let client = self.client.as_ref().expect("present until commit or drop");
        if !kinds.0.is_empty() {
            client
                .execute(
                    "UPDATE _tapline_columns c SET kind = u.k
                     FROM unnest($1::text[], $2::text[], $3::text[]) AS u (t, r, k)
                     WHERE c.table_name = u.t AND c.raw_name = u.r",
                    &[&kinds.0, &kinds.1, &kinds.2],
                )
                .await
                .map_err(op("record kinds"))?;
        }
        if let Some(types) = self.column_types.as_deref() {
            let changes = self.catalog.apply_column_types(types);
            if !changes.is_empty() {
                let tables: Vec<&str> = changes.iter().map(|c| c.table.as_str()).collect();
                let raws: Vec<&str> = changes.iter().map(|c| c.raw.as_str()).collect();
                let pins: Vec<Option<&str>> = changes
                    .iter()
                    .map(|c| c.pinned.map(|k| k.as_str()))
                    .collect();
                client
                    .execute(
                        "UPDATE _tapline_columns c SET pinned = u.p
                         FROM unnest($1::text[], $2::text[], $3::text[]) AS u (t, r, p)
                         WHERE c.table_name = u.t AND c.raw_name = u.r",
                        &[&tables, &raws, &pins],
                    )
                    .await
                    .map_err(op("record pins"))?;
                self.typed_stale
                    .extend(changes.into_iter().map(|c| c.table));
            }
        }
        rebuild_typed_views(
            client,
            &self.schema,
            &self.bi_schema,
            &self.catalog,
            &self.typed_stale,
            self.view_stale,
        )
        .await
    }

    /// Ends the COPY in progress, if any: required before any other statement.
    async fn finish_copy(&mut self) -> Result<(), WarehouseError> {
        match self.copy.take() {
            Some(copy) => copy.finish().await,
            None => Ok(()),
        }
    }

    /// Makes sure a COPY for `columns` of `event` is open, creating the table or its columns
    /// first the first time these columns come.
    async fn open_copy(&mut self, event: &str, columns: &[String]) -> Result<(), WarehouseError> {
        let key = (event.to_string(), columns.to_vec());
        if self.copy.as_ref().is_some_and(|c| c.key == key) {
            return Ok(());
        }
        self.finish_copy().await?;
        let sql = match self.copy_statements.get(&key) {
            Some(sql) => sql.clone(),
            None => {
                self.create_or_widen_table(event, columns).await?;
                let table = self.catalog.table(event).expect("planned above");
                let sql = copy::copy_statement(table, columns);
                self.copy_statements.insert(key.clone(), sql.clone());
                sql
            }
        };
        let table = self
            .catalog
            .table(event)
            .expect("planned before its COPY")
            .name
            .clone();
        let ts_index = columns.iter().position(|c| c == TS_COLUMN);
        self.copy = Some(OpenCopy::start(self.client(), &sql, key, table, ts_index).await?);
        Ok(())
    }

    async fn replace_older_versions(&self) -> Result<(), WarehouseError> {
        let client = self.client();
        let targets = client
            .query(
                "SELECT l.load_id, t.table_name FROM _tapline_loads l
                 JOIN _tapline_load_tables t ON t.load_id = l.load_id
                 WHERE l.uri = $1 AND l.status = 'loaded' AND l.load_id <> $2",
                &[&self.object.uri, &self.load_id],
            )
            .await
            .map_err(op("find older versions"))?;
        for row in targets {
            let (load_id, table): (i64, String) = (row.get(0), row.get(1));
            client
                .execute(
                    &format!(
                        "DELETE FROM {} WHERE {} = $1",
                        ident(&table),
                        ident(COL_LOAD_ID)
                    ),
                    &[&load_id],
                )
                .await
                .map_err(op("replace older version"))?;
        }
        client
            .execute(
                "UPDATE _tapline_loads SET status = 'replaced', replaced_by = $2
                 WHERE uri = $1 AND status = 'loaded' AND load_id <> $2",
                &[&self.object.uri, &self.load_id],
            )
            .await
            .map_err(op("replace older version"))?;
        Ok(())
    }
}

#[async_trait]
impl LoadTransaction for PostgresLoad {
    fn load_id(&self) -> i64 {
        self.load_id
    }

    fn write_state_at_commit(&mut self, state: StateWrite) {
        self.state = Some(state);
    }

    fn record_object_created_at(&mut self, created_at: Option<String>) {
        self.object_created_at = created_at;
    }

    async fn append(&mut self, batch: RowBatch) -> Result<(), WarehouseError> {
        self.kinds.observe(&batch);
        let columns = batch.schema().columns().to_vec();
        let loaded_at =
            copy::pg_micros(crate::time::parse_utc(&self.loaded_at).unwrap_or_default());
        let mut rows = batch.rows().peekable();
        while let Some(first) = rows.peek().copied() {
            let event = first.event_name().to_string();
            self.open_copy(&event, &columns).await?;
            let copy = self.copy.as_mut().expect("opened above");
            let lineage = Lineage {
                uri: &self.object.uri,
                load_id: self.load_id,
                loaded_at,
            };
            let mut buf = std::mem::take(&mut self.copy_buffer);
            let mut count = 0u64;
            while let Some(row) = rows.next_if(|r| r.event_name() == event) {
                copy::put_row(&mut buf, &row, columns.len(), copy.ts_index, &lineage);
                count += 1;
            }
            let data = buf.split().freeze();
            self.copy_buffer = buf;
            copy.send(data).await?;
            *self.appended.entry(copy.table.clone()).or_default() += count;
        }
        Ok(())
    }

    async fn commit(
        mut self: Box<Self>,
        outcome: Outcome,
        rejects: Vec<Reject>,
    ) -> Result<Committed, WarehouseError> {
        self.finish_copy().await?;
        let (status, error, bytes, rows, rejected) = match outcome {
            Outcome::Loaded {
                bytes,
                rows,
                rejected,
            } => {
                self.replace_older_versions().await?;
                let client = self.client();
                client
                    .execute(
                        "DELETE FROM _tapline_load_tables WHERE load_id = $1",
                        &[&self.load_id],
                    )
                    .await
                    .map_err(op("write ledger"))?;
                for (table, count) in &self.appended {
                    client
                        .execute(
                            "INSERT INTO _tapline_load_tables (load_id, table_name, rows) VALUES ($1, $2, $3)",
                            &[&self.load_id, table, &(*count as i64)],
                        )
                        .await
                        .map_err(op("write ledger"))?;
                }
                if self.view_stale || self.profile_views_stale {
                    let all_events = self
                        .view_stale
                        .then(|| self.catalog.all_events_select(ident));
                    let dialect = ViewDialect {
                        ident,
                        relation: &|t| ident(t),
                    };
                    let mut script = String::new();
                    if self.profile_views_stale {
                        script.push_str(KEEP_LEGACY_PROFILES_TABLE);
                    }
                    script.push_str(&profile_views::rebuild_script(
                        &self.catalog,
                        &dialect,
                        all_events,
                        self.profile_views_stale,
                    ));
                    client
                        .batch_execute(&script)
                        .await
                        .map_err(op("rebuild views"))?;
                }
                self.update_typed_layer().await?;
                let client = self.client();
                client
                    .batch_execute("RELEASE SAVEPOINT rows")
                    .await
                    .map_err(op("release"))?;
                (LoadStatus::Loaded, None, bytes, rows, rejected)
            }
            Outcome::Quarantined {
                reason,
                bytes,
                rows: _,
                rejected,
            } => {
                self.client()
                    .batch_execute("ROLLBACK TO SAVEPOINT rows; RELEASE SAVEPOINT rows")
                    .await
                    .map_err(op("rollback rows"))?;
                (LoadStatus::Quarantined, Some(reason), bytes, 0, rejected)
            }
        };
        let state = self.state.take();
        let client = self.client();
        let kept = stored_rejects(&rejects);
        if !kept.is_empty() {
            let lines: Vec<i64> = kept.iter().map(|r| r.line as i64).collect();
            let columns: Vec<Option<&str>> = kept.iter().map(|r| r.column.as_deref()).collect();
            let reasons: Vec<&str> = kept.iter().map(|r| r.reason.as_str()).collect();
            let raws: Vec<&str> = kept.iter().map(|r| r.raw.as_str()).collect();
            client
                .execute(
                    "INSERT INTO _tapline_rejects (load_id, uri, line, column_name, reason, raw_line)
                     SELECT $1, $2, * FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[])",
                    &[&self.load_id, &self.object.uri, &lines, &columns, &reasons, &raws],
                )
                .await
                .map_err(op("write rejects"))?;
        }
        if let Some(state) = state {
            client
                .execute(PUT_STATE_SQL, &[&state.key, &state.value])
                .await
                .map_err(op("write state"))?;
        }
        let record = client
            .query_one(
                &format!(
                    "UPDATE _tapline_loads SET status = $2, error = $3, bytes = $4, rows_loaded = $5,
                       rows_rejected = $6, finished_at = $7::text::timestamptz,
                       object_created_at = $8::text::timestamptz
                     WHERE load_id = $1 RETURNING {}",
                    ledger_select()
                ),
                &[
                    &self.load_id,
                    &status.as_str(),
                    &error,
                    &(bytes as i64),
                    &(rows as i64),
                    &(rejected as i64),
                    &now_utc(),
                    &self.object_created_at,
                ],
            )
            .await
            .map(|r| ledger_row(&r))
            .map_err(op("write ledger"))?;
        client.batch_execute("COMMIT").await.map_err(op("commit"))?;
        // Committed: nothing for Drop to roll back.
        drop(self.client.take());
        // The version's row lock is held from `begin_load`: no other loader can commit it.
        Ok(Committed::Ours(record))
    }
}
