//! `pull messages`: Get Message Reports, one day at a time, into `message_reports`, one row per
//! (message, day) replaced when the day is pulled again. A day whose report is not ready is
//! listed as such and asked again on the next run, like a campaign's report.
//!
//! CleverTap's answers name fields with spaces (`message id`, `message name`) in some places
//! and underscores in others: both are read.

use jiff::civil::Date;
use serde_json::Value;

use super::PullError;
use crate::clevertap::ClevertapClient;
use crate::clevertap::messages::MessageReport;
use crate::time::now_utc;
use crate::warehouse::{ColumnType, FixedTable, Warehouse};

/// `message_reports`: one row per (message, day); the usual fields as columns, the whole
/// message object kept as JSON text in `report`.
pub const MESSAGE_REPORTS: FixedTable = FixedTable {
    name: "message_reports",
    columns: &[
        ("message_id", ColumnType::Text),
        ("day", ColumnType::Text),
        ("message_name", ColumnType::Text),
        ("channel", ColumnType::Text),
        ("delivery", ColumnType::Text),
        ("status", ColumnType::Text),
        ("start_date", ColumnType::Text),
        ("sent", ColumnType::Integer),
        ("viewed", ColumnType::Integer),
        ("clicked", ColumnType::Integer),
        ("report", ColumnType::Text),
        ("pulled_at", ColumnType::Text),
    ],
    key: &["message_id", "day"],
};

/// What a message reports pull came to.
#[derive(Debug, Default)]
pub struct MessagesReport {
    /// Days whose report was written.
    pub days_ready: usize,
    /// Rows written (messages × days).
    pub rows: u64,
    /// Messages without an id (counted, not stored).
    pub without_id: u64,
    /// Days whose report is not ready yet, with CleverTap's words.
    pub not_ready: Vec<(Date, String)>,
    /// Days whose report could not be read.
    pub failed: Vec<(Date, PullError)>,
}

/// A field by any of its spellings (`message id`, `message_id`, `Message ID`).
fn field<'a>(message: &'a Value, names: &[&str]) -> Option<&'a Value> {
    let object = message.as_object()?;
    names.iter().find_map(|name| {
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
            .filter(|value| !value.is_null())
    })
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(_) | Value::Object(_) => value.map(Value::to_string),
        _ => None,
    }
}

fn figure(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Number(n) => n.as_i64().map(|n| n.to_string()),
        Value::String(s) => s.trim().parse::<i64>().ok().map(|n| n.to_string()),
        _ => None,
    }
}

/// The `message_reports` row of one message of `day`'s report; `None` without an id.
pub fn message_row(message: &Value, day: Date, pulled_at: &str) -> Option<Vec<Option<String>>> {
    let id = text(field(message, &["message id", "message_id", "id"]))?;
    Some(vec![
        Some(id),
        Some(day.to_string()),
        text(field(message, &["message name", "message_name", "name"])),
        text(field(message, &["channel"])),
        text(field(message, &["delivery"])),
        text(field(message, &["status"])),
        text(field(message, &["start_date", "start date"])),
        figure(field(message, &["sent"])),
        figure(field(message, &["viewed"])),
        figure(field(message, &["clicked"])),
        Some(message.to_string()),
        Some(pulled_at.to_string()),
    ])
}

/// Pulls the message reports of every day of `from..=to` (optionally only `channels`).
pub async fn pull_message_reports(
    client: &ClevertapClient,
    warehouse: &dyn Warehouse,
    from: Date,
    to: Date,
    channels: &[String],
) -> MessagesReport {
    let mut tasks = tokio::task::JoinSet::new();
    for day in super::days(from, to) {
        let (client, channels) = (client.clone(), channels.to_vec());
        tasks.spawn(async move { (day, client.message_report(day, &channels).await) });
    }
    let mut answers = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(answer) => answers.push(answer),
            Err(e) => tracing::warn!(error = %e, "A message report task stopped unexpectedly."),
        }
    }
    answers.sort_by_key(|(day, _)| *day);
    let mut report = MessagesReport::default();
    for (day, answer) in answers {
        match answer {
            Ok(MessageReport::Ready(messages)) => {
                let pulled_at = now_utc();
                let rows: Vec<Vec<Option<String>>> = messages
                    .iter()
                    .filter_map(|m| message_row(m, day, &pulled_at))
                    .collect();
                report.without_id += (messages.len() - rows.len()) as u64;
                let written = if rows.is_empty() {
                    Ok(0)
                } else {
                    warehouse.replace_rows(&MESSAGE_REPORTS, &rows).await
                };
                match written {
                    Ok(n) => {
                        report.days_ready += 1;
                        report.rows += n;
                    }
                    Err(e) => report.failed.push((day, e.into())),
                }
            }
            Ok(MessageReport::NotReady(why)) => report.not_ready.push((day, why)),
            Err(e) => report.failed.push((day, e.into())),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_read_either_spelling_of_the_fields() {
        let day: Date = "2022-09-22".parse().unwrap();
        let spaced = json!({"message id": 1663800000, "message name": "Sale", "channel": "Push",
            "sent": 82, "viewed": "40", "clicked": 28});
        let row = message_row(&spaced, day, "t").unwrap();
        assert_eq!(row[0].as_deref(), Some("1663800000"));
        assert_eq!(row[2].as_deref(), Some("Sale"));
        assert_eq!(
            row[7..10],
            [Some("82".into()), Some("40".into()), Some("28".into())]
        );
        let underscored = json!({"message_id": "m-1", "message_name": "Sale"});
        assert_eq!(
            message_row(&underscored, day, "t").unwrap()[0].as_deref(),
            Some("m-1")
        );
        assert_eq!(message_row(&json!({"sent": 1}), day, "t"), None);
    }
}
