//! The relay on Google Cloud (feature `pubsub`): the public Cloud Run service publishes each
//! accepted payload to the delivery topic ([`PubSubAcceptQueue`], one message per destination,
//! so the accept is durable once Pub/Sub has it), and a push subscription hands each message to
//! the internal worker service ([`PubSubDeliveryHandler`] behind [`push_router`]).
//!
//! A message's `data` is the webhook body exactly as received; its attributes say where it
//! goes (`tapline_route`, `tapline_destination`) and name it (`tapline_delivery_id`, the
//! `Idempotency-Key`; `tapline_payload_id`; `tapline_received_at_ms`). A dead letter is readable
//! as it is: the body, plus `tapline_dead_*` attributes with the last attempt's outcome.
//!
//! The retry schedule is the worker's, not Pub/Sub's: Pub/Sub waits at most 600 s between pushes
//! and gives up after at most 100, far short of the schedule's day. After a failed attempt the
//! worker publishes the delivery again (same body and ids, so dedupe and `Idempotency-Key` hold)
//! with the attempts made (`tapline_prior_attempts`) and when the next one is due
//! (`tapline_not_before_ms`), and acknowledges the push. A push that comes before its due time,
//! or while its destination is paused (the circuit breaker, [`crate::webhook_relay::delivery::round::DestinationPauses`]), is **held**:
//! answered 503 without touching the destination, so Pub/Sub pushes it again after its backoff;
//! a held push close to the subscription's `max_delivery_attempts`
//! ([`ENV_MAX_DELIVERY_ATTEMPTS`]) is published again fresh instead, so holds never reach the
//! subscription's dead-letter policy. Nothing is kept in an instance's memory but the breaker:
//! any instance, or a new one after a scale to zero, reads a delivery's state off its message.
//! The worker dead-letters itself, with every attempt's record, when the schedule is exhausted
//! or the failure is permanent; the subscription's dead-letter policy is the safety net for a
//! message the worker never settles (a crash, a malformed message, a topic it cannot publish to).
//!
//! The dedupe window: Pub/Sub cannot look back, so both copies of a payload sent twice are
//! published, and the worker claims each delivery in a GCS bucket before attempting it
//! ([`PubSubDeliveryHandler::with_dedupe`], [`crate::webhook_relay::dedupe::gcs`]); the second copy within the
//! window is acknowledged without an attempt.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::google_auth::GoogleAuth;
use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};
use tracing::{debug, error, info, warn};

use crate::clock::Clock;
use crate::triggers::from_pubsub_push;
pub use crate::triggers::{PushEnvelope, PushMessage};
use crate::webhook_relay::dedupe::Claim;
use crate::webhook_relay::dedupe::attempt_log::AttemptLog;
use crate::webhook_relay::dedupe::gcs::GcsDedupe;
use crate::webhook_relay::delivery::round::{DestinationMap, Redelivery, Round, claim_in};
use crate::webhook_relay::queue::{
    AcceptQueue, AttemptRecord, Delivery, Enqueued, IncomingPayload, QueueError, Settle,
};
use crate::webhook_relay::retry::DeliveryRetry;

/// The delivery topic (`projects/P/topics/T`), for the endpoint.
pub const ENV_TOPIC: &str = "TAPLINE_RELAY_TOPIC";
/// The dead-letter topic (`projects/P/topics/T`), for the worker.
pub const ENV_DEAD_LETTER_TOPIC: &str = "TAPLINE_RELAY_DEAD_LETTER_TOPIC";
/// The push subscription's `max_delivery_attempts`, for the worker: a held push close to it is
/// published again fresh rather than left to the subscription's dead-letter policy.
pub const ENV_MAX_DELIVERY_ATTEMPTS: &str = "TAPLINE_RELAY_MAX_DELIVERY_ATTEMPTS";
/// Without [`ENV_MAX_DELIVERY_ATTEMPTS`]: the least Pub/Sub allows, so safe with any subscription.
pub const DEFAULT_MAX_DELIVERY_ATTEMPTS: u32 = 5;
/// `HOST:PORT` of a Pub/Sub emulator (or the tests' double): plain HTTP, no token. The variable
/// Google's own client libraries read.
pub const ENV_EMULATOR_HOST: &str = "PUBSUB_EMULATOR_HOST";
/// Google's endpoint.
pub const PRODUCTION_ENDPOINT: &str = "https://pubsub.googleapis.com";
/// Messages in one publish request (Pub/Sub's limit).
const PUBLISH_BATCH: usize = 1000;
/// One publish, all in: CleverTap gives up after 3 to 5 s, so a 503 must come before that.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(4);
/// Pub/Sub's limit on an attribute value.
const MAX_ATTRIBUTE_BYTES: usize = 1024;
/// A push request: a 10 MB message, base64, plus its envelope.
const MAX_PUSH_BYTES: usize = 16 * 1024 * 1024;

/// Attribute: the delivery id (`<payload id>.<destination>`), sent as `Idempotency-Key`.
pub const ATTR_DELIVERY_ID: &str = "tapline_delivery_id";
/// Attribute: the payload id.
pub const ATTR_PAYLOAD_ID: &str = "tapline_payload_id";
/// Attribute: the route the payload came in on.
pub const ATTR_ROUTE: &str = "tapline_route";
/// Attribute: the destination within the route.
pub const ATTR_DESTINATION: &str = "tapline_destination";
/// Attribute: when the payload was received (Unix ms).
pub const ATTR_RECEIVED_AT_MS: &str = "tapline_received_at_ms";
/// Attribute: attempts made before this message was published (absent: none).
pub const ATTR_PRIOR_ATTEMPTS: &str = "tapline_prior_attempts";
/// Attribute: not attempted before then (Unix ms; absent: at once).
pub const ATTR_NOT_BEFORE_MS: &str = "tapline_not_before_ms";

/// One message to publish: raw data and attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The data (base64-encoded on the wire).
    pub data: Vec<u8>,
    /// The attributes.
    pub attributes: HashMap<String, String>,
}

/// Where Pub/Sub is: `PUBSUB_EMULATOR_HOST` (plain HTTP, no token), else Google's endpoint with
/// Application Default Credentials.
pub fn endpoint_from_env() -> Result<(String, GoogleAuth), Box<dyn std::error::Error + Send + Sync>>
{
    match std::env::var(ENV_EMULATOR_HOST)
        .ok()
        .filter(|h| !h.is_empty())
    {
        Some(host) => Ok((format!("http://{host}"), GoogleAuth::anonymous())),
        None => Ok((
            PRODUCTION_ENDPOINT.to_string(),
            GoogleAuth::application_default()?,
        )),
    }
}

/// The subscription's `max_delivery_attempts` as [`ENV_MAX_DELIVERY_ATTEMPTS`] says (5 to 100,
/// as Pub/Sub allows); [`DEFAULT_MAX_DELIVERY_ATTEMPTS`] when it is not set.
pub fn max_delivery_attempts_from_env() -> Result<u32, String> {
    match std::env::var(ENV_MAX_DELIVERY_ATTEMPTS)
        .ok()
        .filter(|v| !v.is_empty())
    {
        None => Ok(DEFAULT_MAX_DELIVERY_ATTEMPTS),
        Some(text) => text
            .parse()
            .ok()
            .filter(|n| (5..=100).contains(n))
            .ok_or_else(|| {
                format!("{ENV_MAX_DELIVERY_ATTEMPTS}={text:?}: a whole number from 5 to 100")
            }),
    }
}

/// One Pub/Sub REST call, `POST {endpoint}/v1/{resource}:{method}`: its answer on 2xx; else an
/// error naming `resource`, retryable for transport errors, 429 and 5xx.
pub(crate) async fn call(
    http: &reqwest::Client,
    auth: &GoogleAuth,
    endpoint: &str,
    resource: &str,
    method: &str,
    body: &Value,
) -> Result<Value, QueueError> {
    let error = |reason: String, retryable: bool| QueueError::Cloud {
        queue: resource.to_string(),
        reason,
        retryable,
    };
    let headers = auth
        .headers()
        .await
        .map_err(|e| error(format!("no access token: {e}"), true))?;
    let response = http
        .post(format!("{endpoint}/v1/{resource}:{method}"))
        .headers(headers)
        .json(body)
        .send()
        .await
        .map_err(|e| error(format!("{method} failed: {}", e.without_url()), true))?;
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        return Ok(answer);
    }
    Err(error(
        format!(
            "{method} answered HTTP {status} ({}): {}",
            answer["error"]["status"].as_str().unwrap_or("unknown"),
            answer["error"]["message"].as_str().unwrap_or_default()
        ),
        status == 429 || status >= 500,
    ))
}

/// A Pub/Sub topic reached over REST (`POST {endpoint}/v1/{topic}:publish`).
#[derive(Debug, Clone)]
pub struct PubSubPublisher {
    endpoint: String,
    auth: GoogleAuth,
    http: reqwest::Client,
    topic: String,
}

impl PubSubPublisher {
    /// Publishes to `topic` (`projects/P/topics/T`) at `endpoint` with `auth`.
    pub fn new(
        endpoint: &str,
        auth: GoogleAuth,
        topic: impl Into<String>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(PUBLISH_TIMEOUT)
            .timeout(PUBLISH_TIMEOUT)
            .build()?;
        Ok(Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            auth,
            http,
            topic: topic.into(),
        })
    }

    /// Publishes to `topic` where the environment says: `PUBSUB_EMULATOR_HOST` (no token), else
    /// Google's endpoint with Application Default Credentials (the service's identity).
    pub fn from_env(
        topic: impl Into<String>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let (endpoint, auth) = endpoint_from_env()?;
        Ok(Self::new(&endpoint, auth, topic)?)
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    fn error(&self, reason: impl std::fmt::Display, retryable: bool) -> QueueError {
        QueueError::Cloud {
            queue: self.topic.clone(),
            reason: reason.to_string(),
            retryable,
        }
    }

    /// Publishes `messages`; returns only once Pub/Sub has stored every one of them (their
    /// message ids). Retryable: transport errors, 429 and 5xx.
    pub async fn publish(&self, messages: &[OutgoingMessage]) -> Result<Vec<String>, QueueError> {
        let mut ids = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(PUBLISH_BATCH) {
            let body = json!({
                "messages": chunk.iter().map(|m| json!({
                    "data": base64::engine::general_purpose::STANDARD.encode(&m.data),
                    "attributes": m.attributes,
                })).collect::<Vec<_>>()
            });
            let answer = call(
                &self.http,
                &self.auth,
                &self.endpoint,
                &self.topic,
                "publish",
                &body,
            )
            .await?;
            let published: Vec<String> = answer["messageIds"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if published.len() != chunk.len() {
                return Err(self.error(
                    format!(
                        "publish returned {} message ids for {} messages",
                        published.len(),
                        chunk.len()
                    ),
                    true,
                ));
            }
            ids.extend(published);
        }
        Ok(ids)
    }
}

/// Accepted payloads into the delivery topic: one message per destination, published in one
/// request, so the 200 goes out only once Pub/Sub has every delivery.
///
/// Pub/Sub cannot look back, so the dedupe window is applied by the worker: both copies of a
/// payload sent twice are published, and the second is dropped at delivery.
#[derive(Debug, Clone)]
pub struct PubSubAcceptQueue {
    publisher: PubSubPublisher,
}

impl PubSubAcceptQueue {
    /// Accepts into `publisher`'s topic.
    pub fn new(publisher: PubSubPublisher) -> Self {
        Self { publisher }
    }
}

#[async_trait]
impl AcceptQueue for PubSubAcceptQueue {
    async fn enqueue(
        &self,
        payload: IncomingPayload,
        _dedupe_window_ms: i64,
    ) -> Result<Enqueued, QueueError> {
        let id = crate::webhook_relay::queue::new_payload_id(payload.received_at_ms);
        let messages: Vec<OutgoingMessage> = payload
            .destinations
            .iter()
            .map(|destination| OutgoingMessage {
                data: payload.body.clone(),
                attributes: HashMap::from([
                    (ATTR_DELIVERY_ID.to_string(), format!("{id}.{destination}")),
                    (ATTR_PAYLOAD_ID.to_string(), id.clone()),
                    (ATTR_ROUTE.to_string(), payload.route.clone()),
                    (ATTR_DESTINATION.to_string(), destination.clone()),
                    (
                        ATTR_RECEIVED_AT_MS.to_string(),
                        payload.received_at_ms.to_string(),
                    ),
                ]),
            })
            .collect();
        self.publisher.publish(&messages).await?;
        Ok(Enqueued::Accepted { id })
    }
}

/// What became of one pushed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// Delivered: acknowledged.
    Delivered,
    /// To be pushed again after the subscription's backoff: not acknowledged. Only when
    /// publishing the retry failed; it then comes back with its old attributes.
    Retry,
    /// Not attempted: its due time or the destination's pause lasts until `until_ms`. Not
    /// acknowledged, and not counted as an attempt.
    Held {
        /// When the delivery may be attempted (Unix ms).
        until_ms: i64,
    },
    /// Published again, with `prior_attempts` and its due time, and acknowledged: after a failed
    /// attempt (the next one is due at `not_before_ms`), or a held push close to the
    /// subscription's `max_delivery_attempts`.
    Republished {
        /// Attempts made so far.
        prior_attempts: u32,
        /// The next attempt is not made before then (Unix ms).
        not_before_ms: i64,
    },
    /// On the dead-letter topic with its attempt record: acknowledged.
    DeadLettered,
    /// The same body on the same route went to this destination within the dedupe window, as
    /// payload `first`: acknowledged without an attempt.
    Duplicate {
        /// The payload that holds the claim.
        first: String,
    },
    /// Not a relay delivery (no data, bad base64, missing attributes): not acknowledged, so
    /// the subscription's dead-letter policy moves it aside after its attempts.
    Malformed(String),
}

impl PushOutcome {
    /// The HTTP status answering the push: 2xx acknowledges, anything else asks for redelivery.
    pub fn status(&self) -> StatusCode {
        match self {
            PushOutcome::Delivered
            | PushOutcome::DeadLettered
            | PushOutcome::Duplicate { .. }
            | PushOutcome::Republished { .. } => StatusCode::OK,
            PushOutcome::Retry | PushOutcome::Held { .. } => StatusCode::SERVICE_UNAVAILABLE,
            PushOutcome::Malformed(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// The worker service's handler: one attempt per push at most.
pub struct PubSubDeliveryHandler {
    round: Round,
    deliveries: PubSubPublisher,
    dead_letters: PubSubPublisher,
    max_delivery_attempts: u32,
    dedupe: Option<GcsDedupe>,
}

/// Attempt attributes on a dead letter at most (Pub/Sub allows 100 attributes in all).
const MAX_ATTEMPT_ATTRIBUTES: usize = 64;

/// One attempt as a compact JSON attribute value within Pub/Sub's 1,024 bytes.
fn attempt_attribute(attempt: &AttemptRecord) -> String {
    let mut attempt = attempt.clone();
    attempt.error = attempt.error.map(|e| truncate(&e, 600));
    let json = serde_json::to_string(&attempt).expect("an AttemptRecord serialises");
    if json.len() <= MAX_ATTRIBUTE_BYTES {
        return json;
    }
    attempt.error = None;
    serde_json::to_string(&attempt).expect("an AttemptRecord serialises")
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

impl PubSubDeliveryHandler {
    /// A handler delivering to `destinations` on `retry`'s schedule, publishing retries to
    /// `deliveries` (the delivery topic its subscription reads) and what it gives up on to
    /// `dead_letters`.
    pub fn new(
        destinations: DestinationMap,
        retry: DeliveryRetry,
        clock: Arc<dyn Clock>,
        deliveries: PubSubPublisher,
        dead_letters: PubSubPublisher,
    ) -> Self {
        Self {
            round: Round::new(destinations, retry, clock),
            deliveries,
            dead_letters,
            max_delivery_attempts: DEFAULT_MAX_DELIVERY_ATTEMPTS,
            dedupe: None,
        }
    }

    /// The push subscription dead-letters a message after `max` pushes (its dead-letter
    /// policy's `max_delivery_attempts`): held pushes are published again fresh before that.
    pub fn with_max_delivery_attempts(mut self, max: u32) -> Self {
        self.max_delivery_attempts = max;
        self
    }

    /// Deliveries are claimed in `dedupe` first, so that the same body on the same route
    /// within the window is delivered once (see [`crate::webhook_relay::dedupe`]).
    pub fn with_dedupe(mut self, dedupe: Option<GcsDedupe>) -> Self {
        self.dedupe = dedupe;
        self
    }

    /// Failed attempts that will be retried are written to `log`, so that a dead letter lists
    /// every attempt (see [`crate::webhook_relay::dedupe::attempt_log`]).
    pub fn with_attempt_log(mut self, log: Option<Arc<dyn AttemptLog>>) -> Self {
        self.round = self.round.with_attempt_log(log);
        self
    }

    /// One pushed message: one round ([`Round::run`]): held, or one attempt, then acknowledged
    /// (delivered, published again for the next attempt, dead-lettered) or not.
    pub async fn handle(&self, envelope: PushEnvelope) -> PushOutcome {
        let message = envelope.message;
        let attr = |name: &str| message.attributes.get(name).cloned();
        let body = match message.decoded_data() {
            Some(Ok(body)) => body,
            Some(Err(_)) => return PushOutcome::Malformed("data is not base64".into()),
            None => return PushOutcome::Malformed("message has no data".into()),
        };
        let (Some(id), Some(payload_id), Some(route), Some(destination)) = (
            attr(ATTR_DELIVERY_ID),
            attr(ATTR_PAYLOAD_ID),
            attr(ATTR_ROUTE),
            attr(ATTR_DESTINATION),
        ) else {
            return PushOutcome::Malformed(
                "not a relay delivery: tapline_* attributes missing".into(),
            );
        };
        let received_at_ms = attr(ATTR_RECEIVED_AT_MS)
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| self.round.clock().now_ms());
        let prior_attempts: u32 = attr(ATTR_PRIOR_ATTEMPTS)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let not_before_ms: i64 = attr(ATTR_NOT_BEFORE_MS)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let delivery = Delivery {
            id,
            payload_id,
            route,
            destination,
            body,
            received_at_ms,
            attempts: prior_attempts,
        };
        let port = PushRedelivery {
            handler: self,
            message: &message,
            not_before_ms,
            pushes: envelope.delivery_attempt.unwrap_or(1),
        };
        self.round.run(&port, delivery).await
    }

    /// Publishes the delivery again (the same body and ids) with `prior_attempts` and its due
    /// time, so that this push can be acknowledged; `None` (logged) when the publish failed.
    async fn republish(
        &self,
        message: &PushMessage,
        body: &[u8],
        prior_attempts: u32,
        not_before_ms: i64,
    ) -> Option<PushOutcome> {
        let mut attributes = message.attributes.clone();
        attributes.insert(ATTR_PRIOR_ATTEMPTS.into(), prior_attempts.to_string());
        attributes.insert(ATTR_NOT_BEFORE_MS.into(), not_before_ms.to_string());
        let delivery = attributes
            .get(ATTR_DELIVERY_ID)
            .cloned()
            .unwrap_or_default();
        let again = OutgoingMessage {
            data: body.to_vec(),
            attributes,
        };
        match self.deliveries.publish(&[again]).await {
            Ok(_) => {
                info!(%delivery, prior_attempts, not_before_ms,
                      "Published again for its next attempt.");
                Some(PushOutcome::Republished {
                    prior_attempts,
                    not_before_ms,
                })
            }
            Err(err) => {
                warn!(%delivery, error = %err,
                      "Cannot publish the delivery again; Pub/Sub pushes it again instead.");
                None
            }
        }
    }

    async fn dead_letter(
        &self,
        message: &PushMessage,
        record: &AttemptRecord,
        attempts: &[AttemptRecord],
    ) -> PushOutcome {
        let mut attributes = message.attributes.clone();
        // The round is over: a replay starts a new one, due at once.
        attributes.remove(ATTR_PRIOR_ATTEMPTS);
        attributes.remove(ATTR_NOT_BEFORE_MS);
        // Every attempt, oldest first, one attribute each (Pub/Sub: at most 100 attributes of
        // 1,024 bytes): the latest MAX_ATTEMPT_ATTRIBUTES, errors shortened to fit.
        let skip = attempts.len().saturating_sub(MAX_ATTEMPT_ATTRIBUTES);
        for (n, attempt) in attempts.iter().enumerate().skip(skip) {
            attributes.insert(
                format!("tapline_attempt_{}", n + 1),
                attempt_attribute(attempt),
            );
        }
        attributes.insert("tapline_dead_attempt".into(), record.attempt.to_string());
        attributes.insert("tapline_dead_at_ms".into(), record.at_ms.to_string());
        attributes.insert("tapline_dead_outcome".into(), record.outcome.clone());
        if let Some(status) = record.status {
            attributes.insert("tapline_dead_status".into(), status.to_string());
        }
        if let Some(error) = &record.error {
            attributes.insert(
                "tapline_dead_error".into(),
                truncate(error, MAX_ATTRIBUTE_BYTES),
            );
        }
        let data = base64::engine::general_purpose::STANDARD
            .decode(message.data.as_deref().unwrap_or_default())
            .unwrap_or_default();
        let delivery = attributes
            .get(ATTR_DELIVERY_ID)
            .cloned()
            .unwrap_or_default();
        match self
            .dead_letters
            .publish(&[OutgoingMessage { data, attributes }])
            .await
        {
            Ok(_) => {
                info!(%delivery, topic = %self.dead_letters.topic(), attempt = record.attempt,
                      "Dead letter published to the dead-letter topic.");
                PushOutcome::DeadLettered
            }
            Err(err) => {
                // Not acknowledged: pushed again, and dead-lettered by the subscription at worst.
                warn!(%delivery, error = %err, "Cannot publish the dead letter; the message stays queued.");
                PushOutcome::Retry
            }
        }
    }
}

/// Pub/Sub's end of a [`Round`] for one push: the due time carried on the message, dedupe claims
/// in GCS, holds answered 503 (or published again fresh close to the subscription's
/// `max_delivery_attempts`), retries and dead letters published.
struct PushRedelivery<'a> {
    handler: &'a PubSubDeliveryHandler,
    message: &'a PushMessage,
    /// `tapline_not_before_ms`, 0 when absent.
    not_before_ms: i64,
    /// Pushes of this message so far (`deliveryAttempt`), from 1.
    pushes: u32,
}

#[async_trait]
impl Redelivery for PushRedelivery<'_> {
    type Outcome = PushOutcome;

    fn not_before_ms(&self, _delivery: &Delivery) -> i64 {
        self.not_before_ms
    }

    async fn claim(&self, delivery: &Delivery) -> Claim {
        claim_in(self.handler.dedupe.as_ref(), delivery).await
    }

    async fn hold(&self, delivery: &Delivery, until_ms: i64) -> PushOutcome {
        let (handler, pushes) = (self.handler, self.pushes);
        let wait_ms = until_ms - handler.round.clock().now_ms();
        let (id, destination) = (&delivery.id, &delivery.destination);
        // Pub/Sub dead-letters a message at max_delivery_attempts pushes: one push before
        // that (a failed publish then still has a push to try again), start a fresh message.
        if pushes + 1 >= handler.max_delivery_attempts
            && let Some(outcome) = handler
                .republish(
                    self.message,
                    &delivery.body,
                    delivery.attempts,
                    self.not_before_ms,
                )
                .await
        {
            debug!(delivery = %id, %destination, pushes, wait_ms,
                   "Held close to the subscription's delivery attempts: published again.");
            return outcome;
        }
        debug!(delivery = %id, %destination, wait_ms,
               "Held: not attempted before its retry is due or the destination's pause ends.");
        PushOutcome::Held { until_ms }
    }

    async fn duplicate(&self, _delivery: &Delivery, first: String) -> PushOutcome {
        PushOutcome::Duplicate { first }
    }

    async fn settle(
        &self,
        delivery: &Delivery,
        record: AttemptRecord,
        next: Settle,
        history: Vec<AttemptRecord>,
    ) -> PushOutcome {
        match next {
            Settle::Delivered => PushOutcome::Delivered,
            // A failed publish leaves the message to come back with its old attributes:
            // attempted again after Pub/Sub's backoff, at worst one attempt more than the
            // schedule says, never one lost.
            Settle::RetryAt(at) => self
                .handler
                .republish(self.message, &delivery.body, record.attempt, at)
                .await
                .unwrap_or(PushOutcome::Retry),
            Settle::Dead => {
                self.handler
                    .dead_letter(self.message, &record, &history)
                    .await
            }
        }
    }
}

async fn on_push(State(handler): State<Arc<PubSubDeliveryHandler>>, body: Bytes) -> Response {
    let envelope = match from_pubsub_push(&body) {
        Ok(envelope) => envelope,
        Err(err) => {
            error!(error = %err, "Push request is not a Pub/Sub push envelope.");
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": err.to_string()})),
            )
                .into_response();
        }
    };
    let message_id = envelope.message.message_id.clone();
    let outcome = handler.handle(envelope).await;
    if let PushOutcome::Malformed(reason) = &outcome {
        error!(%message_id, %reason, "Pushed message is not a relay delivery; left for the dead-letter policy.");
    }
    let status = outcome.status();
    (
        status,
        axum::Json(json!({"outcome": format!("{outcome:?}")})),
    )
        .into_response()
}

/// The worker service's routes: `POST /` (push requests) and `GET /healthz`. The service is
/// internal and only the push identity may invoke it (`infra/gcp`): Cloud Run checks the OIDC
/// token before the request gets here.
pub fn push_router(handler: Arc<PubSubDeliveryHandler>) -> Router {
    Router::new()
        .route("/", post(on_push))
        .layer(DefaultBodyLimit::max(MAX_PUSH_BYTES))
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .with_state(handler)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_outcomes_answer_with_their_status() {
        assert_eq!(PushOutcome::Retry.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(PushOutcome::DeadLettered.status(), StatusCode::OK);
        let republished = PushOutcome::Republished {
            prior_attempts: 1,
            not_before_ms: 5,
        };
        assert_eq!(republished.status(), StatusCode::OK);
        assert_eq!(
            PushOutcome::Held { until_ms: 5 }.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn long_errors_fit_an_attribute() {
        let long = "é".repeat(1000);
        let cut = truncate(&long, MAX_ATTRIBUTE_BYTES);
        assert!(cut.len() <= MAX_ATTRIBUTE_BYTES && cut.ends_with("..."));
        assert_eq!(truncate("short", 10), "short");
    }
}
