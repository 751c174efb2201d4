//! AWS payloads: S3 event notifications (direct, in SQS, in SNS in SQS), S3 test events,
//! EventBridge "Object Created" events (direct or in SQS), the SQS event itself and the partial
//! batch response (`batchItemFailures`) every SQS-fed function answers with.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Notice, ObjectRef, Store, TriggerError, json_int64};

/// One SQS message of a Lambda batch and what its body announced.
#[derive(Debug)]
pub struct SqsMessage {
    /// The id a partial batch response names to have this message delivered again.
    pub message_id: String,
    /// What the body said, or why it could not be read.
    pub notices: Result<Vec<Notice>, TriggerError>,
}

/// A Lambda invocation's payload: an SQS batch (each message on its own, so one bad message
/// fails alone) or a direct S3 / EventBridge event.
#[derive(Debug)]
pub enum Invocation {
    /// Messages from an SQS event source mapping.
    Sqs(Vec<SqsMessage>),
    /// A direct S3 notification or EventBridge event.
    Direct(Vec<Notice>),
}

/// Reads a Lambda invocation payload from its bytes; see [`from_lambda_event`].
pub fn from_lambda_payload(payload: &[u8]) -> Result<Invocation, TriggerError> {
    from_lambda_event(serde_json::from_slice(payload).map_err(TriggerError::Json)?)
}

/// Reads a Lambda invocation payload as the runtime hands it over (already JSON, so it is not
/// parsed again): an SQS batch, each message body read on its own, or a direct event.
pub fn from_lambda_event(value: Value) -> Result<Invocation, TriggerError> {
    if SqsEvent::is_sqs_event(&value) {
        let batch = SqsEvent::deserialize(value).map_err(TriggerError::Json)?;
        return Ok(Invocation::Sqs(
            batch
                .records
                .into_iter()
                .map(|m| SqsMessage {
                    notices: from_message_body(&m.body),
                    message_id: m.message_id,
                })
                .collect(),
        ));
    }
    from_value(value).map(Invocation::Direct)
}

/// An SQS event as Lambda hands it to a function (the documented shape; only what Tapline
/// reads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqsEvent {
    /// The messages.
    #[serde(rename = "Records")]
    pub records: Vec<SqsRecord>,
}

impl SqsEvent {
    /// Whether `value` is an SQS event: its first record comes from `aws:sqs` (an S3
    /// notification has `Records` too).
    pub fn is_sqs_event(value: &Value) -> bool {
        value
            .get("Records")
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .and_then(|r| r.get("eventSource"))
            .and_then(Value::as_str)
            == Some("aws:sqs")
    }
}

/// One message of an [`SqsEvent`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsRecord {
    /// What a partial batch response names to have this message delivered again.
    pub message_id: String,
    /// For changing the message's visibility or deleting it; Lambda always sends it (empty
    /// when a hand-written event leaves it out).
    #[serde(default)]
    pub receipt_handle: String,
    /// The message body, as sent.
    pub body: String,
    /// System attributes (`ApproximateReceiveCount` among others).
    #[serde(default)]
    pub attributes: HashMap<String, String>,
}

/// The answer of a function fed by SQS with `ReportBatchItemFailures`: the messages to
/// deliver again; every other message of the batch is deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItemFailures {
    /// The failed messages.
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<BatchItemFailure>,
}

/// One message of a [`BatchItemFailures`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItemFailure {
    /// The message id ([`SqsRecord::message_id`]).
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

impl BatchItemFailures {
    /// The response naming `message_ids`, in order.
    pub fn of<S: Into<String>>(message_ids: impl IntoIterator<Item = S>) -> Self {
        Self {
            batch_item_failures: message_ids
                .into_iter()
                .map(|id| BatchItemFailure {
                    item_identifier: id.into(),
                })
                .collect(),
        }
    }

    /// `{"batchItemFailures":[{"itemIdentifier":…}]}`, what Lambda reads.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| unreachable!("plain strings serialise"))
    }
}

/// Reads an SQS message body: an S3 notification, an S3 test event, an EventBridge event, or
/// any of these inside an SNS envelope.
pub fn from_message_body(body: &str) -> Result<Vec<Notice>, TriggerError> {
    from_value(serde_json::from_str(body).map_err(TriggerError::Json)?)
}

fn from_value(value: Value) -> Result<Vec<Notice>, TriggerError> {
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        // S3 sends one when a notification is configured; there is no object.
        return Ok(vec![Notice::Ignore("s3:TestEvent".to_string())]);
    }
    if value.get("Records").is_some() {
        let n: S3Notification = serde_json::from_value(value).map_err(TriggerError::Json)?;
        return n.records.into_iter().map(s3_record).collect();
    }
    if value.get("detail-type").is_some() {
        let e: EventBridge = serde_json::from_value(value).map_err(TriggerError::Json)?;
        return eventbridge(e).map(|n| vec![n]);
    }
    if value.get("Type").and_then(Value::as_str) == Some("Notification") {
        let message = value
            .get("Message")
            .and_then(Value::as_str)
            .ok_or_else(|| TriggerError::Unrecognised("SNS envelope without Message".into()))?;
        return from_message_body(message);
    }
    let keys: Vec<&str> = value
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    Err(TriggerError::Unrecognised(format!(
        "expected an S3, SQS, SNS or EventBridge event; top-level keys: {keys:?}"
    )))
}

fn s3_record(r: S3Record) -> Result<Notice, TriggerError> {
    if !r.event_name.starts_with("ObjectCreated:") {
        return Ok(Notice::Ignore(format!("S3 event {}", r.event_name)));
    }
    Ok(Notice::Object(ObjectRef {
        store: Store::S3,
        bucket: r.s3.bucket.name,
        key: decode_s3_key(&r.s3.object.key)?,
        // The ETag, like a listing gives: an object loaded from its event and later seen by a
        // sweep must have one version string, or the sweep would load it again.
        version: r.s3.object.e_tag.or(r.s3.object.version_id),
        size: r.s3.object.size,
        created_at: super::event_time(r.event_time.as_ref()),
    }))
}

fn eventbridge(e: EventBridge) -> Result<Notice, TriggerError> {
    if e.source != "aws.s3" || e.detail_type != "Object Created" {
        return Ok(Notice::Ignore(format!("{} {}", e.source, e.detail_type)));
    }
    // EventBridge carries the key as written (AWS's examples show ':' unescaped), unlike S3
    // notifications, which URL-encode it.
    Ok(Notice::Object(ObjectRef {
        store: Store::S3,
        bucket: e.detail.bucket.name,
        key: e.detail.object.key,
        version: e.detail.object.etag.or(e.detail.object.version_id),
        size: e.detail.object.size,
        created_at: super::event_time(e.time.as_ref()),
    }))
}

/// Decodes a key from an S3 event notification: `+` is a space, then percent-decoding
/// (`my+file%2B1.csv` → `my file+1.csv`).
pub fn decode_s3_key(raw: &str) -> Result<String, TriggerError> {
    let bad = || TriggerError::BadKey(raw.to_string());
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad())
}

impl SqsRecord {
    /// How many times SQS has handed this message out (`ApproximateReceiveCount`), from 1.
    pub fn receive_count(&self) -> u32 {
        self.attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1)
    }
}

/// Lambda's partial batch response for `message_ids` as JSON (see [`BatchItemFailures`]).
pub fn batch_item_failures<I, S>(message_ids: I) -> Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    BatchItemFailures::of(message_ids.into_iter().map(|id| id.as_ref().to_string())).to_json()
}

#[derive(Deserialize)]
struct S3Notification {
    #[serde(rename = "Records")]
    records: Vec<S3Record>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Record {
    event_name: String,
    /// Any JSON: a time that is not text is unknown, not a bad event.
    #[serde(default)]
    event_time: Option<Value>,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: Named,
    object: S3Object,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Object {
    key: String,
    #[serde(default, deserialize_with = "json_int64::optional_u64")]
    size: Option<u64>,
    e_tag: Option<String>,
    version_id: Option<String>,
}

#[derive(Deserialize)]
struct EventBridge {
    source: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    #[serde(default)]
    time: Option<Value>,
    detail: EventBridgeDetail,
}

#[derive(Deserialize)]
struct EventBridgeDetail {
    bucket: Named,
    object: EventBridgeObject,
}

#[derive(Deserialize)]
struct EventBridgeObject {
    key: String,
    #[serde(default, deserialize_with = "json_int64::optional_u64")]
    size: Option<u64>,
    etag: Option<String>,
    #[serde(rename = "version-id")]
    version_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_the_way_s3_encodes_them() {
        assert_eq!(decode_s3_key("my+file%2B1.csv").unwrap(), "my file+1.csv");
        assert_eq!(
            decode_s3_key("exports/1663664837-1663785000-Order-Placed-20220921-0-0.csv.gz")
                .unwrap(),
            "exports/1663664837-1663785000-Order-Placed-20220921-0-0.csv.gz"
        );
        assert_eq!(decode_s3_key("caf%C3%A9%3A1").unwrap(), "café:1");
        assert!(matches!(
            decode_s3_key("bad%2"),
            Err(TriggerError::BadKey(_))
        ));
        assert!(matches!(
            decode_s3_key("bad%zz"),
            Err(TriggerError::BadKey(_))
        ));
        assert!(matches!(
            decode_s3_key("bad%ff"),
            Err(TriggerError::BadKey(_))
        ));
    }

    #[test]
    fn partial_batch_responses_have_lambdas_shape() {
        assert_eq!(
            BatchItemFailures::of(["m-1", "m-2"]).to_json(),
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": "m-1"}, {"itemIdentifier": "m-2"}]})
        );
        assert_eq!(
            BatchItemFailures::of(Vec::<String>::new()).to_json(),
            serde_json::json!({"batchItemFailures": []})
        );
    }

    #[test]
    fn unknown_json_names_what_it_saw() {
        let err = from_message_body(r#"{"hello":1}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a recognised event: expected an S3, SQS, SNS or EventBridge event; top-level keys: [\"hello\"]"
        );
        assert!(matches!(
            from_message_body("nope"),
            Err(TriggerError::Json(_))
        ));
    }
}
