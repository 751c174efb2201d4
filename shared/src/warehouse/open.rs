//! A warehouse URL to its adapter: the one place that knows every adapter and its feature.

#[cfg(feature = "bigquery")]
use super::bigquery;
#[cfg(feature = "postgres")]
use super::postgres;
#[cfg(feature = "sqlite")]
use super::sqlite;
use std::sync::Arc;

use super::column_types::ColumnTypes;
use super::{Warehouse, WarehouseError, url_redaction};
use crate::config::ConfigError;

/// What a caller sets on a warehouse beyond its URL.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Column types to pin for the typed views at each load's commit (`None`: keep the stored
    /// pins). See [`super::column_types`].
    pub column_types: Option<Arc<ColumnTypes>>,
}

impl OpenOptions {
    /// The functions' options, read once at start: column types from
    /// [`super::column_types::ENV_COLUMN_TYPES`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            column_types: ColumnTypes::from_vars(|name| std::env::var(name).ok())?.map(Arc::new),
        })
    }
}

/// Opens the warehouse a URL names: `sqlite://PATH[?journal=rollback|wal]`, relative or
/// absolute (`sqlite:///abs/path`), `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?schema=S]`
/// (`&bi_schema=` names the typed views' schema), or `bigquery://PROJECT/DATASET[?location=L]`
/// (`&bi_dataset=` their dataset). Schemes match in any case (`Postgres://`). Errors
/// show the URL through [`url_redaction::redact_url`] only.
pub async fn open(url: &str) -> Result<Box<dyn Warehouse>, WarehouseError> {
    open_with(url, &OpenOptions::default()).await
}

/// The SQLite warehouse of a `sqlite://PATH[?journal=rollback|wal]` URL, for what only SQLite
/// does (`tapline retype`).
#[cfg(feature = "sqlite")]
pub async fn open_sqlite(url: &str) -> Result<sqlite::SqliteWarehouse, WarehouseError> {
    let bad = |reason: &str| ConfigError::Warehouse {
        url: url_redaction::redact_url(url),
        reason: reason.to_string(),
    };
    let rest = url
        .split_once(':')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("sqlite"))
        .map(|(_, rest)| rest)
        .ok_or_else(|| bad("expected a SQLite URL such as sqlite://tapline.sqlite"))?;
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
    sqlite::SqliteWarehouse::open(path, journal).await
}

/// [`open`] with [`OpenOptions`].
pub async fn open_with(
    url: &str,
    options: &OpenOptions,
) -> Result<Box<dyn Warehouse>, WarehouseError> {
    #[cfg_attr(
        not(any(feature = "sqlite", feature = "postgres", feature = "bigquery")),
        allow(unused_variables)
    )]
    let types = || options.column_types.clone();
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
        "sqlite" => Ok(Box::new(open_sqlite(url).await?.with_column_types(types()))),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Ok(Box::new(
            postgres::PostgresWarehouse::open(url)
                .await?
                .with_column_types(types()),
        )),
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
        "bigquery" => Ok(Box::new(
            bigquery::BigQueryWarehouse::open(url)
                .await?
                .with_column_types(types()),
        )),
        #[cfg(not(feature = "bigquery"))]
        "bigquery" => Err(bad("this build has no BigQuery support (feature bigquery)").into()),
        _ => Err(bad(
            "unknown scheme: use sqlite://FILE, postgres://USER@HOST/DB or bigquery://PROJECT/DATASET",
        )
        .into()),
    }
}
