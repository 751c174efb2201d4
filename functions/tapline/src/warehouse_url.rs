//! The warehouse the command line opens: `--warehouse` (or `TAPLINE_WAREHOUSE`) with its user's
//! password from the environment, so a password stays out of `ps` and shell history.

use std::sync::Arc;

use tapline::config::ConfigError;
use tapline::warehouse::Warehouse;
use tapline::warehouse::column_types::ColumnTypes;
use tapline::warehouse::open::{OpenOptions, open_with};

use crate::cli::ColumnTypesArg;

/// Opens the warehouse `url` names, its user's password from `TAPLINE_WAREHOUSE_PASSWORD` (or
/// `TAPLINE_WAREHOUSE_SECRET_ARN`), else libpq's `PGPASSWORD` for a PostgreSQL URL without one.
/// Errors show the URL redacted.
pub async fn open_warehouse(
    url: &str,
    options: &OpenOptions,
) -> Result<Box<dyn Warehouse>, Box<dyn std::error::Error + Send + Sync>> {
    let env = |name: &str| std::env::var(name).ok();
    let url = tapline::secret::with_configured_password(url, env).await?;
    let url = tapline::secret::with_libpq_password(&url, env);
    Ok(open_with(&url, options).await?)
}

impl ColumnTypesArg {
    /// The open options of a command that loads: `--column-types` read and checked once, before
    /// anything is listed or loaded.
    pub fn open_options(&self) -> Result<OpenOptions, ConfigError> {
        let column_types = match &self.column_types {
            Some(path) => Some(Arc::new(ColumnTypes::read_file(path)?)),
            None => None,
        };
        Ok(OpenOptions { column_types })
    }
}
