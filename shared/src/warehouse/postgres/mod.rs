//! PostgreSQL and compatible warehouses, through `tokio-postgres`.
//!
//! A load is one transaction: a transaction-level advisory lock on the source uri serialises
//! loaders of the same object (two Lambda invocations of one duplicated event) before the ledger
//! is read, so the second sees the first's committed ledger row. Rows go in with binary
//! `COPY … FROM STDIN (FORMAT binary)` after a savepoint, so a quarantine rolls back rows and any
//! tables or columns the file created while keeping the ledger row and rejects.
//!
//! DDL (a new event table or column) takes a second advisory lock for the schema, then re-reads
//! the catalog, so concurrent loads never race to create the same table.
//!
//! Files: `url.rs` (the URL), `tls.rs`, `schema.sql` and `ddl.rs` (tables), `load.rs` (one
//! load's transaction), `copy.rs` (the binary COPY encoding), `typed_views.rs` (the typed views
//! in the BI schema, and their casts).

mod copy;
mod ddl;
mod load;
mod tls;
mod typed_views;
mod url;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, SimpleQueryMessage};
use tracing::warn;

use self::load::PostgresLoad;
pub use self::url::redact;
use super::{
    Begin, Checkpoints, ColumnMisfit, ColumnType, FixedTable, FixedTables, LedgerVersion,
    LoadLedger, LoadRecord, LoadStatus, QueryResult, SourceObject, SqlQuery, Warehouse,
    WarehouseError, ledger_column_list,
};
use crate::export::TS_COLUMN;
use crate::time::now_utc;
use crate::warehouse::column_kinds::ColumnKind;
use crate::warehouse::column_types::ColumnTypes;

/// PostgreSQL allows 1600 columns per table; four go to lineage.
const MAX_DATA_COLUMNS: usize = 1600 - 4;

/// The ledger columns with timestamps as UTC ISO-8601 text, like every other warehouse reports
/// them.
pub(super) fn ledger_select() -> String {
    ledger_column_list(|column| match column {
        "started_at" | "finished_at" | "object_created_at" => {
            format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")
        }
        _ => column.to_string(),
    })
}

/// The PostgreSQL warehouse: one connection per handle (loads are sequential per process;
/// concurrency comes from processes), reconnected when the server closed it.
pub struct PostgresWarehouse {
    target: String,
    schema: String,
    /// The schema of the typed views (see `typed_views.rs`).
    bi_schema: String,
    config: Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    client: Arc<Mutex<Client>>,
    /// A load was dropped where no runtime could roll it back: roll back before the next one.
    needs_rollback: Arc<AtomicBool>,
    /// Column types to pin at each load's commit (`None`: keep the stored pins).
    column_types: Option<Arc<ColumnTypes>>,
}

/// Maps a client error, deciding whether a retry may help.
pub(super) fn op(operation: &'static str) -> impl FnOnce(tokio_postgres::Error) -> WarehouseError {
    move |e| {
        let retryable = e.is_closed()
            || match e.code() {
                Some(code) => [
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                    SqlState::TOO_MANY_CONNECTIONS,
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::CONNECTION_EXCEPTION,
                    SqlState::CONNECTION_FAILURE,
                    SqlState::LOCK_NOT_AVAILABLE,
                    // `statement_timeout` (and a cancel): the next try may be quicker.
                    SqlState::QUERY_CANCELED,
                    SqlState::DISK_FULL,
                    SqlState::OUT_OF_MEMORY,
                ]
                .contains(code),
                // No SQLSTATE: the connection or the socket failed.
                None => std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()),
            };
        WarehouseError::Operation {
            operation,
            retryable,
            source: Box::new(e),
        }
    }
}

/// Quotes an identifier for PostgreSQL.
pub(super) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn connect(
    config: &Config,
    tls: &tokio_postgres_rustls::MakeRustlsConnect,
    schema: &str,
    bi_schema: &str,
    target: &str,
) -> Result<Client, WarehouseError> {
    let open_err = |e: tokio_postgres::Error| WarehouseError::Open {
        target: target.to_string(),
        source: Box::new(e),
    };
    let (client, connection) = config.connect(tls.clone()).await.map_err(open_err)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            warn!(error = %e, "PostgreSQL connection closed.");
        }
    });
    // A session lock, taken before the transaction: CREATE … IF NOT EXISTS is not safe against
    // a concurrent create of the same name, and a transaction that began before the other
    // committed may still see the old catalog.
    let lock = format!("tapline schema {schema}");
    client
        .execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", &[&lock])
        .await
        .map_err(open_err)?;
    let setup = format!(
        "SET TIME ZONE 'UTC'; SET standard_conforming_strings = on; BEGIN; CREATE SCHEMA IF NOT EXISTS {schema_ident}; \
         SET search_path TO {schema_ident}; {schema_sql} {bi_sql} COMMIT;",
        schema_ident = ident(schema),
        schema_sql = ddl::SCHEMA_SQL,
        bi_sql = typed_views::bi_schema_sql(bi_schema),
    );
    let created = client.batch_execute(&setup).await;
    if created.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    let unlocked = client
        .execute(
            "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
            &[&lock],
        )
        .await;
    created.map_err(open_err)?;
    unlocked.map_err(open_err)?;
    Ok(client)
}

impl PostgresWarehouse {
    /// Connects to the database a `postgres://` URL names and creates the `_tapline_*` tables
    /// in its schema (`?schema=NAME`, default `public`), and the schema of the typed views
    /// (`?bi_schema=NAME`, default `<schema>_bi`).
    pub async fn open(url: &str) -> Result<Self, WarehouseError> {
        let parsed = url::parse_url(url)?;
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls::tls_config(&parsed.tls)?);
        let client = connect(
            &parsed.config,
            &tls,
            &parsed.schema,
            &parsed.bi_schema,
            &parsed.target,
        )
        .await?;
        Ok(Self {
            target: parsed.target,
            schema: parsed.schema,
            bi_schema: parsed.bi_schema,
            config: parsed.config,
            tls,
            client: Arc::new(Mutex::new(client)),
            needs_rollback: Arc::new(AtomicBool::new(false)),
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

    /// The client, reconnected if the server closed the connection (a restart, an idle
    /// timeout): a long-lived function instance must not stay broken.
    async fn client(&self) -> Result<OwnedMutexGuard<Client>, WarehouseError> {
        let mut guard = self.client.clone().lock_owned().await;
        if guard.is_closed() {
            *guard = connect(
                &self.config,
                &self.tls,
                &self.schema,
                &self.bi_schema,
                &self.target,
            )
            .await?;
            self.needs_rollback.store(false, Ordering::SeqCst);
        }
        if self.needs_rollback.swap(false, Ordering::SeqCst) {
            guard
                .batch_execute("ROLLBACK")
                .await
                .map_err(op("rollback"))?;
        }
        Ok(guard)
    }
}

impl Warehouse for PostgresWarehouse {
    fn describe(&self) -> String {
        self.target.clone()
    }
}

#[async_trait]
impl LoadLedger for PostgresWarehouse {
    fn max_columns(&self) -> usize {
        MAX_DATA_COLUMNS
    }

    async fn begin_load(
        &self,
        object: &SourceObject,
        retry_quarantined: bool,
    ) -> Result<Begin, WarehouseError> {
        let client = self.client().await?;
        PostgresLoad::begin(
            client,
            self.needs_rollback.clone(),
            load::LoadTarget {
                schema: &self.schema,
                bi_schema: &self.bi_schema,
                column_types: self.column_types.clone(),
            },
            object,
            retry_quarantined,
        )
        .await
    }

    async fn record_failure(
        &self,
        object: &SourceObject,
        error: &str,
    ) -> Result<(), WarehouseError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO _tapline_loads (uri, version, status, bytes, error, started_at, finished_at)
                 VALUES ($1, $2, 'failed', $3, $4, $5::text::timestamptz, $5::text::timestamptz)
                 ON CONFLICT (uri, version) DO UPDATE SET
                   status = 'failed', error = excluded.error, finished_at = excluded.finished_at
                 WHERE _tapline_loads.status NOT IN ('loaded', 'replaced')",
                &[
                    &object.uri,
                    &object.version,
                    &object.bytes.map(|b| b as i64),
                    &error,
                    &now_utc(),
                ],
            )
            .await
            .map_err(op("record failure"))?;
        Ok(())
    }

    async fn recent_loads(&self, limit: usize) -> Result<Vec<LoadRecord>, WarehouseError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {} FROM _tapline_loads
                     ORDER BY COALESCE(finished_at, started_at) DESC, load_id DESC LIMIT $1",
                    ledger_select()
                ),
                &[&(limit as i64)],
            )
            .await
            .map_err(op("read ledger"))?;
        Ok(rows.iter().map(ledger_row).collect())
    }

    async fn commits_since(
        &self,
        since: &str,
        limit: usize,
    ) -> Result<Vec<LoadRecord>, WarehouseError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {} FROM _tapline_loads
                     WHERE status IN ('loaded', 'replaced')
                       AND finished_at >= $1::text::timestamptz
                     ORDER BY finished_at DESC, load_id DESC LIMIT $2",
                    ledger_select()
                ),
                &[&since, &(limit as i64)],
            )
            .await
            .map_err(op("read ledger"))?;
        Ok(rows.iter().map(ledger_row).collect())
    }

    async fn ledger_versions(
        &self,
        uri_prefix: &str,
    ) -> Result<Vec<LedgerVersion>, WarehouseError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT uri, version, status FROM _tapline_loads WHERE starts_with(uri, $1)",
                &[&uri_prefix],
            )
            .await
            .map_err(op("read ledger"))?;
        Ok(rows
            .iter()
            .map(|r| LedgerVersion {
                uri: r.get(0),
                version: r.get(1),
                // `loading` (an attempt in flight) and anything else are "not done": the
                // load's own check, under its lock, decides.
                status: LoadStatus::parse(r.get(2)).unwrap_or(LoadStatus::Failed),
            })
            .collect())
    }
}

/// Writes one `_tapline_state` value (`$1` key, `$2` value): by `put_state`, and by a load's
/// commit in its transaction.
pub(super) const PUT_STATE_SQL: &str =
    "INSERT INTO _tapline_state (key, value, updated_at) VALUES ($1, $2, now())
     ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at";

#[async_trait]
impl Checkpoints for PostgresWarehouse {
    async fn get_state(&self, key: &str) -> Result<Option<String>, WarehouseError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT value FROM _tapline_state WHERE key = $1", &[&key])
            .await
            .map_err(op("read state"))?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn put_state(&self, key: &str, value: &str) -> Result<(), WarehouseError> {
        let client = self.client().await?;
        client
            .execute(PUT_STATE_SQL, &[&key, &value])
            .await
            .map_err(op("write state"))?;
        Ok(())
    }
}

#[async_trait]
impl FixedTables for PostgresWarehouse {
    async fn replace_rows(
        &self,
        table: &FixedTable,
        rows: &[Vec<Option<String>>],
    ) -> Result<u64, WarehouseError> {
        let (create, upsert) =
            table.replace_statements(rows, ident, "BIGINT", |i, kind| match kind {
                ColumnType::Text => format!("${}::text", i + 1),
                ColumnType::Integer => format!("${}::text::bigint", i + 1),
            })?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(op("replace rows"))?;
        tx.batch_execute(&create)
            .await
            .map_err(op("create table"))?;
        let stmt = tx.prepare(&upsert).await.map_err(op("replace rows"))?;
        for row in rows {
            tx.execute_raw(&stmt, row.iter())
                .await
                .map_err(op("replace rows"))?;
        }
        tx.commit().await.map_err(op("commit"))?;
        Ok(rows.len() as u64)
    }
}

#[async_trait]
impl SqlQuery for PostgresWarehouse {
    async fn query(&self, sql: &str) -> Result<QueryResult, WarehouseError> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .map_err(op("query"))?;
        // Parse (extended protocol) takes exactly one statement: `COMMIT; CREATE …` is refused
        // here, before anything runs, so the statement cannot end the read-only transaction
        // and run more after it.
        let messages = match tx.prepare(sql).await {
            Ok(_) => tx.simple_query(sql).await,
            Err(e) if e.code() == Some(&SqlState::SYNTAX_ERROR) && is_multiple_commands(&e) => {
                return Err(WarehouseError::Operation {
                    operation: "query",
                    retryable: false,
                    source: "only one SQL statement is allowed per query".into(),
                });
            }
            Err(e) => Err(e),
        };
        // Whatever the statement was (even a lone COMMIT), nothing of it is kept.
        let rolled_back = tx.rollback().await;
        let messages = messages.map_err(op("query"))?;
        rolled_back.map_err(op("query"))?;
        let mut result = QueryResult::default();
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(columns) if result.columns.is_empty() => {
                    result.columns = columns.iter().map(|c| c.name().to_string()).collect();
                }
                SimpleQueryMessage::Row(row) => {
                    if result.columns.is_empty() {
                        result.columns =
                            row.columns().iter().map(|c| c.name().to_string()).collect();
                    }
                    result.rows.push(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_string))
                            .collect(),
                    );
                }
                _ => {}
            }
        }
        Ok(result)
    }

    async fn column_misfits(&self) -> Result<Vec<ColumnMisfit>, WarehouseError> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .map_err(op("count misfits"))?;
        // `ts` is typed in the raw table already, and text fits everything.
        let rows = tx
            .query(
                &format!(
                    "SELECT table_name, column_name, pinned FROM {}._tapline_columns
                     WHERE pinned IS NOT NULL AND pinned <> 'text' AND raw_name <> $1
                     ORDER BY table_name, column_name",
                    ident(&self.schema)
                ),
                &[&TS_COLUMN],
            )
            .await
            .map_err(op("count misfits"))?;
        let mut pins: BTreeMap<String, Vec<(String, ColumnKind)>> = BTreeMap::new();
        for row in rows {
            let kind = ColumnKind::parse(row.get(2));
            if kind != ColumnKind::Text {
                pins.entry(row.get(0)).or_default().push((row.get(1), kind));
            }
        }
        tx.batch_execute(&typed_views::with_bi_search_path(&self.bi_schema))
            .await
            .map_err(op("count misfits"))?;
        let mut misfits = Vec::new();
        for (table, columns) in &pins {
            let counts = tx
                .query_one(
                    &typed_views::misfits_select(&self.schema, table, columns),
                    &[],
                )
                .await
                .map_err(op("count misfits"))?;
            for (i, (column, kind)) in columns.iter().enumerate() {
                let values: i64 = counts.get(i);
                if values > 0 {
                    misfits.push(ColumnMisfit {
                        table: table.clone(),
                        column: column.clone(),
                        kind: *kind,
                        values: values as u64,
                    });
                }
            }
        }
        tx.rollback().await.map_err(op("count misfits"))?;
        Ok(misfits)
    }
}

/// Whether PostgreSQL refused a Parse because the text holds more than one statement.
fn is_multiple_commands(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| db.message().contains("multiple commands"))
}

/// A ledger row read through [`ledger_select`].
pub(super) fn ledger_row(row: &tokio_postgres::Row) -> LoadRecord {
    let status: String = row.get(3);
    LoadRecord {
        load_id: row.get(0),
        uri: row.get(1),
        version: row.get(2),
        status: LoadStatus::parse(&status).unwrap_or(LoadStatus::Failed),
        bytes: row.get::<_, Option<i64>>(4).map(|b| b as u64),
        rows_loaded: row.get::<_, i64>(5) as u64,
        rows_rejected: row.get::<_, i64>(6) as u64,
        error: row.get(7),
        attempts: row.get::<_, i32>(8) as u32,
        started_at: row.get(9),
        finished_at: row.get(10),
        object_created_at: row.get(11),
    }
}
