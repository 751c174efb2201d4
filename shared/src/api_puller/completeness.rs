//! Reconcile with alerts: the days [`crate::reconcile`] finds not complete go to the alerts path
//! (Slack, or the webhook relay's alerts route) with their figures and missing chunks, once: a
//! day alerted before is alerted again only when its status changes (or its alert failed).
//! `tapline reconcile` and the scheduled puller's `reconcile` job both run this.

use super::alert_notifiers::{Alert, AlertNotifier, NotifyError};
use crate::reconcile::{self, DayReport, ReconcileError, Request};

/// The `rule` completeness alerts carry (count rules have their own names).
pub const COMPLETENESS_RULE: &str = "completeness";

/// What a reconcile run did.
#[derive(Debug)]
pub struct ReconcileRun {
    /// Every (event, day) judged.
    pub reports: Vec<DayReport>,
    /// Alerts handed to the notifier in this run.
    pub alerted: usize,
    /// Alerts the notifier could not take, with the day's event and date.
    pub failures: Vec<(String, jiff::civil::Date, NotifyError)>,
}

/// The alert of a day that needs attention.
pub fn completeness_alert(report: &DayReport) -> Alert {
    Alert {
        rule: COMPLETENESS_RULE.to_string(),
        event: report.event_name.clone(),
        day: report.day,
        status: report.status.as_str().to_string(),
        count: Some(report.figures.rows()),
        baseline: report.figures.clevertap_count.map(|c| c as f64),
        message: format!(
            "{} on {} is not complete: {}",
            report.event_name, report.day, report.status
        ),
    }
}

/// Reconciles `request`, alerts the days that need attention and were not alerted with the
/// same status before, and records every verdict with whether its alert went out.
pub async fn reconcile_and_alert(
    warehouse: &dyn crate::warehouse::Warehouse,
    request: &Request,
    notifier: Option<&dyn AlertNotifier>,
) -> Result<ReconcileRun, ReconcileError> {
    let before = reconcile::previous(warehouse, request).await?;
    let reports = reconcile::reconcile(warehouse, request).await?;
    let mut notified = Vec::with_capacity(reports.len());
    let mut failures = Vec::new();
    let mut alerted = 0;
    for report in &reports {
        let earlier = before.get(&(report.event_key.clone(), report.day));
        let already =
            earlier.is_some_and(|p| p.status == report.status.as_str() && p.notified == "yes");
        let outcome = match notifier {
            _ if !report.status.needs_attention() => "no",
            _ if already => "yes",
            None => "no",
            Some(notifier) => match notifier.notify(&completeness_alert(report)).await {
                Ok(()) => {
                    alerted += 1;
                    "yes"
                }
                Err(e) => {
                    tracing::warn!(event = %report.event_name, day = %report.day, error = %crate::error::chain::error_chain(&e), "A completeness alert could not be posted.");
                    failures.push((report.event_name.clone(), report.day, e));
                    "failed"
                }
            },
        };
        notified.push(outcome);
    }
    reconcile::record(warehouse, &reports, &notified).await?;
    Ok(ReconcileRun {
        reports,
        alerted,
        failures,
    })
}
