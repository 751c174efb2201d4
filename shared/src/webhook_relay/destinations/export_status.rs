//! [`ExportStatusDestination`]: CleverTap's export status notification turned into a sweep and a
//! reconcile, so completeness is checked the moment CleverTap says an export is done.
//!
//! CleverTap POSTs, when an export to S3 or GCS starts and when it completes,
//! `{"Export Request Id": 1690283492, "Partner": "Google Cloud Storage", "Type": "Events",
//! "Status": "Completed", "Frequency": "One Time", "Date and Time": "25/07/2023 4:50:52 PM"}`.
//! On `Completed`, this destination lists the export location (`source`: `s3://…`, `gs://…` or
//! a local folder), loads that request's objects the ledger lacks (exactly once, as a sweep
//! does), then reconciles the days they cover and records the verdicts in
//! `_tapline_completeness` (alerts stay with the scheduled puller's `reconcile` job, which sends
//! each once). Any other status is acknowledged and does nothing.
//!
//! An object that failed to load makes the delivery fail retryably (the relay tries again with
//! backoff; loaded objects are not loaded twice). A body that is no export status is refused for
//! good (dead letter). The sweep runs within the relay's delivery timeout: set
//! `settings.delivery_timeout_secs` to what one export's load takes.

use std::collections::BTreeSet;
use std::sync::Mutex;

use async_trait::async_trait;
use jiff::civil::Date;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::config::LoadConfig;
use crate::export::object_name::{Recognition, recognise};
use crate::export_loader::sweep::{SweepRequest, sweep_matching};
use crate::reconcile::{Policy, Request, reconcile_and_record};
use crate::secret::Secret;
use crate::warehouse::Warehouse;
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

/// Sweeps one export request's objects and reconciles their days.
pub struct ExportStatusDestination {
    source: String,
    url: Secret,
    load: LoadConfig,
    warehouse: OnceCell<Box<dyn Warehouse>>,
}

impl ExportStatusDestination {
    /// A destination sweeping `source` into the warehouse `url` names, with `load`'s validation
    /// and time zone (days are the project's). Nothing is opened yet.
    pub fn new(source: String, url: Secret, load: LoadConfig) -> Self {
        Self {
            source,
            url,
            load,
            warehouse: OnceCell::new(),
        }
    }

    async fn warehouse(&self) -> Result<&dyn Warehouse, DeliveryError> {
        let warehouse = self
            .warehouse
            .get_or_try_init(|| crate::warehouse::open::open(self.url.expose()))
            .await
            .map_err(|e| DeliveryError::Transport(crate::error::error_chain(&e)))?;
        Ok(warehouse.as_ref())
    }
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
        let warehouse = self.warehouse().await?;
        let source = crate::storage::source_for(&self.source)
            .await
            .map_err(|e| DeliveryError::Transport(crate::error::error_chain(&e)))?;
        let days: Mutex<BTreeSet<Date>> = Mutex::new(BTreeSet::new());
        let request = SweepRequest {
            uri: self.source.clone(),
            since: None,
            window_days: Some(0),
        };
        let keep = |entry: &crate::storage::ObjectEntry| match recognise(&entry.key) {
            Recognition::Export(o) if o.request_id.as_deref() == Some(&status.request_id) => {
                if let (Some(day), Ok(mut days)) = (o.data_date, days.lock()) {
                    days.insert(day);
                }
                true
            }
            _ => false,
        };
        let report = sweep_matching(source.as_ref(), warehouse, &request, &self.load, keep)
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
        let days = days.into_inner().unwrap_or_default();
        if let (Some(first), Some(last)) = (days.first(), days.last()) {
            let request = Request {
                first: *first,
                last: *last,
                timezone: self.load.timezone.clone(),
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
}
