//! Eventarc CloudEvents for Cloud Storage, in binary mode (`ce-*` headers, the
//! StorageObjectData as the body) and structured mode (`application/cloudevents+json`).

use serde::Deserialize;
use serde_json::Value;

use super::{Notice, ObjectRef, Store, TriggerError, json_int64};

/// The CloudEvent type of a newly written (or overwritten) object.
pub const CLOUDEVENT_FINALIZED: &str = "google.cloud.storage.object.v1.finalized";

/// Reads a CloudEvent delivered over HTTP. `header` looks a request header up by lowercase
/// name.
pub fn from_cloudevent(
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
) -> Result<Vec<Notice>, TriggerError> {
    let structured =
        header("content-type").is_some_and(|c| c.starts_with("application/cloudevents+json"));
    let (event_type, data) = if structured {
        let event: Value = serde_json::from_slice(body).map_err(TriggerError::Json)?;
        let event_type = event
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| TriggerError::Unrecognised("structured CloudEvent without type".into()))?
            .to_string();
        let data = event.get("data").cloned().ok_or_else(|| {
            TriggerError::Unrecognised("structured CloudEvent without data".into())
        })?;
        (event_type, data)
    } else {
        let event_type = header("ce-type").ok_or_else(|| {
            TriggerError::Unrecognised("no ce-type header and not a structured CloudEvent".into())
        })?;
        (
            event_type,
            serde_json::from_slice(body).map_err(TriggerError::Json)?,
        )
    };
    if event_type != CLOUDEVENT_FINALIZED {
        return Ok(vec![Notice::Ignore(format!("CloudEvent {event_type}"))]);
    }
    let object: StorageObjectData = serde_json::from_value(data).map_err(TriggerError::Json)?;
    Ok(vec![Notice::Object(ObjectRef {
        store: Store::Gcs,
        bucket: object.bucket,
        // GCS object names arrive as written: no decoding.
        key: object.name,
        version: object.generation,
        size: object.size,
        created_at: super::event_time(object.time_created.as_ref()),
    })])
}

/// The fields of StorageObjectData Tapline reads; its int64 fields come as strings or numbers.
#[derive(Deserialize)]
struct StorageObjectData {
    bucket: String,
    name: String,
    #[serde(default, deserialize_with = "json_int64::optional_decimal")]
    generation: Option<String>,
    #[serde(default, deserialize_with = "json_int64::optional_u64")]
    size: Option<u64>,
    #[serde(default, rename = "timeCreated")]
    time_created: Option<Value>,
}
