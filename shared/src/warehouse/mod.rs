//! The warehouse port: where validated rows land, exactly once per source object version.
//!
//! Every adapter gives the same guarantees (see the conformance suite in `tests/`):
//! - one table per event (named by [`naming::snake_case`]), columns by the same rule from the
//!   raw CleverTap names, raw names kept in `_tapline_columns`, columns only ever added;
//! - lineage columns `_source_uri`, `_source_line`, `_load_id`, `_loaded_at` on every row;
//! - a file's rows and its ledger row (`_tapline_loads`) commit together or not at all;
//! - the same (uri, version) again is reported as already done; a new version of a uri
//!   replaces the old version's rows in the same transaction;
//! - a quarantined file leaves its ledger row and rejects, and no data rows;
//! - `_tapline_state` keeps one value per key (checkpoints), committed when `put_state` returns,
//!   or with a load's rows when the load carries it ([`LoadTransaction::write_state_at_commit`]).
//!
//! The port is four capability traits ([`LoadLedger`], [`Checkpoints`], [`FixedTables`],
//! [`SqlQuery`]) gathered by [`Warehouse`]; the adapters sit in folders beside it, and
//! [`open::open`] picks one by URL, so the port itself names no adapter.

#[cfg(feature = "bigquery")]
pub mod bigquery;
pub mod catalog;
pub mod column_kinds;
pub mod column_types;
pub mod counts_tables;
pub mod naming;
pub mod open;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod profile_views;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod typed_views;
pub mod url_redaction;

use std::fmt;

use async_trait::async_trait;

use crate::config::ConfigError;
use crate::export::{Reject, RowBatch};

/// Boxed cause of a warehouse error, whatever the adapter's client library.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Lineage column: where the row came from (`file:///…`, `s3://…`, `gs://…`).
pub const COL_SOURCE_URI: &str = "_source_uri";
/// Lineage column: the 1-based line where the row's record starts in its file.
pub const COL_SOURCE_LINE: &str = "_source_line";
/// Lineage column: the ledger id of the load that wrote the row.
pub const COL_LOAD_ID: &str = "_load_id";
/// Lineage column: when that load started (UTC ISO-8601).
pub const COL_LOADED_AT: &str = "_loaded_at";
/// The lineage columns, in table order.
pub const LINEAGE_COLUMNS: [&str; 4] =
    [COL_SOURCE_URI, COL_SOURCE_LINE, COL_LOAD_ID, COL_LOADED_AT];

/// Table names Tapline uses itself; an event whose name normalises to one of these gets a
/// numeric suffix instead.
pub const RESERVED_TABLES: &[&str] = &[
    "all_events",
    "profiles",
    "profile_snapshots",
    "profiles_history",
    "events_with_profile",
    "event_counts",
    "profile_counts",
    "campaigns",
    "campaign_reports",
    "webhook_events",
];

/// Prefix of the typed views over the event tables (`bi_order_placed`, `bi_all_events`; see
/// [`typed_views`]): a BI tool lists them together, apart from the raw tables. No new event
/// table takes a name with this prefix.
pub const TYPED_VIEW_PREFIX: &str = "bi_";

/// Raw event columns a typed view never casts: `ts` (already the warehouse's timestamp type) and
/// `profile.identity`, the key events join profiles on (and BI tools join on): it stays text on
/// both sides even where every identity looks like a number. No pin is kept for them either.
pub const UNCAST_EVENT_COLUMNS: [&str; 2] = [crate::export::TS_COLUMN, "profile.identity"];

/// Raw CleverTap columns that every event table exposes through the `all_events` view (NULL
/// where a table lacks one): the fixed leading columns of CleverTap's event CSV.
pub const ALL_EVENTS_COLUMNS: &[&str] = &crate::export::FIXED_EVENT_COLUMNS;

/// The `_tapline_loads` columns a [`LoadRecord`] is read from, in its field order. Every
/// adapter's ledger table has these (and may have more, such as `replaced_by`).
pub const LEDGER_COLUMNS: [&str; 12] = [
    "load_id",
    "uri",
    "version",
    "status",
    "bytes",
    "rows_loaded",
    "rows_rejected",
    "error",
    "attempts",
    "started_at",
    "finished_at",
    "object_created_at",
];

/// [`LEDGER_COLUMNS`] as an SQL list, each column through `column` (a dialect whose timestamps
/// are not text formats them there; `str::to_string` keeps the names).
pub fn ledger_column_list(column: impl Fn(&'static str) -> String) -> String {
    LEDGER_COLUMNS.map(column).join(", ")
}

/// Rejects stored in `_tapline_rejects` per load; the ledger counts every one. The parser keeps
/// no more than this many in memory either.
pub use crate::export::limits::MAX_STORED_REJECTS;

/// The rejects of a load that are stored: the first [`MAX_STORED_REJECTS`].
pub fn stored_rejects(rejects: &[Reject]) -> &[Reject] {
    &rejects[..rejects.len().min(MAX_STORED_REJECTS)]
}

/// One version of one source object: the unit of exactly-once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceObject {
    /// Where it lives: `file:///abs/path`, `s3://bucket/key`, `gs://bucket/key`.
    pub uri: String,
    /// Its version: S3 ETag (or version id), GCS generation, or size and mtime for local files.
    pub version: String,
    /// Size in bytes, when the source knows it.
    pub bytes: Option<u64>,
}

/// Where a ledger row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadStatus {
    /// Rows committed.
    Loaded,
    /// Refused as a whole; no rows committed.
    Quarantined,
    /// An attempt failed (source or warehouse error); it will be retried.
    Failed,
    /// Was loaded, then a newer version of the same uri replaced its rows.
    Replaced,
}

impl LoadStatus {
    /// The text stored in `_tapline_loads.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadStatus::Loaded => "loaded",
            LoadStatus::Quarantined => "quarantined",
            LoadStatus::Failed => "failed",
            LoadStatus::Replaced => "replaced",
        }
    }

    /// Whether a version in this status needs no new attempt: loaded (or replaced since), or
    /// quarantined and no retry of quarantined versions was asked for.
    pub fn is_done(self, retry_quarantined: bool) -> bool {
        match self {
            LoadStatus::Loaded | LoadStatus::Replaced => true,
            LoadStatus::Quarantined => !retry_quarantined,
            LoadStatus::Failed => false,
        }
    }

    /// Parses the stored text.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "loaded" => LoadStatus::Loaded,
            "quarantined" => LoadStatus::Quarantined,
            "failed" => LoadStatus::Failed,
            "replaced" => LoadStatus::Replaced,
            _ => return None,
        })
    }
}

impl fmt::Display for LoadStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of `_tapline_loads`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadRecord {
    /// Ledger id, also written to every row as `_load_id`.
    pub load_id: i64,
    /// Source uri.
    pub uri: String,
    /// Source version.
    pub version: String,
    /// Where it stands.
    pub status: LoadStatus,
    /// Bytes read from the source.
    pub bytes: Option<u64>,
    /// Rows appended.
    pub rows_loaded: u64,
    /// Rows rejected.
    pub rows_rejected: u64,
    /// Quarantine reason or failure.
    pub error: Option<String>,
    /// Attempts made for this version.
    pub attempts: u32,
    /// When the last attempt started (UTC ISO-8601).
    pub started_at: String,
    /// When it finished.
    pub finished_at: Option<String>,
    /// When the object was created in its bucket (UTC ISO-8601), as the loader checked it;
    /// `None` when unknown: the source did not say, the time was implausible, or the row is
    /// from before freshness was recorded.
    pub object_created_at: Option<String>,
}

impl LoadRecord {
    /// Whether this version needs no new attempt: it is loaded (or replaced since), or it was
    /// quarantined and no retry of quarantined versions was asked for.
    pub fn is_done(&self, retry_quarantined: bool) -> bool {
        self.status.is_done(retry_quarantined)
    }
}

/// A ledger row's key and where it stands: what a sweep needs to know of a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerVersion {
    /// Source uri.
    pub uri: String,
    /// Source version.
    pub version: String,
    /// Where it stands (a version's current status, as `begin_load` would judge it).
    pub status: LoadStatus,
}

impl LedgerVersion {
    /// Whether this version needs no new attempt (see [`LoadRecord::is_done`]).
    pub fn is_done(&self, retry_quarantined: bool) -> bool {
        self.status.is_done(retry_quarantined)
    }
}

/// What `begin_load` found.
pub enum Begin {
    /// This version was already handled (loaded, replaced since, or quarantined): nothing to do.
    Done(LoadRecord),
    /// A transaction is open for this version.
    Started(Box<dyn LoadTransaction>),
}

/// How a file ended, handed to [`LoadTransaction::commit`].
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Commit the appended rows.
    Loaded {
        /// Bytes read from the source.
        bytes: u64,
        /// Rows appended.
        rows: u64,
        /// Rows rejected.
        rejected: u64,
    },
    /// Discard the appended rows, keep the ledger row and the rejects.
    Quarantined {
        /// Why.
        reason: String,
        /// Bytes read from the source.
        bytes: u64,
        /// Rows that passed validation (not appended).
        rows: u64,
        /// Rows rejected.
        rejected: u64,
    },
}

/// A query's answer, every value as text (NULL as `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResult {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<Option<String>>>,
}

/// Loads export files exactly once, against the ledger `_tapline_loads`.
#[async_trait]
pub trait LoadLedger: Send + Sync {
    /// Most data columns one table may have (lineage columns excluded).
    fn max_columns(&self) -> usize;

    /// Opens the transaction for one object version, unless the ledger says it is done.
    /// `retry_quarantined` lets a quarantined version be tried again.
    async fn begin_load(
        &self,
        object: &SourceObject,
        retry_quarantined: bool,
    ) -> Result<Begin, WarehouseError>;

    /// Records that an attempt failed (after its transaction was abandoned).
    async fn record_failure(
        &self,
        object: &SourceObject,
        error: &str,
    ) -> Result<(), WarehouseError>;

    /// The most recent ledger rows, newest first.
    async fn recent_loads(&self, limit: usize) -> Result<Vec<LoadRecord>, WarehouseError>;

    /// Every version the ledger holds for uris starting with `uri_prefix`, each with its
    /// current status, in one read: a sweep asks once instead of once per listed object.
    /// A failed read is an error, never an empty answer.
    async fn ledger_versions(&self, uri_prefix: &str)
    -> Result<Vec<LedgerVersion>, WarehouseError>;

    /// Ledger rows whose rows committed (loaded, or replaced since) at or after `since` (UTC
    /// ISO-8601), newest first, at most `limit`: what freshness (from the rows with a known
    /// [`LoadRecord::object_created_at`]) and the loads and rejects per day are computed from.
    async fn commits_since(
        &self,
        since: &str,
        limit: usize,
    ) -> Result<Vec<LoadRecord>, WarehouseError>;
}

/// Keeps one value per key in `_tapline_state`: the API puller's checkpoints.
#[async_trait]
pub trait Checkpoints: Send + Sync {
    /// The value stored under `key`, if any.
    async fn get_state(&self, key: &str) -> Result<Option<String>, WarehouseError>;

    /// Stores `value` (JSON text) under `key`, replacing what was there, and commits it before
    /// returning: a checkpoint must survive the process.
    async fn put_state(&self, key: &str, value: &str) -> Result<(), WarehouseError>;
}

/// Writes tables whose columns Tapline defines ([`FixedTable`]: counts, campaigns, …).
#[async_trait]
pub trait FixedTables: Send + Sync {
    /// Writes `rows` (values in `table.columns` order, as text) into a fixed-schema table,
    /// creating it when missing; a row whose key (`table.key`) is already there replaces it.
    /// All rows commit together. Returns the rows written.
    async fn replace_rows(
        &self,
        table: &FixedTable,
        rows: &[Vec<Option<String>>],
    ) -> Result<u64, WarehouseError>;
}

/// Answers read-only SQL.
#[async_trait]
pub trait SqlQuery: Send + Sync {
    /// Runs one read-only SQL statement (status reports, `tapline query`, the demo, tests):
    /// more than one statement, or one that would write, is an error.
    async fn query(&self, sql: &str) -> Result<QueryResult, WarehouseError>;

    /// Per pinned column (see [`column_types`]), how many non-NULL raw values do not fit the
    /// pinned kind (NULL in the typed view, kept in the raw table): what `tapline status`
    /// shows. Columns whose values all fit are left out. A warehouse without typed views
    /// answers nothing.
    async fn column_misfits(&self) -> Result<Vec<ColumnMisfit>, WarehouseError> {
        Ok(Vec::new())
    }
}

/// Values of a pinned column that do not fit its pinned kind (see [`SqlQuery::column_misfits`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMisfit {
    /// The raw table.
    pub table: String,
    /// The column (as the table names it).
    pub column: String,
    /// The pinned kind.
    pub kind: column_kinds::ColumnKind,
    /// Non-NULL raw values that do not fit it.
    pub values: u64,
}

/// A whole warehouse: every capability, as the loader, the puller, the relay and the CLI use
/// it. Code that needs one capability only may take that trait instead.
pub trait Warehouse: LoadLedger + Checkpoints + FixedTables + SqlQuery {
    /// A description for logs and summaries, without secrets (`sqlite:///tmp/w.sqlite`).
    fn describe(&self) -> String;
}

/// The type of a [`FixedTable`] column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// Text.
    Text,
    /// A 64-bit integer (given as decimal text).
    Integer,
}

/// A table whose columns Tapline defines (`event_counts`, `campaigns`, …), unlike the event
/// tables whose columns follow the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedTable {
    /// The table name.
    pub name: &'static str,
    /// Column names and types, in row order.
    pub columns: &'static [(&'static str, ColumnType)],
    /// The columns that identify a row (its primary key); a prefix or subset of `columns`.
    pub key: &'static [&'static str],
}

impl FixedTable {
    /// A row of the wrong width, or a key column missing from the columns.
    pub fn check(&self, rows: &[Vec<Option<String>>]) -> Result<(), WarehouseError> {
        let bad = |reason: String| WarehouseError::Operation {
            operation: "replace rows",
            retryable: false,
            source: reason.into(),
        };
        if let Some(k) = self
            .key
            .iter()
            .find(|k| !self.columns.iter().any(|(c, _)| c == *k))
        {
            return Err(bad(format!(
                "key column {k} is not a column of {}",
                self.name
            )));
        }
        if let Some(row) = rows.iter().find(|r| r.len() != self.columns.len()) {
            return Err(bad(format!(
                "a row of {} has {} values for {} columns",
                self.name,
                row.len(),
                self.columns.len()
            )));
        }
        Ok(())
    }

    /// Checks `rows`, then gives the dialect's `CREATE TABLE IF NOT EXISTS` and upsert
    /// statements (see [`Self::create_sql`] and [`Self::upsert_sql`]).
    pub fn replace_statements(
        &self,
        rows: &[Vec<Option<String>>],
        ident: fn(&str) -> String,
        integer_type: &str,
        value: fn(usize, ColumnType) -> String,
    ) -> Result<(String, String), WarehouseError> {
        self.check(rows)?;
        Ok((
            self.create_sql(ident, integer_type),
            self.upsert_sql(ident, value),
        ))
    }

    /// `CREATE TABLE IF NOT EXISTS` in a dialect: its identifier quoting and integer type.
    pub fn create_sql(&self, ident: fn(&str) -> String, integer_type: &str) -> String {
        let mut defs: Vec<String> = self
            .columns
            .iter()
            .map(|(name, kind)| {
                let sql_type = match kind {
                    ColumnType::Text => "TEXT",
                    ColumnType::Integer => integer_type,
                };
                let not_null = if self.key.contains(name) {
                    " NOT NULL"
                } else {
                    ""
                };
                format!("{} {sql_type}{not_null}", ident(name))
            })
            .collect();
        let key: Vec<String> = self.key.iter().map(|k| ident(k)).collect();
        defs.push(format!("PRIMARY KEY ({})", key.join(", ")));
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            ident(self.name),
            defs.join(", ")
        )
    }

    /// The insert-or-replace statement in a dialect; `value(i, type)` is the placeholder of the
    /// i-th (0-based) value, cast to the column's type.
    pub fn upsert_sql(
        &self,
        ident: fn(&str) -> String,
        value: fn(usize, ColumnType) -> String,
    ) -> String {
        let names: Vec<String> = self.columns.iter().map(|(c, _)| ident(c)).collect();
        let values: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, kind))| value(i, *kind))
            .collect();
        let key: Vec<String> = self.key.iter().map(|k| ident(k)).collect();
        let updates: Vec<String> = self
            .columns
            .iter()
            .filter(|(c, _)| !self.key.contains(c))
            .map(|(c, _)| format!("{0} = excluded.{0}", ident(c)))
            .collect();
        let action = if updates.is_empty() {
            "NOTHING".to_string()
        } else {
            format!("UPDATE SET {}", updates.join(", "))
        };
        format!(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO {action}",
            ident(self.name),
            names.join(", "),
            values.join(", "),
            key.join(", ")
        )
    }
}

/// A `_tapline_state` value (a checkpoint) written by a load's commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateWrite {
    /// The state key.
    pub key: String,
    /// The value (JSON text), replacing what was there.
    pub value: String,
}

/// One object version's load. Dropping it without [`Self::commit`] rolls everything back.
#[async_trait]
pub trait LoadTransaction: Send {
    /// The ledger id rows are stamped with.
    fn load_id(&self) -> i64;

    /// Has [`Self::commit`] write `state` in the load's own transaction: the rows, the ledger
    /// row and the state become visible together or not at all, so an API page and the
    /// checkpoint past it cannot part. A later call replaces an earlier one. Written whatever
    /// the outcome, so a caller that must not move its checkpoint past a quarantined object
    /// does not call this for one.
    fn write_state_at_commit(&mut self, state: StateWrite);

    /// Has [`Self::commit`] record, in the ledger row, when the object was created in its
    /// bucket (UTC ISO-8601, already checked by the caller): the start of its freshness
    /// latency. Not called, or `None`: unknown.
    fn record_object_created_at(&mut self, created_at: Option<String>);

    /// Appends validated rows, creating tables and columns as needed.
    async fn append(&mut self, batch: RowBatch) -> Result<(), WarehouseError>;

    /// Ends the load: rows, rejects and ledger row become visible together.
    async fn commit(
        self: Box<Self>,
        outcome: Outcome,
        rejects: Vec<Reject>,
    ) -> Result<Committed, WarehouseError>;
}

/// What [`LoadTransaction::commit`] came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// This load's rows and ledger row are committed.
    Ours(LoadRecord),
    /// Another loader committed this version first (possible where loads take no lock, as on
    /// BigQuery); this load's rows were discarded. The record is the winner's ledger row, so a
    /// summary counts the file once, as already loaded.
    Theirs(LoadRecord),
}

impl Committed {
    /// The version's ledger row, whoever committed it.
    pub fn record(&self) -> &LoadRecord {
        match self {
            Committed::Ours(record) | Committed::Theirs(record) => record,
        }
    }

    /// The ledger row, owned.
    pub fn into_record(self) -> LoadRecord {
        match self {
            Committed::Ours(record) | Committed::Theirs(record) => record,
        }
    }
}

/// A warehouse operation that failed. Adapters decide what is worth a retry.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    /// The warehouse could not be opened or reached.
    #[error("cannot open warehouse {target}")]
    Open {
        /// What was being opened (no secrets).
        target: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// A statement failed.
    #[error("warehouse {operation} failed")]
    Operation {
        /// What was being done.
        operation: &'static str,
        /// Whether trying again later may work (busy, locked, connection lost).
        retryable: bool,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// A table would pass the warehouse's column limit.
    #[error("table {table} would have {count} columns; the warehouse allows {limit}")]
    TooManyColumns {
        /// The table.
        table: String,
        /// Columns it would have.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The warehouse URL is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl WarehouseError {
    /// Whether the same operation may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            WarehouseError::Open { .. } => true,
            WarehouseError::Operation { retryable, .. } => *retryable,
            WarehouseError::TooManyColumns { .. } | WarehouseError::Config(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_stores_its_first_ten_thousand_rejects() {
        let reject = |line| Reject {
            line,
            column: None,
            reason: "bad".to_string(),
            raw: String::new(),
        };
        let many: Vec<Reject> = (1..=10_001).map(reject).collect();
        let stored = stored_rejects(&many);
        assert_eq!(stored.len(), 10_000);
        assert_eq!((stored[0].line, stored[9_999].line), (1, 10_000));
        let few: Vec<Reject> = (1..=3).map(reject).collect();
        assert_eq!(stored_rejects(&few), &few[..]);
    }

    #[test]
    fn the_ledger_column_list_follows_load_record_order() {
        assert_eq!(
            ledger_column_list(str::to_string),
            "load_id, uri, version, status, bytes, rows_loaded, rows_rejected, error, attempts, \
             started_at, finished_at, object_created_at"
        );
        assert_eq!(
            ledger_column_list(|c| format!("t.{c}")).split(", ").nth(9),
            Some("t.started_at")
        );
    }
}
