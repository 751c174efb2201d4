//! Get Event Count and Get Profile Count: a POST that answers the count, or `{"status":"partial","req_id":N}` to be
//! polled with `GET …?req_id=N` until it is complete, within a deadline.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::client::{ClevertapClient, Method};
use super::cursor::day_number;
use super::error::ApiError;

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountApi {
    /// Get Event Count: how many times the event happened.
    Events,
    /// Get Profile Count: how many profiles did the event.
    Profiles,
}

impl CountApi {
    fn path(self) -> &'static str {
        match self {
            CountApi::Events => "/1/counts/events.json",
            CountApi::Profiles => "/1/counts/profiles.json",
        }
    }
}

impl ClevertapClient {
    /// How many times `event` happened from `from` to `to` (days in the project's time zone),
    /// polling a partial answer until `deadline` has passed.
    pub async fn event_count(
        &self,
        event: &str,
        from: jiff::civil::Date,
        to: jiff::civil::Date,
        deadline: Duration,
    ) -> Result<u64, ApiError> {
        self.count_of(CountApi::Events, event, from, to, deadline)
            .await
    }

    /// Get Event Count or Get Profile Count of `event` from `from` to `to`, polled while
    /// partial until `deadline` has passed.
    pub async fn count_of(
        &self,
        api: CountApi,
        event: &str,
        from: jiff::civil::Date,
        to: jiff::civil::Date,
        deadline: Duration,
    ) -> Result<u64, ApiError> {
        let body = json!({
            "event_name": event,
            "from": day_number(from),
            "to": day_number(to),
        });
        self.count(api.path(), &body, deadline).await
    }

    async fn count(&self, path: &str, body: &Value, deadline: Duration) -> Result<u64, ApiError> {
        let started = Instant::now();
        let unexpected = |detail: &str| ApiError::Unexpected {
            operation: format!("POST {path}"),
            detail: detail.to_string(),
        };
        let mut answer = self.request(Method::Post, path, Some(body)).await?;
        loop {
            match answer.get("status").and_then(Value::as_str) {
                Some("success") => {
                    return answer
                        .get("count")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| unexpected("a success without a count"));
                }
                Some("partial") => {
                    let req_id = answer
                        .get("req_id")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| unexpected("a partial answer without a req_id"))?;
                    let elapsed = started.elapsed();
                    if elapsed >= deadline {
                        return Err(ApiError::Deadline {
                            operation: format!("POST {path}"),
                            seconds: deadline.as_secs(),
                        });
                    }
                    let wait = self.config().retry.not_ready_delay.min(deadline - elapsed);
                    tokio::time::sleep(wait).await;
                    answer = self
                        .request(Method::Get, &format!("{path}?req_id={req_id}"), None)
                        .await?;
                }
                _ => return Err(unexpected("status is neither success nor partial")),
            }
        }
    }
}
