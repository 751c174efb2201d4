//! Campaigns (`targets/list.json`, windows of at most 31 days) and campaign reports
//! (`targets/result.json`), where "not completed / no result yet" is an answer, not a failure.

use jiff::civil::Date;
use serde_json::{Value, json};

use super::client::{ClevertapClient, Method};
use super::cursor::day_number;
use super::error::ApiError;

/// The longest window `targets/list.json` answers well.
pub const MAX_CAMPAIGN_WINDOW_DAYS: i32 = 31;

/// A campaign report, or the word that it has none yet.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// The `result` object (`{"sent":82,"clicked":28,…}`).
    Ready(Value),
    /// The campaign has not completed (a `fail` answer, HTTP 500 "no result as of yet", or a
    /// success without `result`).
    NotReady(String),
}

/// `from..=to` cut into windows of at most [`MAX_CAMPAIGN_WINDOW_DAYS`] days.
pub fn campaign_windows(from: Date, to: Date) -> Vec<(Date, Date)> {
    let mut windows = Vec::new();
    let mut start = from;
    while start <= to {
        let end = start
            .checked_add(jiff::Span::new().days(MAX_CAMPAIGN_WINDOW_DAYS - 1))
            .map_or(to, |e| e.min(to));
        windows.push((start, end));
        match end.tomorrow() {
            Ok(next) => start = next,
            Err(_) => break,
        }
    }
    windows
}

impl ClevertapClient {
    /// The campaigns (targets) of one window of at most 31 days.
    pub async fn campaigns(&self, from: Date, to: Date) -> Result<Vec<Value>, ApiError> {
        let body = json!({"from": day_number(from), "to": day_number(to)});
        let answer = self
            .request(Method::Post, "/1/targets/list.json", Some(&body))
            .await?;
        match answer.get("targets") {
            Some(Value::Array(targets)) => Ok(targets.clone()),
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(_) => Err(ApiError::Unexpected {
                operation: "POST /1/targets/list.json".to_string(),
                detail: "targets is not an array".to_string(),
            }),
        }
    }

    /// The report of campaign `id`, or [`Report::NotReady`].
    pub async fn campaign_report(&self, id: &Value) -> Result<Report, ApiError> {
        let body = json!({ "id": id });
        match self
            .request(Method::Post, "/1/targets/result.json", Some(&body))
            .await
        {
            Ok(answer) => Ok(match answer.get("result") {
                Some(result) if !result.is_null() => Report::Ready(result.clone()),
                _ => Report::NotReady("the answer has no result yet".to_string()),
            }),
            Err(ApiError::ResultNotReady { message, .. }) => Ok(Report::NotReady(message)),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_cut_into_windows_of_31_days() {
        let d = |s: &str| s.parse::<Date>().unwrap();
        assert_eq!(
            campaign_windows(d("2022-08-01"), d("2022-09-22")),
            vec![
                (d("2022-08-01"), d("2022-08-31")),
                (d("2022-09-01"), d("2022-09-22"))
            ]
        );
        assert_eq!(
            campaign_windows(d("2022-09-01"), d("2022-09-01")),
            vec![(d("2022-09-01"), d("2022-09-01"))]
        );
    }
}
