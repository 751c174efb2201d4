//! The relay's dead letters on Google Cloud, listed and replayed (feature `pubsub`):
//! `tapline relay dead-letters|replay --from-pubsub SUBSCRIPTION [--to-topic TOPIC]`.
//!
//! The push worker publishes what it gives up on to the dead-letter topic, read through a pull
//! subscription (`PREFIX-relay-dead-letters` in `infra/gcp`). Listing pulls every message and
//! releases it again (`modifyAckDeadline` 0), so the list takes nothing away. Replaying publishes
//! each matching letter back to the delivery topic (the body as `data`, its `tapline_*`
//! delivery attributes, without the `tapline_dead_*` and `tapline_attempt_*` record of the
//! round that failed and without its retry state, `tapline_prior_attempts` and
//! `tapline_not_before_ms`), and only then acknowledges it; a letter that does not match the filter,
//! or is not a relay delivery (a message the subscription's own dead-letter policy moved), is
//! released, untouched. The worker starts a new round for a replayed delivery, due at once, under
//! the same `Idempotency-Key`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::google_auth::GoogleAuth;
use crate::triggers::decode_pubsub_data;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::webhook_relay::queue::pubsub::{
    ATTR_DELIVERY_ID, ATTR_DESTINATION, ATTR_NOT_BEFORE_MS, ATTR_PRIOR_ATTEMPTS,
    ATTR_RECEIVED_AT_MS, ATTR_ROUTE, OutgoingMessage, PubSubPublisher, call, endpoint_from_env,
};
use crate::webhook_relay::queue::{AttemptRecord, DeadLetterFilter, QueueError};

/// Messages asked for per pull.
const PULL_BATCH: u32 = 100;
/// Pulls at most, so that a subscription that keeps filling cannot keep the command running.
const MAX_PULLS: usize = 10_000;
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A pull subscription reached over REST (`…/v1/{subscription}:pull|acknowledge|modifyAckDeadline`).
#[derive(Debug, Clone)]
pub struct PubSubSubscription {
    endpoint: String,
    auth: GoogleAuth,
    http: reqwest::Client,
    name: String,
}

/// One pulled message.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// What acknowledges or releases it.
    pub ack_id: String,
    /// Pub/Sub's id of the message.
    pub message_id: String,
    /// Its data, decoded.
    pub data: Vec<u8>,
    /// Its attributes.
    pub attributes: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PullAnswer {
    #[serde(default)]
    received_messages: Vec<ReceivedMessage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReceivedMessage {
    ack_id: String,
    message: WireMessage,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMessage {
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    attributes: HashMap<String, String>,
    #[serde(default)]
    message_id: String,
}

impl PubSubSubscription {
    /// `subscription` (`projects/P/subscriptions/S`) at `endpoint` with `auth`.
    pub fn new(
        endpoint: &str,
        auth: GoogleAuth,
        subscription: impl Into<String>,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            auth,
            http: reqwest::Client::builder().timeout(CALL_TIMEOUT).build()?,
            name: subscription.into(),
        })
    }

    /// `subscription` where the environment says (`PUBSUB_EMULATOR_HOST`, else Google's
    /// endpoint with Application Default Credentials).
    pub fn from_env(
        subscription: impl Into<String>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let (endpoint, auth) = endpoint_from_env()?;
        Ok(Self::new(&endpoint, auth, subscription)?)
    }

    async fn call(&self, method: &str, body: Value) -> Result<Value, QueueError> {
        call(
            &self.http,
            &self.auth,
            &self.endpoint,
            &self.name,
            method,
            &body,
        )
        .await
    }

    /// Up to `max` messages; none when nothing is available.
    pub async fn pull(&self, max: u32) -> Result<Vec<Pulled>, QueueError> {
        let answer = self.call("pull", json!({"maxMessages": max})).await?;
        let answer: PullAnswer = serde_json::from_value(answer).map_err(|e| QueueError::Cloud {
            queue: self.name.clone(),
            reason: format!("pull answered an unexpected shape: {e}"),
            retryable: false,
        })?;
        Ok(answer
            .received_messages
            .into_iter()
            .map(|r| Pulled {
                ack_id: r.ack_id,
                message_id: r.message.message_id,
                data: r
                    .message
                    .data
                    .and_then(|d| decode_pubsub_data(&d).ok())
                    .unwrap_or_default(),
                attributes: r.message.attributes,
            })
            .collect())
    }

    /// Acknowledges (removes) these messages.
    pub async fn acknowledge(&self, ack_ids: &[String]) -> Result<(), QueueError> {
        if ack_ids.is_empty() {
            return Ok(());
        }
        self.call("acknowledge", json!({"ackIds": ack_ids}))
            .await
            .map(|_| ())
    }

    /// Makes these messages available again at once.
    pub async fn release(&self, ack_ids: &[String]) -> Result<(), QueueError> {
        if ack_ids.is_empty() {
            return Ok(());
        }
        self.call(
            "modifyAckDeadline",
            json!({"ackIds": ack_ids, "ackDeadlineSeconds": 0}),
        )
        .await
        .map(|_| ())
    }
}

/// A dead letter as read from the subscription.
#[derive(Debug, Clone)]
pub struct CloudDeadLetter {
    /// The delivery id (`Idempotency-Key`).
    pub delivery_id: String,
    /// Its route.
    pub route: String,
    /// Its destination within the route.
    pub destination: String,
    /// When the payload was received (Unix ms).
    pub received_at_ms: Option<i64>,
    /// Body size.
    pub bytes: usize,
    /// When the worker gave it up (Unix ms, `tapline_dead_at_ms`), if it says.
    pub dead_at_ms: Option<i64>,
    /// Every attempt the letter lists (`tapline_attempt_N`), oldest first.
    pub attempts: Vec<AttemptRecord>,
}

/// What a pass over the subscription found and did.
#[derive(Debug, Default)]
pub struct CloudReplay {
    /// The relay dead letters that matched the filter (replayed, unless listing).
    pub matched: Vec<CloudDeadLetter>,
    /// How many relay dead letters matched the filter (`matched.len()`, when they are kept).
    pub listed: usize,
    /// Relay dead letters left alone by the filter.
    pub filtered_out: usize,
    /// Messages that are not relay deliveries, left alone.
    pub not_relay: usize,
}

fn letter_of(message: &Pulled) -> Option<CloudDeadLetter> {
    let attr = |name: &str| message.attributes.get(name).cloned();
    let mut attempts: Vec<(usize, AttemptRecord)> = message
        .attributes
        .iter()
        .filter_map(|(k, v)| {
            let n = k.strip_prefix("tapline_attempt_")?.parse().ok()?;
            Some((n, serde_json::from_str(v).ok()?))
        })
        .collect();
    attempts.sort_by_key(|(n, _)| *n);
    Some(CloudDeadLetter {
        delivery_id: attr(ATTR_DELIVERY_ID)?,
        route: attr(ATTR_ROUTE)?,
        destination: attr(ATTR_DESTINATION).unwrap_or_default(),
        received_at_ms: attr(ATTR_RECEIVED_AT_MS).and_then(|t| t.parse().ok()),
        bytes: message.data.len(),
        dead_at_ms: attr("tapline_dead_at_ms").and_then(|t| t.parse().ok()),
        attempts: attempts.into_iter().map(|(_, a)| a).collect(),
    })
}

fn matches(letter: &CloudDeadLetter, filter: &DeadLetterFilter) -> bool {
    filter.route.as_ref().is_none_or(|r| *r == letter.route)
        && filter
            .since_ms
            .is_none_or(|since| letter.received_at_ms.is_some_and(|at| at >= since))
}

/// The delivery as the endpoint published it: the dead-letter record of the failed round (and
/// Pub/Sub's own dead-letter attributes) removed.
fn as_delivery(message: &Pulled) -> OutgoingMessage {
    OutgoingMessage {
        data: message.data.clone(),
        attributes: message
            .attributes
            .iter()
            .filter(|(k, _)| {
                !k.starts_with("tapline_dead_")
                    && !k.starts_with("tapline_attempt_")
                    && k.as_str() != ATTR_PRIOR_ATTEMPTS
                    && k.as_str() != ATTR_NOT_BEFORE_MS
                    && !k.starts_with("CloudPubSubDeadLetter")
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// Goes over every message of `subscription` once: with `to` (the delivery topic), publishes
/// each relay dead letter that passes `filter` back to it and acknowledges it; without, only
/// lists them. Everything else is released untouched.
pub async fn replay_dead_letters(
    subscription: &PubSubSubscription,
    to: Option<&PubSubPublisher>,
    filter: &DeadLetterFilter,
) -> Result<CloudReplay, QueueError> {
    let mut matched = Vec::new();
    let mut outcome = pass_over(subscription, to, filter, |letter| matched.push(letter)).await?;
    outcome.matched = matched;
    Ok(outcome)
}

/// Lists every relay dead letter of `subscription` once, handing each to `each` as it is read
/// (so the caller decides what to keep: `tapline report` keeps the newest few), and releases
/// every message. The answer's `matched` is empty; its counts are filled.
pub async fn list_dead_letters(
    subscription: &PubSubSubscription,
    each: impl FnMut(CloudDeadLetter),
) -> Result<CloudReplay, QueueError> {
    pass_over(subscription, None, &DeadLetterFilter::default(), each).await
}

/// [`replay_dead_letters`] with each matching letter handed to `each` instead of kept.
async fn pass_over(
    subscription: &PubSubSubscription,
    to: Option<&PubSubPublisher>,
    filter: &DeadLetterFilter,
    mut each: impl FnMut(CloudDeadLetter),
) -> Result<CloudReplay, QueueError> {
    let mut outcome = CloudReplay::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut to_release: Vec<String> = Vec::new();
    let result = async {
        for _ in 0..MAX_PULLS {
            let pulled = subscription.pull(PULL_BATCH).await?;
            let fresh: Vec<Pulled> = pulled
                .into_iter()
                .filter_map(|m| {
                    if seen.insert(m.message_id.clone()) {
                        Some(m)
                    } else {
                        // Released earlier in this pass and pulled again: done with it.
                        to_release.push(m.ack_id);
                        None
                    }
                })
                .collect();
            if fresh.is_empty() {
                break;
            }
            for message in fresh {
                let Some(letter) = letter_of(&message) else {
                    outcome.not_relay += 1;
                    to_release.push(message.ack_id);
                    continue;
                };
                if !matches(&letter, filter) {
                    outcome.filtered_out += 1;
                    to_release.push(message.ack_id);
                    continue;
                }
                match to {
                    Some(topic) => {
                        topic.publish(&[as_delivery(&message)]).await?;
                        subscription
                            .acknowledge(std::slice::from_ref(&message.ack_id))
                            .await?;
                    }
                    None => to_release.push(message.ack_id),
                }
                outcome.listed += 1;
                each(letter);
            }
        }
        Ok::<(), QueueError>(())
    }
    .await;
    // Whatever happened, what was only looked at goes back at once.
    let released = subscription.release(&to_release).await;
    result?;
    released?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pulled(attributes: &[(&str, &str)]) -> Pulled {
        Pulled {
            ack_id: "a".into(),
            message_id: "1".into(),
            data: b"{}".to_vec(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_letter_is_read_with_its_attempts_and_replayed_without_its_record() {
        let attempt = r#"{"attempt":2,"at_ms":5,"duration_ms":1,"status":502,"outcome":"retryable","error":"HTTP 502"}"#;
        let first = r#"{"attempt":1,"at_ms":1,"duration_ms":1,"status":503,"outcome":"retryable","error":null}"#;
        let message = pulled(&[
            ("tapline_delivery_id", "p1.crm"),
            ("tapline_payload_id", "p1"),
            ("tapline_route", "alerts"),
            ("tapline_destination", "crm"),
            ("tapline_received_at_ms", "1000"),
            ("tapline_dead_outcome", "retryable"),
            ("tapline_attempt_2", attempt),
            ("tapline_attempt_1", first),
            ("CloudPubSubDeadLetterSourceDeliveryCount", "5"),
            // Moved by the subscription's own policy mid-round: its retry state goes too.
            ("tapline_prior_attempts", "3"),
            ("tapline_not_before_ms", "99999"),
        ]);
        let letter = letter_of(&message).unwrap();
        assert_eq!(
            letter
                .attempts
                .iter()
                .map(|a| a.attempt)
                .collect::<Vec<_>>(),
            [1, 2]
        );
        let filter = |route: Option<&str>, since: Option<i64>| DeadLetterFilter {
            route: route.map(str::to_string),
            since_ms: since,
        };
        assert!(matches(&letter, &filter(Some("alerts"), Some(1000))));
        assert!(!matches(&letter, &filter(Some("other"), None)));
        assert!(!matches(&letter, &filter(None, Some(1001))));
        let mut keys: Vec<String> = as_delivery(&message).attributes.into_keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "tapline_delivery_id",
                "tapline_destination",
                "tapline_payload_id",
                "tapline_received_at_ms",
                "tapline_route"
            ]
        );
        assert!(letter_of(&pulled(&[("other", "x")])).is_none());
    }
}
