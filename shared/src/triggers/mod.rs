//! Cloud event payloads, parsed once, to what they announce, for every job's entry points.
//!
//! Pure parsing over the documented shapes (S3 event notifications, the same wrapped in SQS or
//! SNS, EventBridge "Object Created", the SQS event and its partial batch response, Eventarc
//! CloudEvents for GCS, Pub/Sub push requests); entry points decide what to do with each. Nothing here names an SDK
//! type.

mod aws;
mod gcs;
mod json_int64;
mod pubsub;

pub use aws::{
    BatchItemFailure, BatchItemFailures, Invocation, SqsEvent, SqsMessage, SqsRecord,
    batch_item_failures, decode_s3_key, from_lambda_event, from_lambda_payload, from_message_body,
};
pub use gcs::{CLOUDEVENT_FINALIZED, from_cloudevent};
pub use pubsub::{PushEnvelope, PushMessage, decode_data as decode_pubsub_data, from_pubsub_push};

/// Where an announced object lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// Amazon S3.
    S3,
    /// Google Cloud Storage.
    Gcs,
}

/// One object an event announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// S3 or GCS.
    pub store: Store,
    /// Bucket name.
    pub bucket: String,
    /// Object key, decoded (S3 notifications encode it).
    pub key: String,
    /// S3 ETag (what a listing reports too), GCS generation, when the event carries one.
    pub version: Option<String>,
    /// Size in bytes, when the event carries it.
    pub size: Option<u64>,
    /// When the object was created, when the event says (S3 `eventTime`, EventBridge `time`,
    /// GCS `timeCreated`); a value that does not parse is unknown, never an error.
    pub created_at: Option<jiff::Timestamp>,
}

/// An event's time field, read leniently: RFC 3339 text, else unknown (a number, an object or
/// bad text fails nothing).
pub(crate) fn event_time(value: Option<&serde_json::Value>) -> Option<jiff::Timestamp> {
    value?.as_str()?.parse().ok()
}

impl ObjectRef {
    /// `s3://bucket/key` or `gs://bucket/key`: the ledger's uri for the object.
    pub fn uri(&self) -> String {
        let scheme = match self.store {
            Store::S3 => "s3",
            Store::Gcs => "gs",
        };
        format!("{scheme}://{}/{}", self.bucket, self.key)
    }
}

/// What one event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// An object was created: load it.
    Object(ObjectRef),
    /// Nothing to load, and why (a test event, a deletion).
    Ignore(String),
}

/// A payload that is not an event Tapline understands.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// Not JSON at all.
    #[error("the event is not valid JSON")]
    Json(#[source] serde_json::Error),
    /// JSON, but of no known event shape.
    #[error("not a recognised event: {0}")]
    Unrecognised(String),
    /// An S3 key whose percent-encoding is broken.
    #[error("object key {0:?} is not valid URL encoding")]
    BadKey(String),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::event_time;

    #[test]
    fn an_event_time_that_is_not_rfc3339_text_is_unknown() {
        assert_eq!(
            event_time(Some(&json!("2022-09-21T18:30:05.123Z"))),
            Some("2022-09-21T18:30:05.123Z".parse().unwrap())
        );
        for hostile in [
            json!("yesterday"),
            json!("28/Nov/2026:09:15:00 +0000"),
            json!(1663785005),
            json!({"t": 1}),
            json!(null),
        ] {
            assert_eq!(event_time(Some(&hostile)), None, "{hostile}");
        }
        assert_eq!(event_time(None), None);
    }
}
