//! The cursor protocol of Get Events and Get Profiles: a POST opens the cursor, GETs page with
//! it until an answer has no `next_cursor`.
//!
//! `next_cursor` arrives percent-encoded: it is decoded once before it is stored or sent back,
//! or it would be encoded twice. A cursor that comes back again means CleverTap is stalled on
//! it: paging stops with [`ApiError::RepeatedCursor`] instead of looping forever; new cursors
//! without end stop at the page limit per slice ([`ApiError::TooManyPages`]).

use std::collections::HashSet;

use serde_json::{Value, json};

use super::client::{ClevertapClient, Method, encode_query_value};
use super::error::ApiError;

/// Records per page asked for; CleverTap allows at most 5000 (and may send fewer).
pub const DEFAULT_BATCH_SIZE: u32 = 5000;

/// Which cursor API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorApi {
    /// Get Events (`/1/events.json`).
    Events,
    /// Get Profiles (`/1/profiles.json`); its batch size must be a multiple of 23.
    Profiles,
}

impl CursorApi {
    fn path(self) -> &'static str {
        match self {
            CursorApi::Events => "/1/events.json",
            CursorApi::Profiles => "/1/profiles.json",
        }
    }
}

/// One page of records.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The records, as CleverTap sent them.
    pub records: Vec<Value>,
    /// The decoded cursor of the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A `YYYY-MM-DD` day as CleverTap's `YYYYMMDD` number.
pub fn day_number(day: jiff::civil::Date) -> i64 {
    i64::from(day.year()) * 10_000 + i64::from(day.month()) * 100 + i64::from(day.day())
}

/// Decodes a cursor as CleverTap sends it (percent-encoded).
pub fn decode_cursor(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

impl ClevertapClient {
    /// Opens a Get Events cursor over `event` from `from` to `to` (days in the project's time
    /// zone); returns the decoded cursor of the first page.
    pub async fn open_events_cursor(
        &self,
        event: &str,
        from: jiff::civil::Date,
        to: jiff::civil::Date,
        batch_size: u32,
    ) -> Result<String, ApiError> {
        let body = json!({
            "event_name": event,
            "from": day_number(from),
            "to": day_number(to),
        });
        self.open_cursor(CursorApi::Events, batch_size, &body).await
    }

    /// Opens a cursor of `api` with this body; returns the decoded cursor.
    pub async fn open_cursor(
        &self,
        api: CursorApi,
        batch_size: u32,
        body: &Value,
    ) -> Result<String, ApiError> {
        let path = format!("{}?batch_size={batch_size}", api.path());
        let answer = self.request(Method::Post, &path, Some(body)).await?;
        match answer.get("cursor").and_then(Value::as_str) {
            Some(cursor) if !cursor.is_empty() => Ok(decode_cursor(cursor)),
            _ => Err(ApiError::Unexpected {
                operation: format!("POST {}", api.path()),
                detail: "the answer has no cursor".to_string(),
            }),
        }
    }

    /// Fetches the page a decoded cursor names; "in progress" answers are asked again.
    pub async fn cursor_page(&self, api: CursorApi, cursor: &str) -> Result<Page, ApiError> {
        let path = format!("{}?cursor={}", api.path(), encode_query_value(cursor));
        let answer = self.request(Method::Get, &path, None).await?;
        let records = match answer.get("records") {
            Some(Value::Array(records)) => records.clone(),
            None | Some(Value::Null) => Vec::new(),
            Some(_) => {
                return Err(ApiError::Unexpected {
                    operation: format!("GET {}", api.path()),
                    detail: "records is not an array".to_string(),
                });
            }
        };
        let next_cursor = answer
            .get("next_cursor")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(decode_cursor);
        Ok(Page {
            records,
            next_cursor,
        })
    }
}

/// Walks a cursor page by page, refusing a cursor that repeats. Can start from a checkpoint.
#[derive(Debug)]
pub struct CursorPager {
    api: CursorApi,
    cursor: Option<String>,
    page: u64,
    seen: HashSet<String>,
}

impl CursorPager {
    /// A pager whose next page is `page` (0-based), fetched with the decoded `cursor`.
    pub fn new(api: CursorApi, cursor: String, page: u64) -> Self {
        Self {
            api,
            seen: HashSet::from([cursor.clone()]),
            cursor: Some(cursor),
            page,
        }
    }

    /// The 0-based index of the next page.
    pub fn page_index(&self) -> u64 {
        self.page
    }

    /// The cursor of the next page; `None` once the last page was read.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// The next page, or `None` after the last one.
    pub async fn next(&mut self, client: &ClevertapClient) -> Result<Option<Page>, ApiError> {
        let Some(cursor) = self.cursor.clone() else {
            return Ok(None);
        };
        // New cursors without end would page forever (and grow `seen`): a slice has a limit.
        let limit = client.config().max_pages_per_slice;
        if self.page >= limit {
            return Err(ApiError::TooManyPages {
                operation: format!("GET {}", self.api.path()),
                limit,
            });
        }
        let page = client.cursor_page(self.api, &cursor).await?;
        if let Some(next) = &page.next_cursor
            && !self.seen.insert(next.clone())
        {
            return Err(ApiError::RepeatedCursor {
                operation: format!("GET {}", self.api.path()),
                page: self.page,
                cursor_start: next.chars().take(12).collect(),
            });
        }
        self.cursor = page.next_cursor.clone();
        self.page += 1;
        Ok(Some(page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_yyyymmdd_numbers_and_cursors_decode_once() {
        let day: jiff::civil::Date = "2022-09-01".parse().unwrap();
        assert_eq!(day_number(day), 20220901);
        assert_eq!(decode_cursor("ZyZj%2FZ21t%2B%3D"), "ZyZj/Z21t+=");
        assert_eq!(decode_cursor("plain+cursor"), "plain+cursor");
    }
}
