//! Pub/Sub push requests: the documented envelope a push subscription POSTs, and its message's
//! data decoded.
//!
//! ```json
//! {"message": {"data": "<base64>", "attributes": {...}, "messageId": "...", "message_id": "...",
//!              "publishTime": "..."},
//!  "subscription": "projects/P/subscriptions/S", "deliveryAttempt": 3}
//! ```

use std::collections::HashMap;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::TriggerError;

/// A push request as Pub/Sub sends it (the documented envelope).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PushEnvelope {
    /// The message.
    pub message: PushMessage,
    /// `projects/P/subscriptions/S`.
    #[serde(default)]
    pub subscription: String,
    /// The delivery attempt, from 1; present when the subscription has a dead-letter policy.
    #[serde(default, rename = "deliveryAttempt")]
    pub delivery_attempt: Option<u32>,
}

/// The message of a [`PushEnvelope`].
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PushMessage {
    /// The data, base64 ([`PushMessage::decoded_data`]).
    #[serde(default)]
    pub data: Option<String>,
    /// The attributes.
    #[serde(default)]
    pub attributes: HashMap<String, String>,
    /// Pub/Sub's id of the message. Pub/Sub sends it twice, as `messageId` and `message_id`:
    /// only the first is read (a serde alias would make the pair a duplicate field).
    #[serde(default, rename = "messageId")]
    pub message_id: String,
}

impl PushMessage {
    /// The message's data: `None` when it has none, an error when it is not base64.
    pub fn decoded_data(&self) -> Option<Result<Vec<u8>, TriggerError>> {
        self.data.as_deref().map(decode_data)
    }
}

/// A Pub/Sub message's `data` field (standard base64, as in push requests and pull answers).
pub fn decode_data(data: &str) -> Result<Vec<u8>, TriggerError> {
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| TriggerError::Unrecognised("Pub/Sub message data is not base64".into()))
}

/// Reads a push request's body.
pub fn from_pubsub_push(body: &[u8]) -> Result<PushEnvelope, TriggerError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(TriggerError::Json)?;
    serde_json::from_value(value)
        .map_err(|err| TriggerError::Unrecognised(format!("not a Pub/Sub push envelope: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The envelope as Google's push documentation shows it, both id spellings included.
    const DOCUMENTED: &str = r#"{
        "message": {
            "attributes": {"tapline_route": "alerts"},
            "data": "eyJhIjoxfQ==",
            "messageId": "2070443601311540",
            "message_id": "2070443601311540",
            "publishTime": "2021-02-26T19:13:55.749Z",
            "publish_time": "2021-02-26T19:13:55.749Z"
        },
        "subscription": "projects/myproject/subscriptions/mysubscription",
        "deliveryAttempt": 3
    }"#;

    #[test]
    fn the_documented_envelope_is_read() {
        let envelope = from_pubsub_push(DOCUMENTED.as_bytes()).unwrap();
        assert_eq!(envelope.delivery_attempt, Some(3));
        assert_eq!(envelope.message.message_id, "2070443601311540");
        assert_eq!(
            envelope.subscription,
            "projects/myproject/subscriptions/mysubscription"
        );
        assert_eq!(envelope.message.attributes["tapline_route"], "alerts");
        assert_eq!(
            envelope.message.decoded_data().unwrap().unwrap(),
            br#"{"a":1}"#
        );
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        assert!(matches!(
            from_pubsub_push(b"not json"),
            Err(TriggerError::Json(_))
        ));
        let err = from_pubsub_push(br#"{"subscription": "s"}"#).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "not a recognised event: not a Pub/Sub push envelope: missing field `message`"
            ),
            "{err}"
        );
        let envelope = from_pubsub_push(br#"{"message": {"data": "%%%"}}"#).unwrap();
        assert_eq!(
            envelope
                .message
                .decoded_data()
                .unwrap()
                .unwrap_err()
                .to_string(),
            "not a recognised event: Pub/Sub message data is not base64"
        );
        let envelope = from_pubsub_push(br#"{"message": {}}"#).unwrap();
        assert!(envelope.message.decoded_data().is_none());
    }
}
