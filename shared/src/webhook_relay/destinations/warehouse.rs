//! [`WarehouseDestination`]: appends each payload to the `webhook_events` table of a warehouse,
//! through Tapline's [`Warehouse`] port (SQLite, PostgreSQL, BigQuery: whichever the build has).
//!
//! Exactly once: the row's key is the delivery id (`<payload id>.<destination>`), which stays
//! the same across retries, SQS redeliveries and `tapline relay replay`. A delivery written
//! again (the worker died after the commit, before settling) replaces its own row with the same
//! values, so the table never holds it twice.
//!
//! The warehouse is opened at the first delivery, not at start: a warehouse that is down
//! delays deliveries (retried with backoff like any destination) but never stops the relay from
//! accepting webhooks.
//!
//! A PostgreSQL URL gets `connect_timeout`, `statement_timeout` and `lock_timeout` from the
//! delivery timeout (unless it sets its own), so that a locked table or a hung server ends the
//! attempt on the server's side too, as a retryable error, instead of holding the connection.

use std::time::Duration;

use crate::warehouse::{ColumnType, FixedTable, Warehouse, WarehouseError};
use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::secret::Secret;
use crate::webhook_relay::destinations::{DeliveryAttempt, DeliveryError, Destination};
use crate::webhook_relay::payload::clevertap_webhook;

/// The table payloads land in (reserved by Tapline: no event table takes its name).
pub const WEBHOOK_EVENTS_TABLE: &str = "webhook_events";

/// The environment variable a warehouse destination reads its URL from unless it names another:
/// the same one every Tapline function uses.
pub const DEFAULT_URL_ENV: &str = "TAPLINE_WAREHOUSE";

/// `webhook_events`: one row per delivery, keyed by its id. The CleverTap columns are NULL for
/// payloads that are not CleverTap webhooks; `body` is always the payload as received.
pub const WEBHOOK_EVENTS: FixedTable = FixedTable {
    name: WEBHOOK_EVENTS_TABLE,
    columns: &[
        ("delivery_id", ColumnType::Text),
        ("payload_id", ColumnType::Text),
        ("route", ColumnType::Text),
        ("received_at", ColumnType::Text),
        ("received_at_ms", ColumnType::Integer),
        ("target_id", ColumnType::Text),
        ("event", ColumnType::Text),
        ("identity", ColumnType::Text),
        ("profiles", ColumnType::Integer),
        ("is_test", ColumnType::Integer),
        ("body", ColumnType::Text),
    ],
    key: &["delivery_id"],
};

/// The `webhook_events` row of one delivery, values in [`WEBHOOK_EVENTS`] column order.
/// `received_at` is UTC ISO-8601 with milliseconds; `identity` is the first profile's (or its
/// `objectId`); `profiles` counts the profiles (a broadcast has many).
pub fn webhook_event_row(attempt: &DeliveryAttempt<'_>) -> Vec<Option<String>> {
    let body = String::from_utf8_lossy(attempt.body).into_owned();
    let hook = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|json| clevertap_webhook(&json));
    let received_at = jiff::Timestamp::from_millisecond(attempt.received_at_ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .ok();
    let (target_id, event, identity, profiles, is_test) = match hook {
        Some(h) => (
            h.target_id,
            h.event,
            h.profiles.iter().find_map(|p| p.identity.clone()),
            Some(h.profiles.len().to_string()),
            Some(u8::from(h.is_test).to_string()),
        ),
        None => (None, None, None, None, None),
    };
    vec![
        Some(attempt.delivery_id.to_string()),
        Some(attempt.payload_id.to_string()),
        Some(attempt.route.to_string()),
        received_at,
        Some(attempt.received_at_ms.to_string()),
        target_id,
        event,
        identity,
        profiles,
        is_test,
        Some(body),
    ]
}

/// Appends payloads to `webhook_events` in the warehouse at a configured URL.
pub struct WarehouseDestination {
    url: Secret,
    warehouse: OnceCell<Box<dyn Warehouse>>,
}

impl WarehouseDestination {
    /// A destination writing to the warehouse `url` names (`sqlite://…`, `postgres://…`,
    /// `bigquery://…`; may hold a password, hence a [`Secret`]), each attempt within `timeout`
    /// (see [`with_timeouts`]). Nothing is opened yet.
    pub fn new(url: Secret, timeout: Duration) -> Self {
        Self {
            url: Secret::new(with_timeouts(url.expose(), timeout)),
            warehouse: OnceCell::new(),
        }
    }

    /// A destination over an open warehouse (tests, or a caller that opened it already).
    pub fn with_warehouse(warehouse: Box<dyn Warehouse>) -> Self {
        Self {
            url: Secret::new(String::new()),
            warehouse: OnceCell::new_with(Some(warehouse)),
        }
    }

    async fn warehouse(&self) -> Result<&dyn Warehouse, WarehouseError> {
        let warehouse = self
            .warehouse
            .get_or_try_init(|| crate::warehouse::open::open(self.url.expose()))
            .await?;
        Ok(warehouse.as_ref())
    }
}

/// A `postgres://` URL with `connect_timeout` (seconds) and the session settings
/// `statement_timeout` and `lock_timeout` derived from the attempt `timeout`, each unless the URL
/// sets it already. The server gives up before the attempt does, so the attempt ends with
/// PostgreSQL's own retryable error and a connection that is still usable: a statement after
/// three quarters of the timeout, a lock wait (a table another session holds) after half of it.
/// Other URLs are returned as they are.
pub fn with_timeouts(url: &str, timeout: Duration) -> String {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return url.to_string();
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut pairs: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    if !pairs.iter().any(|p| p.starts_with("connect_timeout=")) {
        pairs.push(format!("connect_timeout={}", timeout.as_secs().max(1)));
    }
    let statement_ms = (timeout.as_millis() * 3 / 4).max(1);
    let lock_ms = (timeout.as_millis() / 2).max(1);
    let options = pairs.iter().position(|p| p.starts_with("options="));
    let mut settings = options
        .map(|i| pairs[i]["options=".len()..].to_string())
        .unwrap_or_default();
    // `options` is the server's command line, percent-encoded: `-c name=value` separated by
    // spaces (`%20`, `=` as `%3D`).
    for (name, ms) in [
        ("statement_timeout", statement_ms),
        ("lock_timeout", lock_ms),
    ] {
        if !settings.contains(name) {
            if !settings.is_empty() {
                settings.push_str("%20");
            }
            settings.push_str(&format!("-c%20{name}%3D{ms}"));
        }
    }
    match options {
        Some(i) => pairs[i] = format!("options={settings}"),
        None => pairs.push(format!("options={settings}")),
    }
    format!("{base}?{}", pairs.join("&"))
}

/// A warehouse error as a delivery error: retryable ones (connection lost, busy, the warehouse
/// unreachable) are retried with backoff, the others (a bad URL, a build without the adapter,
/// a schema conflict) dead-lettered. Warehouse errors name no password.
fn delivery_error(err: WarehouseError) -> DeliveryError {
    let detail = crate::error::error_chain(&err);
    if err.is_retryable() {
        DeliveryError::Transport(detail)
    } else {
        DeliveryError::Rejected {
            destination: "warehouse",
            detail,
        }
    }
}

#[async_trait]
impl Destination for WarehouseDestination {
    /// Upserts the delivery's row and commits it; `Ok(200)` once committed.
    async fn deliver(&self, attempt: DeliveryAttempt<'_>) -> Result<u16, DeliveryError> {
        let warehouse = self.warehouse().await.map_err(delivery_error)?;
        let row = webhook_event_row(&attempt);
        warehouse
            .replace_rows(&WEBHOOK_EVENTS, &[row])
            .await
            .map_err(delivery_error)?;
        Ok(200)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(body: &str) -> DeliveryAttempt<'_> {
        DeliveryAttempt {
            delivery_id: "p1.wh",
            payload_id: "p1",
            received_at_ms: 1_764_000_000_123,
            route: "alerts",
            body: body.as_bytes(),
            now_ms: 0,
        }
    }

    #[test]
    fn a_clevertap_webhook_fills_its_columns_and_other_json_only_the_body() {
        let body = r#"{"TargetId":7,"profiles":[{"objectId":"__g","event_name":"Charged"},
                       {"identity":"u2"}]}"#;
        let row = webhook_event_row(&attempt(body));
        assert_eq!(row.len(), WEBHOOK_EVENTS.columns.len());
        let text = |i: usize| row[i].as_deref();
        assert_eq!(text(3), Some("2025-11-24T16:00:00.123Z"));
        assert_eq!(
            (text(5), text(6), text(7), text(8), text(9)),
            (
                Some("7"),
                Some("Charged"),
                Some("__g"),
                Some("2"),
                Some("0")
            )
        );
        assert_eq!(text(10), Some(body));

        let row = webhook_event_row(&attempt(r#"{"type":"renewal"}"#));
        assert!(row[5..10].iter().all(Option::is_none), "{row:?}");
        assert_eq!(row[10].as_deref(), Some(r#"{"type":"renewal"}"#));
    }

    #[test]
    fn a_postgres_url_gets_connect_statement_and_lock_timeouts_unless_it_sets_them() {
        let five = Duration::from_secs(5);
        assert_eq!(
            with_timeouts("postgres://u:p@db/w?schema=s", five),
            "postgres://u:p@db/w?schema=s&connect_timeout=5\
             &options=-c%20statement_timeout%3D3750%20-c%20lock_timeout%3D2500"
        );
        assert_eq!(
            with_timeouts(
                "postgresql://db/w?connect_timeout=2&options=-c%20lock_timeout%3D100",
                five
            ),
            "postgresql://db/w?connect_timeout=2\
             &options=-c%20lock_timeout%3D100%20-c%20statement_timeout%3D3750"
        );
        assert_eq!(with_timeouts("sqlite:///tmp/w", five), "sqlite:///tmp/w");
    }
}
