//! [`CleverTapUploadDestination`]: turns a webhook (a subscription platform's renewal or
//! cancellation, say) into CleverTap events or profile updates through the route's mapping, and
//! uploads them with `POST /1/upload` (`{"d":[…]}`, at most 1000 records a request, headers
//! `X-CleverTap-Account-Id` and `X-CleverTap-Passcode`).
//!
//! A payload no rule matches, a record without an identity, and records CleverTap reports as
//! `unprocessed` are permanent failures: the delivery becomes a dead letter that says why, so
//! nothing is dropped silently. A retry after a partial success would upload the processed
//! records twice, so partial successes are not retried.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::secret::Secret;
use crate::webhook_relay::destinations::{
    DeliveryAttempt, DeliveryError, Destination, parse_retry_after, snippet,
};
use crate::webhook_relay::payload::as_text;

/// Most records in one upload request (CleverTap's limit).
pub const MAX_RECORDS_PER_UPLOAD: usize = 1000;

/// The upload URL of a CleverTap region (`eu1` is `api.clevertap.com`).
pub fn upload_url(region: &str) -> String {
    match region {
        "eu1" | "" => "https://api.clevertap.com/1/upload".to_string(),
        other => format!("https://{other}.api.clevertap.com/1/upload"),
    }
}

/// What a matching rule makes of a payload.
#[derive(Debug, Clone, PartialEq)]
pub enum UploadRecordKind {
    /// An event with this name; `properties` become `evtData`.
    Event(String),
    /// A profile update; `properties` become `profileData`.
    Profile,
}

/// One mapping rule: when the payload's `when_field` equals `when_equals` (or always, without
/// `when_field`), upload one record.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadRule {
    /// Dotted path of the field to test, e.g. `type` or `data.event`.
    pub when_field: Option<String>,
    /// The value it must have (compared as text).
    pub when_equals: Option<String>,
    /// Event or profile update.
    pub kind: UploadRecordKind,
    /// Record property name → dotted path in the payload; missing fields are left out.
    pub properties: Vec<(String, String)>,
}

/// The mapping of one CleverTap destination.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadMapping {
    /// Dotted path of the user's identity in the payload (CleverTap's `identity`).
    pub identity: String,
    /// Dotted path of the event time (epoch seconds or milliseconds, or RFC 3339); the time the
    /// relay received the payload when absent.
    pub timestamp: Option<String>,
    /// The rules, in order; every matching rule makes one record.
    pub rules: Vec<UploadRule>,
}

/// The value at a dotted path (`data.customer.id`), `None` when missing or null.
pub fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let found = path
        .split('.')
        .try_fold(value, |v, key| v.as_object()?.get(key))?;
    (!found.is_null()).then_some(found)
}

fn epoch_seconds(value: &Value) -> Option<i64> {
    let n = match value {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => match s.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return s.parse::<jiff::Timestamp>().ok().map(|t| t.as_second()),
        },
        _ => return None,
    };
    // Milliseconds look like seconds in the far future: after year 2286.
    Some(if n > 10_000_000_000 { n / 1000 } else { n })
}

/// The upload records for `payload` under `mapping`, received at `received_at_ms`. An error says
/// why nothing can be uploaded (no rule matches, no identity).
pub fn upload_records(
    mapping: &UploadMapping,
    payload: &Value,
    received_at_ms: i64,
) -> Result<Vec<Value>, String> {
    let matching: Vec<&UploadRule> = mapping
        .rules
        .iter()
        .filter(|rule| match (&rule.when_field, &rule.when_equals) {
            (Some(field), Some(equals)) => {
                lookup(payload, field).is_some_and(|v| as_text(v) == *equals)
            }
            (Some(field), None) => lookup(payload, field).is_some(),
            _ => true,
        })
        .collect();
    if matching.is_empty() {
        return Err("no mapping rule matches this payload".into());
    }
    let identity = lookup(payload, &mapping.identity)
        .map(as_text)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| format!("no identity at {:?}", mapping.identity))?;
    let ts = mapping
        .timestamp
        .as_deref()
        .and_then(|path| lookup(payload, path))
        .and_then(epoch_seconds)
        .unwrap_or(received_at_ms.div_euclid(1000));
    Ok(matching
        .into_iter()
        .map(|rule| {
            let data: Map<String, Value> = rule
                .properties
                .iter()
                .filter_map(|(name, path)| Some((name.clone(), lookup(payload, path)?.clone())))
                .collect();
            match &rule.kind {
                UploadRecordKind::Event(name) => json!({
                    "identity": identity, "ts": ts, "type": "event",
                    "evtName": name, "evtData": data,
                }),
                UploadRecordKind::Profile => json!({
                    "identity": identity, "ts": ts, "type": "profile", "profileData": data,
                }),
            }
        })
        .collect())
}

/// Uploads mapped records to CleverTap.
pub struct CleverTapUploadDestination {
    client: reqwest::Client,
    url: String,
    account_id: String,
    passcode: Secret,
    mapping: UploadMapping,
    timeout: Duration,
}

impl CleverTapUploadDestination {
    /// A destination uploading to `url` (see [`upload_url`]) for `account_id`.
    pub fn new(
        client: reqwest::Client,
        url: String,
        account_id: String,
        passcode: Secret,
        mapping: UploadMapping,
        timeout: Duration,
    ) -> Self {
        Self {
            client,
            url,
            account_id,
            passcode,
            mapping,
            timeout,
        }
    }

    async fn upload(&self, records: &[Value], now_ms: i64) -> Result<u16, DeliveryError> {
        let response = self
            .client
            .post(&self.url)
            .header("X-CleverTap-Account-Id", &self.account_id)
            .header("X-CleverTap-Passcode", self.passcode.expose())
            .json(&json!({ "d": records }))
            .send()
            .await
            .map_err(|e| DeliveryError::from_reqwest(e, self.timeout))?;
        let status = response.status();
        let retry_after = parse_retry_after(response.headers(), now_ms);
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(DeliveryError::Status {
                status: status.as_u16(),
                body: snippet(&text, 300),
                retry_after,
            });
        }
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let unprocessed = answer["unprocessed"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if answer["status"] != "success" || !unprocessed.is_empty() {
            let detail = if unprocessed.is_empty() {
                snippet(&text, 300)
            } else {
                format!(
                    "{} of {} record(s) unprocessed: {}",
                    unprocessed.len(),
                    records.len(),
                    snippet(&Value::Array(unprocessed).to_string(), 500)
                )
            };
            return Err(DeliveryError::Rejected {
                destination: "CleverTap",
                detail,
            });
        }
        Ok(status.as_u16())
    }
}

#[async_trait]
impl Destination for CleverTapUploadDestination {
    async fn deliver(&self, attempt: DeliveryAttempt<'_>) -> Result<u16, DeliveryError> {
        let payload: Value = serde_json::from_slice(attempt.body).unwrap_or(Value::Null);
        let records =
            upload_records(&self.mapping, &payload, attempt.now_ms).map_err(|detail| {
                DeliveryError::Rejected {
                    destination: "the CleverTap mapping",
                    detail,
                }
            })?;
        let mut status = 200;
        for chunk in records.chunks(MAX_RECORDS_PER_UPLOAD) {
            status = self.upload(chunk, attempt.now_ms).await?;
        }
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> UploadMapping {
        UploadMapping {
            identity: "data.customer_id".into(),
            timestamp: Some("created_at".into()),
            rules: vec![
                UploadRule {
                    when_field: Some("type".into()),
                    when_equals: Some("subscription.renewed".into()),
                    kind: UploadRecordKind::Event("Subscription Renewed".into()),
                    properties: vec![
                        ("plan".into(), "data.plan".into()),
                        ("amount".into(), "data.amount".into()),
                        ("coupon".into(), "data.coupon".into()),
                    ],
                },
                UploadRule {
                    when_field: Some("type".into()),
                    when_equals: Some("subscription.renewed".into()),
                    kind: UploadRecordKind::Profile,
                    properties: vec![("Plan".into(), "data.plan".into())],
                },
            ],
        }
    }

    #[test]
    fn a_renewal_becomes_an_event_and_a_profile_update() {
        let payload = json!({"type":"subscription.renewed","created_at":"2026-11-28T10:00:00Z",
            "data":{"customer_id":42,"plan":"gold","amount":9.5}});
        let records = upload_records(&mapping(), &payload, 0).unwrap();
        assert_eq!(
            records[0],
            json!({"identity":"42","ts":1_795_860_000,"type":"event","evtName":"Subscription Renewed",
                   "evtData":{"plan":"gold","amount":9.5}})
        );
        assert_eq!(records[1]["profileData"], json!({"Plan":"gold"}));
    }

    #[test]
    fn no_match_and_no_identity_are_reasons_not_silence() {
        let other = json!({"type":"invoice.paid","data":{"customer_id":1}});
        assert!(
            upload_records(&mapping(), &other, 0)
                .unwrap_err()
                .contains("no mapping rule")
        );
        let anonymous = json!({"type":"subscription.renewed","data":{}});
        assert!(
            upload_records(&mapping(), &anonymous, 0)
                .unwrap_err()
                .contains("identity")
        );
        let millis = json!({"type":"subscription.renewed","created_at":1_795_860_000_123_i64,
            "data":{"customer_id":"c"}});
        assert_eq!(
            upload_records(&mapping(), &millis, 0).unwrap()[0]["ts"],
            1_795_860_000
        );
        assert_eq!(upload_url("in1"), "https://in1.api.clevertap.com/1/upload");
    }
}
