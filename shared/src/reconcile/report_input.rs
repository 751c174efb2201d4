//! What the completeness page shows, gathered from a warehouse once for every caller:
//! `tapline report` and the scheduled puller's `report` job both call [`gather`], then
//! [`super::report::render`]. Read only: verdicts are not recorded, nothing is alerted.

use super::gather::{ReconcileError, Request, reconcile};
use super::report::ReportInput;
use crate::warehouse::Warehouse;

/// Ledger rows read for the page's list of quarantined and failed files (newest first).
pub const RECENT_LOADS: usize = 500;

/// The range's verdicts, the recent ledger, freshness per day and (with the API features) the unfinished pulls,
/// as the page's input; `timezone_name` is shown as given. Sections a caller adds (the relay's
/// dead letters) are left empty.
pub async fn gather(
    warehouse: &dyn Warehouse,
    request: &Request,
    timezone_name: &str,
) -> Result<ReportInput, ReconcileError> {
    let days = reconcile(warehouse, request).await?;
    let loads = warehouse
        .recent_loads(RECENT_LOADS)
        .await
        .map_err(|source| ReconcileError::Warehouse {
            step: "read the recent loads",
            source,
        })?;
    let freshness = crate::export_loader::freshness::per_day(
        warehouse,
        request.first,
        request.last,
        &request.timezone,
    )
    .await
    .map_err(|source| ReconcileError::Warehouse {
        step: "read the loads' freshness",
        source,
    })?;
    Ok(ReportInput {
        target: warehouse.describe(),
        timezone: timezone_name.to_string(),
        first: request.first,
        last: request.last,
        made_at: crate::time::now_utc(),
        days,
        loads,
        unfinished_pulls: unfinished_pulls(warehouse).await?,
        relay_dead_letters: None,
        freshness,
    })
}

/// API pulls left unfinished, one line each.
#[cfg(feature = "clevertap-api")]
async fn unfinished_pulls(warehouse: &dyn Warehouse) -> Result<Vec<String>, ReconcileError> {
    use crate::api_puller::PullError;
    let unfinished = crate::api_puller::checkpoint::unfinished(warehouse)
        .await
        .map_err(|e| match e {
            PullError::Warehouse(source) => ReconcileError::Warehouse {
                step: "read the pull checkpoints",
                source,
            },
            other => ReconcileError::Answer {
                what: "the pull checkpoints",
                detail: crate::error::chain::error_chain(&other),
            },
        })?;
    Ok(unfinished
        .iter()
        .map(|c| {
            format!(
                "{} {} {}: {} pages, {} rows so far (last written {})",
                c.kind, c.event, c.window, c.checkpoint.pages, c.checkpoint.rows, c.updated_at
            )
        })
        .collect())
}

/// Without the API features there are no pulls.
#[cfg(not(feature = "clevertap-api"))]
async fn unfinished_pulls(_warehouse: &dyn Warehouse) -> Result<Vec<String>, ReconcileError> {
    Ok(Vec::new())
}
