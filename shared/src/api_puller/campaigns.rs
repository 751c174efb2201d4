//! `pull campaigns`: the campaigns of a date range into `campaigns`, and each one's report into
//! `campaign_reports`. A report that is not ready (the campaign has not completed) is counted as
//! such and asked again on the next run, not treated as a failure.

use jiff::civil::Date;
use serde_json::Value;

use super::PullError;
use crate::clevertap::ClevertapClient;
use crate::clevertap::campaigns::{Report, campaign_windows};
use crate::time::now_utc;
use crate::warehouse::{ColumnType, FixedTable, Warehouse};

/// `campaigns`: one row per campaign (target), its whole JSON kept in `target`.
pub const CAMPAIGNS: FixedTable = FixedTable {
    name: "campaigns",
    columns: &[
        ("id", ColumnType::Text),
        ("name", ColumnType::Text),
        ("target", ColumnType::Text),
        ("pulled_at", ColumnType::Text),
    ],
    key: &["id"],
};

/// `campaign_reports`: one row per campaign whose report is ready; the usual figures as
/// columns, the whole `result` kept as JSON text.
pub const CAMPAIGN_REPORTS: FixedTable = FixedTable {
    name: "campaign_reports",
    columns: &[
        ("campaign_id", ColumnType::Text),
        ("sent", ColumnType::Integer),
        ("viewed", ColumnType::Integer),
        ("clicked", ColumnType::Integer),
        ("result", ColumnType::Text),
        ("pulled_at", ColumnType::Text),
    ],
    key: &["campaign_id"],
};

/// What a campaigns pull came to.
#[derive(Debug, Default)]
pub struct CampaignsReport {
    /// Campaigns written.
    pub campaigns: usize,
    /// Reports written.
    pub reports_ready: usize,
    /// Campaigns whose report is not ready yet, with CleverTap's words.
    pub not_ready: Vec<(String, String)>,
    /// Campaigns whose report could not be read.
    pub failed: Vec<(String, PullError)>,
}

fn campaign_id(target: &Value) -> Option<String> {
    match target.get("id")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Pulls the campaigns of `from..=to` (windows of at most 31 days) and their reports.
pub async fn pull_campaigns(
    client: &ClevertapClient,
    warehouse: &dyn Warehouse,
    from: Date,
    to: Date,
) -> Result<CampaignsReport, PullError> {
    let mut targets: Vec<(String, Value)> = Vec::new();
    for (start, end) in campaign_windows(from, to) {
        for target in client.campaigns(start, end).await? {
            if let Some(id) = campaign_id(&target)
                && !targets.iter().any(|(seen, _)| *seen == id)
            {
                targets.push((id, target));
            }
        }
    }
    let pulled_at = now_utc();
    let rows: Vec<Vec<Option<String>>> = targets
        .iter()
        .map(|(id, target)| {
            vec![
                Some(id.clone()),
                target
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                Some(target.to_string()),
                Some(pulled_at.clone()),
            ]
        })
        .collect();
    let mut report = CampaignsReport::default();
    if !rows.is_empty() {
        report.campaigns = warehouse.replace_rows(&CAMPAIGNS, &rows).await? as usize;
    }

    let mut tasks = tokio::task::JoinSet::new();
    for (id, target) in &targets {
        let (client, id, raw_id) = (client.clone(), id.clone(), target["id"].clone());
        tasks.spawn(async move { (id, client.campaign_report(&raw_id).await) });
    }
    let mut ready = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((id, Ok(Report::Ready(result)))) => ready.push((id, result)),
            Ok((id, Ok(Report::NotReady(why)))) => report.not_ready.push((id, why)),
            Ok((id, Err(e))) => report.failed.push((id, e.into())),
            Err(e) => tracing::warn!(error = %e, "A report task stopped unexpectedly."),
        }
    }
    ready.sort_by(|a, b| a.0.cmp(&b.0));
    report.not_ready.sort();
    let figure = |result: &Value, name: &str| result.get(name).and_then(Value::as_i64);
    let rows: Vec<Vec<Option<String>>> = ready
        .iter()
        .map(|(id, result)| {
            vec![
                Some(id.clone()),
                figure(result, "sent").map(|n| n.to_string()),
                figure(result, "viewed").map(|n| n.to_string()),
                figure(result, "clicked").map(|n| n.to_string()),
                Some(result.to_string()),
                Some(pulled_at.clone()),
            ]
        })
        .collect();
    if !rows.is_empty() {
        report.reports_ready = warehouse.replace_rows(&CAMPAIGN_REPORTS, &rows).await? as usize;
    }
    Ok(report)
}
