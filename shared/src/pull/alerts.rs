//! Count-based alerts: rules in configuration checked against `event_counts`, each breach
//! handed to an [`AlertNotifier`] (Slack directly, or the webhook relay's alerts route) with
//! the figures, and every rule's result stored in `alert_runs`. `tapline alerts` runs them
//! from a file; the scheduled puller runs them as its `alerts` job after `counts`, with the
//! same JSON in `TAPLINE_ALERT_RULES`.
//!
//! Rules are JSON:
//! `[{"name":"charged-floor","event":"Charged","when":"below","count":500},
//!   {"name":"charged-drop","event":"Charged","when":"below_trailing_mean","percent":40,"days":7}]`

use jiff::civil::Date;
use serde::Deserialize;

use super::alert_notifiers::{AlertNotifier, NotifyError};
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

/// One rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AlertRule {
    /// A name for the rule (its key in `alert_runs`).
    pub name: String,
    /// The CleverTap event whose daily count is checked.
    pub event: String,
    /// The condition that is a breach.
    #[serde(flatten)]
    pub condition: Condition,
}

/// When a day's count is a breach.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "when", rename_all = "snake_case")]
pub enum Condition {
    /// The count is below this.
    Below {
        /// The floor.
        count: u64,
    },
    /// The count is more than `percent` % below the mean of the `days` days before.
    BelowTrailingMean {
        /// How far below the mean, in percent.
        percent: f64,
        /// Days in the mean.
        days: u32,
    },
}

/// Parses the rules (a JSON array), as in a `tapline alerts --rules` file or
/// `TAPLINE_ALERT_RULES`. Rule names must be unique: they key `alert_runs`.
pub fn parse_rules(text: &str) -> Result<Vec<AlertRule>, RulesError> {
    let rules: Vec<AlertRule> = serde_json::from_str(text)?;
    let mut names = std::collections::HashSet::new();
    for rule in &rules {
        if !names.insert(rule.name.as_str()) {
            return Err(RulesError::DuplicateName(rule.name.clone()));
        }
    }
    Ok(rules)
}

/// Why rules cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// Not a JSON array of rules.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// Two rules share a name (the key of `alert_runs`).
    #[error("two rules are named {0:?}: names must be unique")]
    DuplicateName(String),
}

/// Where a rule stands for a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertStatus {
    /// Within bounds.
    Ok,
    /// Breached: a message goes out.
    Breached,
    /// No count for the day (or no baseline): run `pull counts` first.
    NoData,
}

impl AlertStatus {
    fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Ok => "ok",
            AlertStatus::Breached => "breached",
            AlertStatus::NoData => "no_data",
        }
    }
}

/// One rule's result for one day.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertResult {
    /// The rule.
    pub rule: AlertRule,
    /// The day checked.
    pub day: Date,
    /// Its status.
    pub status: AlertStatus,
    /// The day's count, when there is one.
    pub count: Option<u64>,
    /// The threshold or mean compared with.
    pub baseline: Option<f64>,
    /// The sentence with the figures (the Slack text for a breach).
    pub message: String,
}

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
            (AlertStatus::Breached, Some(notifier)) => match notifier.notify(&result).await {
                Ok(()) => "yes",
                Err(error) => {
                    tracing::warn!(rule = %rule.name, %day, error = %crate::error::chain::error_chain(&error), "An alert could not be posted.");
                    failures.push(NotifyFailure {
                        rule: rule.name.clone(),
                        error,
                    });
                    "failed"
                }
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_from_json() {
        let rules = parse_rules(
            r#"[{"name":"floor","event":"Charged","when":"below","count":500},
                {"name":"drop","event":"Charged","when":"below_trailing_mean","percent":40,"days":7}]"#,
        )
        .unwrap();
        assert_eq!(rules[0].condition, Condition::Below { count: 500 });
        assert_eq!(
            rules[1].condition,
            Condition::BelowTrailingMean {
                percent: 40.0,
                days: 7
            }
        );
        let err =
            parse_rules(r#"[{"name":"x","event":"E","when":"above","count":1}]"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant `above`"), "{err}");
        let err = parse_rules(
            r#"[{"name":"x","event":"E","when":"below","count":1},
                {"name":"x","event":"F","when":"below","count":2}]"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "two rules are named \"x\": names must be unique"
        );
    }
}
