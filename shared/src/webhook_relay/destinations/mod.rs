//! The [`Destination`] port: deliver one payload once, and say whether trying again can help.

pub mod clevertap_upload;
pub mod export_status;
pub mod function_invoke;
pub mod http_forward;
pub mod slack;
pub mod warehouse;

use std::time::Duration;

use crate::error::error_chain;
use async_trait::async_trait;
use http::{HeaderMap, HeaderValue};

/// One attempt at delivering one payload to one destination.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryAttempt<'a> {
    /// The delivery id, stable across retries and replays (the `Idempotency-Key`).
    pub delivery_id: &'a str,
    /// The payload's id (shared by its deliveries to each destination of the route).
    pub payload_id: &'a str,
    /// When the payload was received (Unix ms).
    pub received_at_ms: i64,
    /// The route the payload came in on.
    pub route: &'a str,
    /// The body as received.
    pub body: &'a [u8],
    /// Now, in Unix ms (signatures carry it).
    pub now_ms: i64,
}

/// Why an attempt did not deliver.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The destination answered with a status that is not success.
    #[error("HTTP {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the answer's body (destinations say why there).
        body: String,
        /// The wait the destination asked for (`Retry-After`, seconds or an HTTP date).
        retry_after: Option<Duration>,
    },
    /// Slack answered 200 but not `ok`: Slack reports some failures this way.
    #[error("Slack answered 200 with {body:?} instead of \"ok\"")]
    SlackNotOk {
        /// What Slack said instead (e.g. `invalid_payload`).
        body: String,
    },
    /// The destination (or the mapping to it) refused this payload for a reason a retry cannot
    /// change: CleverTap's `unprocessed` records, a payload no mapping rule matches.
    #[error("{destination} refused it: {detail}")]
    Rejected {
        /// Who refused.
        destination: &'static str,
        /// Why, without secrets.
        detail: String,
    },
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Could not connect (DNS, refused, TLS).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The request failed otherwise (reset while sending or reading).
    #[error("request failed: {0}")]
    Transport(String),
}

impl DeliveryError {
    /// Whether a later attempt may succeed: 5xx, 429, timeouts and network errors are; other
    /// statuses (4xx, 3xx: the relay does not follow redirects) and Slack's refusals are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            DeliveryError::Status { status, .. } => *status == 429 || *status >= 500,
            DeliveryError::SlackNotOk { .. } | DeliveryError::Rejected { .. } => false,
            DeliveryError::Timeout(_) | DeliveryError::Connect(_) | DeliveryError::Transport(_) => {
                true
            }
        }
    }

    /// The wait the destination asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DeliveryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status, when the destination answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            DeliveryError::Status { status, .. } => Some(*status),
            DeliveryError::SlackNotOk { .. } => Some(200),
            _ => None,
        }
    }

    /// Maps a reqwest error without its URL (destination URLs carry tokens).
    pub fn from_reqwest(err: reqwest::Error, timeout: Duration) -> Self {
        let err = err.without_url();
        let text = error_chain(&err);
        if err.is_timeout() {
            DeliveryError::Timeout(timeout)
        } else if err.is_connect() {
            DeliveryError::Connect(text)
        } else {
            DeliveryError::Transport(text)
        }
    }
}

/// The `Retry-After` header as a wait: delta-seconds, or an HTTP date measured from `now_ms`.
pub fn parse_retry_after(headers: &HeaderMap, now_ms: i64) -> Option<Duration> {
    retry_after_wait(headers.get(http::header::RETRY_AFTER)?, now_ms)
}

/// One `Retry-After` value as a wait: delta-seconds, or an HTTP date measured from `now_ms`.
pub fn retry_after_wait(value: &HeaderValue, now_ms: i64) -> Option<Duration> {
    let value = value.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let wait = at.as_millisecond() - now_ms;
    Some(Duration::from_millis(wait.max(0) as u64))
}

/// The first `max` characters of a body, for error records (never whole payloads).
pub fn snippet(body: &str, max: usize) -> String {
    let mut s: String = body.chars().take(max).collect();
    if body.chars().count() > max {
        s.push('…');
    }
    s
}

/// Somewhere payloads go: Slack, an HTTP endpoint, and later CleverTap's upload or a warehouse.
#[async_trait]
pub trait Destination: Send + Sync {
    /// Delivers once. `Ok` only when the destination confirmed it.
    async fn deliver(&self, attempt: DeliveryAttempt<'_>) -> Result<u16, DeliveryError>;
}
