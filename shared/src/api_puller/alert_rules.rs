//! Alert rules and a rule's result for a day: the types the checks (`alerts`) and the
//! notifiers (`alert_notifiers`) share, kept apart so neither imports the other. Rules are JSON:
//! `[{"name":"charged-floor","event":"Charged","when":"below","count":500},
//!   {"name":"charged-drop","event":"Charged","when":"below_trailing_mean","percent":40,"days":7}]`

use jiff::civil::Date;
use serde::Deserialize;

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
    /// The word stored in `alert_runs.status`.
    pub fn as_str(self) -> &'static str {
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
