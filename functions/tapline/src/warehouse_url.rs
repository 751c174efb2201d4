//! The warehouse the command line opens: `--warehouse` (or `TAPLINE_WAREHOUSE`) with its user's
//! password from the environment, so a password stays out of `ps` and shell history.

use tapline::warehouse::{self, Warehouse};

/// Opens the warehouse `url` names, its user's password from `TAPLINE_WAREHOUSE_PASSWORD` (or
/// `TAPLINE_WAREHOUSE_SECRET_ARN`), else libpq's `PGPASSWORD` for a PostgreSQL URL without one.
/// Errors show the URL redacted.
pub async fn open_warehouse(
    url: &str,
) -> Result<Box<dyn Warehouse>, Box<dyn std::error::Error + Send + Sync>> {
    let env = |name: &str| std::env::var(name).ok();
    let url = tapline::secret::with_configured_password(url, env).await?;
    let url = tapline::secret::with_libpq_password(&url, env);
    Ok(warehouse::open::open(&url).await?)
}
