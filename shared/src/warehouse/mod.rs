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
//! - `_tapline_state` keeps one value per key (checkpoints), committed when `put_state` returns.

#[cfg(feature = "bigquery")]
pub mod bigquery;
pub mod catalog;
pub mod naming;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;
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
    "event_counts",
    "profile_counts",
    "campaigns",
    "campaign_reports",
    "webhook_events",
];

/// Raw CleverTap columns that every event table exposes through the `all_events` view (NULL
/// where a table lacks one): the fixed leading columns of CleverTap's event CSV.
pub const ALL_EVENTS_COLUMNS: &[&str] = &crate::export::FIXED_EVENT_COLUMNS;

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

/// A warehouse that loads export files exactly once.
#[async_trait]
pub trait Warehouse: Send + Sync {
    /// A description for logs and summaries, without secrets (`sqlite:///tmp/w.sqlite`).
    fn describe(&self) -> String;

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

    /// Runs one read-only SQL statement (status reports, `tapline query`, the demo, tests):
    /// more than one statement, or one that would write, is an error.
    async fn query(&self, sql: &str) -> Result<QueryResult, WarehouseError>;

    /// Every version the ledger holds for uris starting with `uri_prefix`, each with its
    /// current status, in one read: a sweep asks once instead of once per listed object.
    /// A failed read is an error, never an empty answer.
    async fn ledger_versions(
        &self,
        uri_prefix: &str,
    ) -> Result<Vec<LedgerVersion>, WarehouseError> {
        let _ = uri_prefix;
        Err(unsupported("ledger_versions"))
    }

    /// The value stored under `key` in `_tapline_state` (API puller checkpoints), if any.
    async fn get_state(&self, key: &str) -> Result<Option<String>, WarehouseError> {
        let _ = key;
        Err(unsupported("get_state"))
    }

    /// Stores `value` (JSON text) under `key` in `_tapline_state`, replacing what was there,
    /// and commits it before returning: a checkpoint must survive the process.
    async fn put_state(&self, key: &str, value: &str) -> Result<(), WarehouseError> {
        let _ = (key, value);
        Err(unsupported("put_state"))
    }

    /// Writes `rows` (values in `table.columns` order, as text) into a fixed-schema table,
    /// creating it when missing; a row whose key (`table.key`) is already there replaces it.
    /// All rows commit together. Returns the rows written.
    async fn replace_rows(
        &self,
        table: &FixedTable,
        rows: &[Vec<Option<String>>],
    ) -> Result<u64, WarehouseError> {
        let _ = (table, rows);
        Err(unsupported("replace_rows"))
    }
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

/// The error of a [`Warehouse`] method an adapter does not implement (yet).
pub fn unsupported(operation: &'static str) -> WarehouseError {
    WarehouseError::Operation {
        operation,
        retryable: false,
        source: format!("{operation} is not supported by this warehouse").into(),
    }
}

/// One object version's load. Dropping it without [`Self::commit`] rolls everything back.
#[async_trait]
pub trait LoadTransaction: Send {
    /// The ledger id rows are stamped with.
    fn load_id(&self) -> i64;

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

/// Opens the warehouse a URL names: `sqlite://PATH[?journal=rollback|wal]`, relative or
/// absolute (`sqlite:///abs/path`), `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?schema=S]`, or
/// `bigquery://PROJECT/DATASET[?location=L]`. Schemes match in any case (`Postgres://`). Errors
/// show the URL through [`url_redaction::redact_url`] only.
pub async fn open(url: &str) -> Result<Box<dyn Warehouse>, WarehouseError> {
    let bad = |reason: &str| ConfigError::Warehouse {
        url: url_redaction::redact_url(url),
        reason: reason.to_string(),
    };
    let (scheme, rest) = url
        .split_once(':')
        .ok_or_else(|| bad("expected a URL such as sqlite://tapline.sqlite"))?;
    let scheme = scheme.to_ascii_lowercase();
    // Adapters (and the PostgreSQL driver) see the scheme in lowercase.
    let url = &format!("{scheme}:{rest}");
    #[cfg(not(feature = "sqlite"))]
    let _ = rest;
    match scheme.as_str() {
        #[cfg(feature = "sqlite")]
        "sqlite" => {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            if path.is_empty() {
                return Err(bad("no file: use sqlite://PATH, e.g. sqlite://tapline.sqlite").into());
            }
            let mut journal = sqlite::Journal::default();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("journal", value)) => {
                        journal = sqlite::Journal::parse(value)
                            .ok_or_else(|| bad("journal must be rollback or wal"))?;
                    }
                    _ => return Err(bad("unknown parameter: only journal=rollback|wal").into()),
                }
            }
            Ok(Box::new(
                sqlite::SqliteWarehouse::open(path, journal).await?,
            ))
        }
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Ok(Box::new(postgres::PostgresWarehouse::open(url).await?)),
        #[cfg(not(feature = "postgres"))]
        "postgres" | "postgresql" => {
            Err(bad("this build has no PostgreSQL support (feature postgres)").into())
        }
        // BigQuery takes Google credentials, never a password: one in the URL is a mistake
        // whose text must not reach the adapter's messages.
        "bigquery" if url.contains('@') || url_redaction::has_secret_parameter(url) => Err(bad(
            "a BigQuery URL carries no credentials (Application Default Credentials are used)",
        )
        .into()),
        #[cfg(feature = "bigquery")]
        "bigquery" => Ok(Box::new(bigquery::BigQueryWarehouse::open(url).await?)),
        #[cfg(not(feature = "bigquery"))]
        "bigquery" => Err(bad("this build has no BigQuery support (feature bigquery)").into()),
        _ => Err(bad(
            "unknown scheme: use sqlite://FILE, postgres://USER@HOST/DB or bigquery://PROJECT/DATASET",
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An adapter that implements only the required methods, like one written before the
    /// state methods existed.
    struct Minimal;

    #[async_trait]
    impl Warehouse for Minimal {
        fn describe(&self) -> String {
            "minimal".into()
        }
        fn max_columns(&self) -> usize {
            10
        }
        async fn begin_load(&self, _: &SourceObject, _: bool) -> Result<Begin, WarehouseError> {
            Err(unsupported("begin_load"))
        }
        async fn record_failure(&self, _: &SourceObject, _: &str) -> Result<(), WarehouseError> {
            Ok(())
        }
        async fn recent_loads(&self, _: usize) -> Result<Vec<LoadRecord>, WarehouseError> {
            Ok(Vec::new())
        }
        async fn query(&self, _: &str) -> Result<QueryResult, WarehouseError> {
            Ok(QueryResult::default())
        }
    }

    #[tokio::test]
    async fn state_methods_default_to_a_clear_non_retryable_error() {
        let err = Minimal.get_state("k").await.unwrap_err();
        assert!(!err.is_retryable());
        assert_eq!(
            crate::load::error_chain(&err),
            "warehouse get_state failed: get_state is not supported by this warehouse"
        );
        let err = Minimal.put_state("k", "{}").await.unwrap_err();
        assert_eq!(
            crate::load::error_chain(&err),
            "warehouse put_state failed: put_state is not supported by this warehouse"
        );
    }
}
