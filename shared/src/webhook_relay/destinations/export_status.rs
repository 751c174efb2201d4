//! [`ExportStatusDestination`]: CleverTap's export status notification turned into a sweep and a
//! reconcile, so completeness is checked the moment CleverTap says an export is done.
//!
//! CleverTap POSTs, when an export to S3 or GCS starts and when it completes,
//! `{"Export Request Id": 1690283492, "Partner": "Google Cloud Storage", "Type": "Events",
//! "Status": "Completed", "Frequency": "One Time", "Date and Time": "25/07/2023 4:50:52 PM"}`.
//! On `Completed`, that request's objects under `source` are loaded (those the ledger lacks,
//! exactly once, as a sweep does), then the days they cover are reconciled into
//! `_tapline_completeness`. Two modes ([`ExportStatusMode`]):
//! - **local** (`tapline relay serve`): the sweep and the reconcile run in the relay worker,
//!   with the CLI's code (alerts stay with the scheduled `reconcile` job, which sends each once);
//! - **cloud**: the relay asks the export loader to sweep (Lambda Invoke or Cloud Run
//!   `POST /sweep`) and then the API puller to run its `reconcile` job for the days the sweep
//!   reported (or the last `reconcile_days` days), so it needs no warehouse or bucket access.
//!
//! Any other status is acknowledged and does nothing. A failed load (or function) makes the
//! delivery fail retryably (the relay retries; loaded objects are not loaded twice); a body that
//! is no export status is refused for good (dead letter). Everything runs within the relay's
//! delivery timeout (`settings.delivery_timeout_secs`): set it to what a sweep takes.

use async_trait::async_trait;
use jiff::civil::Date;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::config::LoadConfig;
use crate::export_loader::sweep::{SWEEP_MARKER, SweepRequest, sweep};
use crate::reconcile::{Policy, Request, reconcile_and_record};
use crate::secret::Secret;
use crate::warehouse::Warehouse;
use crate::webhook_relay::destinations::function_invoke::{FunctionInvoker, FunctionTarget};
use crate::webhook_relay::destinations::{DeliveryAttempt, DeliveryError, Destination};

/// Most bytes of a body read as an export status (the documented one is ~200).
const MAX_STATUS_BYTES: usize = 16 * 1024;

/// The fields of an export status this destination acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportStatus {
    /// `Export Request Id`, as digits.
    pub request_id: String,
    /// `Status`: `Initiated` or `Completed`.
    pub status: String,
    /// `Type`: `Events` or `Profiles` (informational).
    pub kind: Option<String>,
}

/// Reads an export status; `None` when the body is not one (no numeric `Export Request Id` and
/// `Status`). The id may come as a number or a string of digits (at most 20).
pub fn parse_export_status(body: &[u8]) -> Option<ExportStatus> {
    if body.len() > MAX_STATUS_BYTES {
        return None;
    }
    let json: Value = serde_json::from_slice(body).ok()?;
    let object = json.as_object()?;
    let field = |name: &str| {
        object
            .iter()
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let request_id = match field("Export Request Id")? {
        Value::Number(n) => n.as_u64()?.to_string(),
        Value::String(s)
            if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            s.clone()
        }
        _ => return None,
    };
    let status = field("Status")?.as_str()?.trim().to_string();
    let kind = field("Type").and_then(Value::as_str).map(str::to_string);
    Some(ExportStatus {
        request_id,
        status,
        kind,
    })
}

/// Where the sweep and the reconcile run.
#[derive(Debug, Clone)]
pub enum ExportStatusMode {
    /// In the relay worker, into the warehouse `url` names, with `load`'s validation and time
    /// zone (days are the project's).
    Local {
        /// The warehouse (may hold a password).
        url: Secret,
        /// Validation, limits and the project's time zone.
        load: LoadConfig,
    },
    /// In the export loader and the API puller, invoked (the relay holds no warehouse).
    Cloud {
        /// The export loader: its sweep.
        loader: FunctionTarget,
        /// The API puller: its `reconcile` job.
        puller: FunctionTarget,
        /// Days reconciled, ending today in `timezone`, when the sweep reports none.
        reconcile_days: u32,
        /// The project's time zone (`TAPLINE_TIMEZONE`), for those days.
        timezone: jiff::tz::TimeZone,
        /// The Lambda API's address when not AWS's (`AWS_ENDPOINT_URL_LAMBDA`).
        lambda_endpoint: Option<String>,
    },
}

/// Days reconciled in cloud mode when the loader reports no export dates.
pub const DEFAULT_RECONCILE_DAYS: u32 = 7;

/// Sweeps one export request's objects and reconciles their days.
pub struct ExportStatusDestination {
    source: String,
    mode: ExportStatusMode,
    warehouse: OnceCell<Box<dyn Warehouse>>,
    invoker: FunctionInvoker,
}

impl ExportStatusDestination {
    /// A destination sweeping `source` (`s3://…`, `gs://…` or a folder) as `mode` says; cloud
    /// invocations go through `client`, bounded by `timeout`. Nothing is opened yet.
    pub fn new(
        source: String,
        mode: ExportStatusMode,
        client: reqwest::Client,
        timeout: std::time::Duration,
    ) -> Self {
        let lambda_endpoint = match &mode {
            ExportStatusMode::Cloud {
                lambda_endpoint, ..
            } => lambda_endpoint.clone(),
            ExportStatusMode::Local { .. } => None,
        };
        Self {
            source,
            mode,
            warehouse: OnceCell::new(),
            invoker: FunctionInvoker::new(client, timeout, lambda_endpoint),
        }
    }

    async fn warehouse(&self, url: &Secret) -> Result<&dyn Warehouse, DeliveryError> {
        let warehouse = self
            .warehouse
            .get_or_try_init(|| crate::warehouse::open::open(url.expose()))
            .await
            .map_err(|e| DeliveryError::Transport(crate::error::error_chain(&e)))?;
        Ok(warehouse.as_ref())
    }

    /// The sweep of one request's objects under `source`, whatever the mode.
    fn sweep_request(&self, request_id: &str) -> SweepRequest {
        SweepRequest {
            uri: self.source.clone(),
            since: None,
            // A request's objects are all wanted, however old their export dates.
            window_days: Some(0),
            request_id: Some(request_id.to_string()),
        }
    }

    /// Local mode: the sweep and the reconcile in this process.
    async fn sweep_here(
        &self,
        status: &ExportStatus,
        url: &Secret,
        load: &LoadConfig,
    ) -> Result<(), DeliveryError> {
        let warehouse = self.warehouse(url).await?;
        let source = crate::storage::source_for(&self.source)
            .await
            .map_err(|e| DeliveryError::Transport(crate::error::error_chain(&e)))?;
        let report = sweep(
            source.as_ref(),
            warehouse,
            &self.sweep_request(&status.request_id),
            load,
        )
        .await
        .map_err(|e| DeliveryError::Transport(crate::error::error_chain(&e)))?;
        let counts = report.counts();
        tracing::info!(
            request_id = %status.request_id,
            loaded = counts.loaded,
            already_loaded = counts.already_loaded,
            quarantined = counts.quarantined,
            failed = counts.failed,
            "Export status: the request's objects were swept."
        );
        if let (Some(first), Some(last)) = (report.days.first(), report.days.last()) {
            let request = Request {
                first: *first,
                last: *last,
                timezone: load.timezone.clone(),
                now: jiff::Timestamp::now(),
                policy: Policy::default(),
            };
            reconcile_and_record(warehouse, &request)
                .await
                .map_err(|e| DeliveryError::Transport(crate::error::error_chain(&e)))?;
        }
        if let Some((uri, error)) = report.failures().next() {
            return Err(DeliveryError::Transport(format!(
                "{} of the request's objects failed to load, first {}: {}",
                counts.failed,
                crate::printable::escaped(uri),
                crate::printable::escaped(error)
            )));
        }
        Ok(())
    }

    /// Cloud mode: the loader's sweep, then the puller's `reconcile` of the days it reported.
    async fn sweep_by_invoking(
        &self,
        status: &ExportStatus,
        loader: &FunctionTarget,
        puller: &FunctionTarget,
        fallback: (Date, Date),
    ) -> Result<(), DeliveryError> {
        // The loader reads it as a `SweepRequest` (Cloud Run ignores `tapline`).
        let request = self.sweep_request(&status.request_id);
        let sweep = json!({
            "tapline": SWEEP_MARKER,
            "uri": request.uri,
            "window_days": request.window_days,
            "request_id": request.request_id,
        });
        let swept = self.invoker.invoke(loader, "/sweep", &sweep).await?;
        let (first, last) = reported_days(&swept).unwrap_or(fallback);
        tracing::info!(
            request_id = %status.request_id,
            loader = %loader.describe(),
            loaded = swept["loaded"].as_u64().unwrap_or(0),
            already_loaded = swept["already_loaded"].as_u64().unwrap_or(0),
            quarantined = swept["quarantined"].as_u64().unwrap_or(0),
            %first,
            %last,
            "Export status: the loader swept the request's objects."
        );
        let reconcile = json!({
            "tapline": "pull",
            "jobs": ["reconcile"],
            "from": first.to_string(),
            "to": last.to_string(),
        });
        let reconciled = self.invoker.invoke(puller, "/", &reconcile).await?;
        tracing::info!(
            request_id = %status.request_id,
            puller = %puller.describe(),
            days = reconciled["results"]["reconcile"]["days"].as_u64().unwrap_or(0),
            "Export status: the puller reconciled the request's days."
        );
        Ok(())
    }
}

/// The first and last of the export dates a sweep's answer lists (`"days"`), if any.
fn reported_days(answer: &Value) -> Option<(Date, Date)> {
    let days = answer.get("days")?.as_array()?;
    let mut parsed = days.iter().filter_map(|d| d.as_str()?.parse::<Date>().ok());
    let first = parsed.next()?;
    Some(parsed.fold((first, first), |(lo, hi), d| (lo.min(d), hi.max(d))))
}

/// The `days` days ending today in `timezone`.
fn last_days(timezone: &jiff::tz::TimeZone, days: u32, now: jiff::Timestamp) -> (Date, Date) {
    let today = timezone.to_datetime(now).date();
    let first = today
        .checked_sub(jiff::Span::new().days(i64::from(days.max(1)) - 1))
        .unwrap_or(today);
    (first, today)
}

#[async_trait]
impl Destination for ExportStatusDestination {
    async fn deliver(&self, attempt: DeliveryAttempt<'_>) -> Result<u16, DeliveryError> {
        let Some(status) = parse_export_status(attempt.body) else {
            return Err(DeliveryError::Rejected {
                destination: "export-status",
                detail: "not a CleverTap export status (no \"Export Request Id\" and \"Status\")"
                    .to_string(),
            });
        };
        if !status.status.eq_ignore_ascii_case("completed") {
            return Ok(200);
        }
        match &self.mode {
            ExportStatusMode::Local { url, load } => self.sweep_here(&status, url, load).await?,
            ExportStatusMode::Cloud {
                loader,
                puller,
                reconcile_days,
                timezone,
                ..
            } => {
                let fallback = last_days(timezone, *reconcile_days, jiff::Timestamp::now());
                self.sweep_by_invoking(&status, loader, puller, fallback)
                    .await?
            }
        }
        Ok(200)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_status_parses_and_other_bodies_do_not() {
        let documented = br#"{"Export Request Id": 1690283492, "Partner": "Google Cloud Storage", "Type": "Events", "Status": "Completed", "Frequency": "One Time", "Date and Time": "25/07/2023 4:50:52 PM"}"#;
        assert_eq!(
            parse_export_status(documented),
            Some(ExportStatus {
                request_id: "1690283492".into(),
                status: "Completed".into(),
                kind: Some("Events".into()),
            })
        );
        let as_text = br#"{"export request id": "1690283492", "status": "Initiated"}"#;
        assert_eq!(parse_export_status(as_text).unwrap().status, "Initiated");
        for bad in [
            &br#"{"Status": "Completed"}"#[..],
            br#"{"Export Request Id": "../../etc", "Status": "Completed"}"#,
            br#"{"Export Request Id": -1, "Status": "Completed"}"#,
            br#"[1, 2]"#,
            b"not json",
        ] {
            assert_eq!(
                parse_export_status(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let huge = vec![b' '; MAX_STATUS_BYTES + 1];
        assert_eq!(parse_export_status(&huge), None);
    }

    #[test]
    fn the_reconciled_days_are_the_swept_ones_or_the_last_few() {
        let d = |s: &str| s.parse::<Date>().unwrap();
        let answer = json!({"days": ["2023-07-25", "2023-07-23", "not a day", 3]});
        assert_eq!(
            reported_days(&answer),
            Some((d("2023-07-23"), d("2023-07-25")))
        );
        assert_eq!(reported_days(&json!({"days": []})), None);
        assert_eq!(reported_days(&json!({"loaded": 1})), None);
        let kolkata = jiff::tz::TimeZone::get("Asia/Kolkata").unwrap();
        // 20:00 UTC on the 25th is already the 26th in Kolkata.
        let now: jiff::Timestamp = "2023-07-25T20:00:00Z".parse().unwrap();
        assert_eq!(
            last_days(&kolkata, 7, now),
            (d("2023-07-20"), d("2023-07-26"))
        );
        assert_eq!(
            last_days(&kolkata, 0, now),
            (d("2023-07-26"), d("2023-07-26"))
        );
    }
}
