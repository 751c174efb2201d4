//! Count-based alerts: rules ([`super::alert_rules`]) checked against `event_counts`, each
//! breach handed to an [`AlertNotifier`] (Slack directly, or the webhook relay's alerts route)
//! with the figures, and every rule's result stored in `alert_runs`. `tapline alerts` runs them
//! from a file; the scheduled puller runs them as its `alerts` job after `counts`, with the
//! same JSON in `TAPLINE_ALERT_RULES`.

use jiff::civil::Date;

use super::alert_notifiers::{AlertNotifier, NotifyError};
pub use super::alert_rules::{
    AlertResult, AlertRule, AlertStatus, Condition, RulesError, parse_rules,
};
use crate::time::now_utc;
use crate::warehouse::{ColumnType, FixedTable, Warehouse, WarehouseError};

/// `alert_runs`: one row per (rule, day), replaced when the day is checked again.
pub const ALERT_RUNS: FixedTable = FixedTable {
    name: "alert_runs",
    columns: &[
        ("rule", ColumnType::Text),
        ("day", ColumnType::Text),
        ("event_name", ColumnType::Text),
        ("status", ColumnType::Text),
        ("count", ColumnType::Integer),
        ("baseline", ColumnType::Text),
        ("message", ColumnType::Text),
        ("notified", ColumnType::Text),
        ("checked_at", ColumnType::Text),
    ],
    key: &["rule", "day"],
};

async fn daily_counts(
    warehouse: &dyn Warehouse,
    event: &str,
    from: Date,
    to: Date,
) -> Result<Vec<(String, u64)>, WarehouseError> {
    let sql = format!(
        "SELECT day, count FROM event_counts WHERE event_name = '{}' AND day >= '{from}' AND day <= '{to}'",
        event.replace('\'', "''")
    );
    let result = warehouse.query(&sql).await?;
    Ok(result
        .rows
        .into_iter()
        .filter_map(|r| Some((r.first()?.clone()?, r.get(1)?.as_deref()?.parse().ok()?)))
        .collect())
}

/// Checks one rule for `day` against `event_counts`.
pub async fn check_rule(
    warehouse: &dyn Warehouse,
    rule: &AlertRule,
    day: Date,
) -> Result<AlertResult, WarehouseError> {
    let today = daily_counts(warehouse, &rule.event, day, day).await?;
    let count = today.first().map(|(_, n)| *n);
    let subject = format!("{} on {day}", rule.event);
    let (status, baseline, message) = match (&rule.condition, count) {
        (_, None) => (
            AlertStatus::NoData,
            None,
            format!("{subject}: no count in event_counts (run `tapline pull counts`)."),
        ),
        (Condition::Below { count: floor }, Some(n)) => {
            let breached = n < *floor;
            let verb = if breached { "below" } else { "not below" };
            (
                if breached {
                    AlertStatus::Breached
                } else {
                    AlertStatus::Ok
                },
                Some(*floor as f64),
                format!("{subject} was {n}, {verb} {floor} (rule {}).", rule.name),
            )
        }
        (Condition::BelowTrailingMean { percent, days }, Some(n)) => {
            let start = day
                .checked_sub(jiff::Span::new().days(i64::from(*days)))
                .unwrap_or(day);
            let end = day.yesterday().unwrap_or(day);
            let before = daily_counts(warehouse, &rule.event, start, end).await?;
            if before.is_empty() {
                (
                    AlertStatus::NoData,
                    None,
                    format!("{subject}: no counts in the {days} days before to compare with."),
                )
            } else {
                let mean = before.iter().map(|(_, c)| *c as f64).sum::<f64>() / before.len() as f64;
                let drop = if mean > 0.0 {
                    (mean - n as f64) / mean * 100.0
                } else {
                    0.0
                };
                let breached = drop > *percent;
                (
                    if breached {
                        AlertStatus::Breached
                    } else {
                        AlertStatus::Ok
                    },
                    Some(mean),
                    format!(
                        "{subject} was {n}, {drop:.1}% below its trailing {}-day mean of {mean:.1} \
                         (rule {}: more than {percent}% below is a breach).",
                        before.len(),
                        rule.name
                    ),
                )
            }
        }
    };
    Ok(AlertResult {
        rule: rule.clone(),
        day,
        status,
        count,
        baseline,
        message,
    })
}

/// A breach that could not be handed to the notifier.
#[derive(Debug)]
pub struct NotifyFailure {
    /// The rule.
    pub rule: String,
    /// Why.
    pub error: NotifyError,
}

/// Checks every rule for `day`, hands each breach to `notifier` (when there is one), and
/// stores every result in `alert_runs` (`notified`: `yes`, `no`, or `failed`). Returns the
/// results and the breaches the notifier could not take.
pub async fn run_alerts(
    warehouse: &dyn Warehouse,
    rules: &[AlertRule],
    day: Date,
    notifier: Option<&dyn AlertNotifier>,
) -> Result<(Vec<AlertResult>, Vec<NotifyFailure>), WarehouseError> {
    let mut results = Vec::new();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let checked_at = now_utc();
    for rule in rules {
        let result = check_rule(warehouse, rule, day).await?;
        let notified = match (result.status, notifier) {
            (AlertStatus::Breached, Some(notifier)) => {
                match notifier.notify(&(&result).into()).await {
                    Ok(()) => "yes",
                    Err(error) => {
                        tracing::warn!(rule = %rule.name, %day, error = %crate::error::chain::error_chain(&error), "An alert could not be posted.");
                        failures.push(NotifyFailure {
                            rule: rule.name.clone(),
                            error,
                        });
                        "failed"
                    }
                }
            }
            _ => "no",
        };
        if result.status == AlertStatus::Breached {
            tracing::info!(rule = %rule.name, %day, notified, "Alert rule breached.");
        }
        rows.push(vec![
            Some(rule.name.clone()),
            Some(day.to_string()),
            Some(rule.event.clone()),
            Some(result.status.as_str().to_string()),
            result.count.map(|n| n.to_string()),
            result.baseline.map(|b| format!("{b:.1}")),
            Some(result.message.clone()),
            Some(notified.to_string()),
            Some(checked_at.clone()),
        ]);
        results.push(result);
    }
    if !rows.is_empty() {
        warehouse.replace_rows(&ALERT_RUNS, &rows).await?;
    }
    Ok((results, failures))
}
