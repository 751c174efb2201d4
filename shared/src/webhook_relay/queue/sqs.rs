//! The relay on AWS (feature `sqs`): the function URL's Lambda stores each accepted payload in
//! the SQS delivery queue ([`SqsAcceptQueue`], one message per destination, so the accept is
//! durable once SQS has it), and the worker Lambda, fed by that queue through an event source
//! mapping with `ReportBatchItemFailures`, delivers each message ([`SqsDeliveryHandler`]).
//!
//! Retries are SQS's: a failed delivery is reported in `batchItemFailures`, its visibility is set
//! to the backoff (so the next receive comes after it, not after the whole visibility timeout),
//! and `ApproximateReceiveCount` is the attempt number. A permanent failure, or the last
//! attempt, is sent to the dead-letter queue with its attempt record, then deleted; the queue's
//! redrive policy is the safety net for messages the worker never settles (a crash, a timeout).

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::webhook_relay::dedupe::Claim;
use crate::webhook_relay::dedupe::attempt_log::AttemptLog;
use crate::webhook_relay::dedupe::s3::DedupeStore;
use crate::webhook_relay::delivery::round::{DestinationMap, Redelivery, Round, claim_in};
use crate::webhook_relay::queue::sqs_payloads::{
    BodyPointer, PayloadStore, SQS_MESSAGE_MAX_BYTES, batches,
};
use crate::webhook_relay::queue::{
    AcceptQueue, AttemptRecord, Delivery, Enqueued, IncomingPayload, QueueError, Settle,
};
use crate::webhook_relay::retry::DeliveryRetry;

/// The delivery queue's URL (both functions).
pub const ENV_QUEUE_URL: &str = "TAPLINE_RELAY_QUEUE_URL";
/// The dead-letter queue's URL (the worker).
pub const ENV_DEAD_LETTER_QUEUE_URL: &str = "TAPLINE_RELAY_DEAD_LETTER_QUEUE_URL";
/// SQS's limit on a visibility timeout: 12 hours.
const MAX_VISIBILITY_SECS: i64 = 12 * 3600;

/// One delivery as an SQS message body (JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeliveryMessage {
    /// `<payload id>.<destination>`: the `Idempotency-Key`.
    pub id: String,
    /// The payload's id.
    pub payload_id: String,
    /// The route it came in on.
    pub route: String,
    /// The destination within the route.
    pub destination: String,
    /// When it was received (Unix ms).
    pub received_at_ms: i64,
    /// The body as received (JSON, so UTF-8); empty when it is in S3 (`body_s3`).
    pub body: String,
    /// Where the body is when it was too large for the message (see [`crate::webhook_relay::queue::sqs_payloads`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_s3: Option<BodyPointer>,
    /// Attempts made before this message was sent: a delivery held back while its destination
    /// was paused is sent again as a new message (whose receive count starts over), carrying
    /// its attempts so that holding it back uses none up.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub prior_attempts: u32,
    /// On the dead-letter queue: the last attempt's outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead: Option<DeadRecord>,
    /// On the dead-letter queue: every attempt, oldest first, as far as the attempt log has
    /// them (see [`crate::webhook_relay::dedupe::attempt_log`]); the last one is `dead`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptRecord>,
}

/// The last attempt of a dead-lettered delivery, as stored with it on the dead-letter queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeadRecord {
    /// The attempt number (the message's receive count).
    pub attempt: u32,
    /// When it started (Unix ms).
    pub at_ms: i64,
    /// The destination's HTTP status, when it answered.
    pub status: Option<u16>,
    /// `retryable` (attempts used up) or `permanent`.
    pub outcome: String,
    /// What went wrong (no URLs, no secrets).
    pub error: Option<String>,
}

impl From<&AttemptRecord> for DeadRecord {
    fn from(a: &AttemptRecord) -> Self {
        Self {
            attempt: a.attempt,
            at_ms: a.at_ms,
            status: a.status,
            outcome: a.outcome.clone(),
            error: a.error.clone(),
        }
    }
}

impl DeliveryMessage {
    /// Attempts of this round made before this message was sent. A dead letter moved back to
    /// the delivery queue (`aws sqs start-message-move-task`, the replay on AWS) starts a new
    /// round with every attempt again, as `tapline relay replay` does locally; its old attempts
    /// stay in the attempt log.
    pub fn round_prior_attempts(&self) -> u32 {
        if self.dead.is_some() {
            0
        } else {
            self.prior_attempts
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The longest SQS delay of a message (`DelaySeconds`): 15 minutes.
const MAX_DELAY_SECS: i64 = 900;

fn cloud_error(queue: &str, reason: impl std::fmt::Display, retryable: bool) -> QueueError {
    QueueError::Cloud {
        queue: queue.to_string(),
        reason: reason.to_string(),
        retryable,
    }
}

/// Accepted payloads into the SQS delivery queue: one message per destination.
///
/// SQS standard queues cannot look back, so the dedupe window is applied by the worker
/// ([`SqsDeliveryHandler::with_dedupe`]): both copies of a payload sent twice are accepted and
/// queued, and the second is dropped at delivery.
///
/// A body whose messages would not fit SQS goes to the payload store when there is one
/// ([`Self::with_payloads`]), else it is refused with [`QueueError::TooLarge`] (413).
#[derive(Debug, Clone)]
pub struct SqsAcceptQueue {
    client: Client,
    queue_url: String,
    payloads: Option<PayloadStore>,
}

impl SqsAcceptQueue {
    /// The queue at `queue_url`, reached with `client`.
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            payloads: None,
        }
    }

    /// Bodies too large for an SQS message are stored in `payloads` (claim-check).
    pub fn with_payloads(mut self, payloads: Option<PayloadStore>) -> Self {
        self.payloads = payloads;
        self
    }
}

#[async_trait]
impl AcceptQueue for SqsAcceptQueue {
    async fn enqueue(
        &self,
        payload: IncomingPayload,
        _dedupe_window_ms: i64,
    ) -> Result<Enqueued, QueueError> {
        let id = crate::webhook_relay::queue::new_payload_id(payload.received_at_ms);
        let body = String::from_utf8(payload.body)
            .map_err(|err| cloud_error(&self.queue_url, err, false))?;
        let build = |body: &str, body_s3: Option<&BodyPointer>| -> Vec<String> {
            payload
                .destinations
                .iter()
                .map(|destination| {
                    serde_json::to_string(&DeliveryMessage {
                        id: format!("{id}.{destination}"),
                        payload_id: id.clone(),
                        route: payload.route.clone(),
                        destination: destination.clone(),
                        received_at_ms: payload.received_at_ms,
                        body: body.to_string(),
                        body_s3: body_s3.cloned(),
                        prior_attempts: 0,
                        dead: None,
                        attempts: Vec::new(),
                    })
                    .expect("a DeliveryMessage serialises")
                })
                .collect()
        };
        let mut messages = build(&body, None);
        if messages.iter().any(|m| m.len() > SQS_MESSAGE_MAX_BYTES) {
            let Some(store) = &self.payloads else {
                return Err(QueueError::TooLarge {
                    bytes: body.len(),
                    reason: format!(
                        "its SQS messages would pass {SQS_MESSAGE_MAX_BYTES} bytes and no payload \
                         bucket is configured ({})",
                        crate::webhook_relay::queue::sqs_payloads::ENV_PAYLOAD_BUCKET
                    ),
                });
            };
            let pointer = store.put(&id, body.as_bytes()).await?;
            info!(id = %id, bytes = body.len(), key = %pointer.key,
                  "Body too large for SQS: stored in the payload bucket.");
            messages = build("", Some(&pointer));
        }
        for chunk in batches(&messages) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, message)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(message)
                        .build()
                        .expect("id and body are set")
                })
                .collect();
            let sent = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|err| {
                    cloud_error(
                        &self.queue_url,
                        aws_sdk_sqs::error::DisplayErrorContext(err),
                        true,
                    )
                })?;
            // Not accepted unless every delivery is queued: the sender retries the whole payload.
            if let Some(failed) = sent.failed().first() {
                return Err(QueueError::Cloud {
                    queue: self.queue_url.clone(),
                    reason: format!(
                        "{} of {} messages refused, first: {} {}",
                        sent.failed().len(),
                        chunk.len(),
                        failed.code(),
                        failed.message().unwrap_or_default()
                    ),
                    retryable: !failed.sender_fault(),
                });
            }
        }
        Ok(Enqueued::Accepted { id })
    }
}

pub use crate::triggers::{SqsEvent, SqsRecord};

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Delivered: deleted from the queue.
    Delivered,
    /// To be received again after the backoff.
    Retry,
    /// On the dead-letter queue with its attempt record: deleted from the delivery queue.
    DeadLettered,
    /// The same body on the same route was delivered to this destination within the dedupe
    /// window (see [`crate::webhook_relay::dedupe`]): deleted without an attempt.
    Duplicate,
    /// Its destination is paused: sent again, delayed until the pause ends, with its attempts
    /// so far; this message is deleted without an attempt.
    Postponed,
}

/// The worker Lambda's handler: delivers each message of an SQS batch once.
pub struct SqsDeliveryHandler {
    round: Round,
    client: Client,
    queue_url: String,
    dead_letter_queue_url: String,
    payloads: Option<PayloadStore>,
    dedupe: Option<DedupeStore>,
}

impl SqsDeliveryHandler {
    /// A handler delivering to `destinations` with `retry` (its `max_attempts` should equal the
    /// queue's `maxReceiveCount`), changing visibility on `queue_url` and dead-lettering to
    /// `dead_letter_queue_url`.
    pub fn new(
        destinations: DestinationMap,
        retry: DeliveryRetry,
        clock: Arc<dyn Clock>,
        client: Client,
        queue_url: impl Into<String>,
        dead_letter_queue_url: impl Into<String>,
    ) -> Self {
        Self {
            round: Round::new(destinations, retry, clock),
            client,
            queue_url: queue_url.into(),
            dead_letter_queue_url: dead_letter_queue_url.into(),
            payloads: None,
            dedupe: None,
        }
    }

    /// Failed attempts that will be retried are written to `log`, so that a dead letter lists
    /// every attempt (see [`crate::webhook_relay::dedupe::attempt_log`]).
    pub fn with_attempt_log(mut self, log: Option<Arc<dyn AttemptLog>>) -> Self {
        self.round = self.round.with_attempt_log(log);
        self
    }

    /// Deliveries are claimed in `dedupe` first, so that the same body on the same route
    /// within the window is delivered once (see [`crate::webhook_relay::dedupe`]).
    pub fn with_dedupe(mut self, dedupe: Option<DedupeStore>) -> Self {
        self.dedupe = dedupe;
        self
    }

    /// Bodies stored in S3 (see [`crate::webhook_relay::queue::sqs_payloads`]) are read from `payloads`.
    pub fn with_payloads(mut self, payloads: Option<PayloadStore>) -> Self {
        self.payloads = payloads;
        self
    }

    /// The message's body: inline, or read from the payload store. `None` (logged) when it
    /// cannot be read now; the message is then retried, and dead-lettered by the redrive policy
    /// if it never can.
    async fn body(&self, message: &DeliveryMessage) -> Option<Vec<u8>> {
        let Some(pointer) = &message.body_s3 else {
            return Some(message.body.clone().into_bytes());
        };
        let Some(store) = &self.payloads else {
            error!(delivery = %message.id, key = %pointer.key,
                   "The body is in the payload bucket but no bucket is configured ({}).",
                   crate::webhook_relay::queue::sqs_payloads::ENV_PAYLOAD_BUCKET);
            return None;
        };
        match store.get(pointer).await {
            Ok(body) => Some(body),
            Err(err) => {
                warn!(delivery = %message.id, key = %pointer.key, error = %err,
                      retryable = err.is_retryable(), "Cannot read the body from the payload bucket.");
                None
            }
        }
    }

    /// Delivers every message of `event` concurrently; answers Lambda's partial batch response,
    /// `{"batchItemFailures":[{"itemIdentifier":<messageId>}]}`, naming the messages to retry.
    pub async fn handle(self: &Arc<Self>, event: SqsEvent) -> Value {
        // Every message counts as failed until its task says otherwise: a task that does not
        // come back (a panic) leaves its message to be received again, never deleted unseen.
        let mut unsettled: Vec<String> =
            event.records.iter().map(|r| r.message_id.clone()).collect();
        let mut tasks = JoinSet::new();
        for record in event.records {
            let this = self.clone();
            tasks.spawn(async move {
                let id = record.message_id.clone();
                (id, this.handle_record(record).await)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((
                    id,
                    MessageOutcome::Delivered
                    | MessageOutcome::DeadLettered
                    | MessageOutcome::Duplicate
                    | MessageOutcome::Postponed,
                )) => {
                    unsettled.retain(|m| *m != id);
                }
                Ok((_, MessageOutcome::Retry)) => {}
                Err(err) => error!(error = %err, "Delivery task failed; its message is retried."),
            }
        }
        crate::triggers::batch_item_failures(unsettled)
    }

    /// One message: one round ([`Round::run`]), then delete (delivered, dead-lettered,
    /// duplicate, held back as a new message) or retry after the backoff.
    pub async fn handle_record(&self, record: SqsRecord) -> MessageOutcome {
        let message: DeliveryMessage = match serde_json::from_str(&record.body) {
            Ok(message) => message,
            Err(err) => {
                // Not ours, or a bug: leave it to the redrive policy, which dead-letters it.
                error!(message_id = %record.message_id, error = %err,
                       "Delivery message is not a relay delivery; left for the dead-letter queue.");
                return MessageOutcome::Retry;
            }
        };
        let received = record.receive_count();
        let Some(body) = self.body(&message).await else {
            return MessageOutcome::Retry;
        };
        let delivery = Delivery {
            id: message.id.clone(),
            payload_id: message.payload_id.clone(),
            route: message.route.clone(),
            destination: message.destination.clone(),
            body,
            received_at_ms: message.received_at_ms,
            attempts: message.round_prior_attempts() + received.saturating_sub(1),
        };
        let port = SqsRedelivery {
            handler: self,
            message: &message,
            receipt_handle: &record.receipt_handle,
            received,
        };
        self.round.run(&port, delivery).await
    }
}

/// SQS's end of a [`Round`] for one received message: dedupe claims in S3, holds by sending the
/// message again delayed, retries by the message's visibility, dead letters to the dead-letter
/// queue.
struct SqsRedelivery<'a> {
    handler: &'a SqsDeliveryHandler,
    message: &'a DeliveryMessage,
    receipt_handle: &'a str,
    received: u32,
}

#[async_trait]
impl Redelivery for SqsRedelivery<'_> {
    type Outcome = MessageOutcome;

    async fn claim(&self, delivery: &Delivery) -> Claim {
        claim_in(self.handler.dedupe.as_ref(), delivery).await
    }

    async fn hold(&self, _delivery: &Delivery, until_ms: i64) -> MessageOutcome {
        self.handler
            .postpone(self.message, self.received, until_ms)
            .await
    }

    async fn duplicate(&self, _delivery: &Delivery, _first: String) -> MessageOutcome {
        MessageOutcome::Duplicate
    }

    async fn settle(
        &self,
        _delivery: &Delivery,
        record: AttemptRecord,
        next: Settle,
        history: Vec<AttemptRecord>,
    ) -> MessageOutcome {
        let handler = self.handler;
        let message = self.message;
        match next {
            Settle::Delivered => MessageOutcome::Delivered,
            Settle::RetryAt(at) => {
                let wait_secs = ((at - handler.round.clock().now_ms() + 999) / 1000)
                    .clamp(0, MAX_VISIBILITY_SECS);
                // Best effort: without it the retry comes after the queue's visibility timeout.
                if let Err(err) = handler
                    .client
                    .change_message_visibility()
                    .queue_url(&handler.queue_url)
                    .receipt_handle(self.receipt_handle)
                    .visibility_timeout(wait_secs as i32)
                    .send()
                    .await
                {
                    warn!(delivery = %message.id, error = %aws_sdk_sqs::error::DisplayErrorContext(err),
                          "Cannot set the retry's backoff; it follows the visibility timeout.");
                }
                MessageOutcome::Retry
            }
            Settle::Dead => {
                let dead = DeliveryMessage {
                    dead: Some(DeadRecord::from(&record)),
                    attempts: history,
                    ..message.clone()
                };
                let body = serde_json::to_string(&dead).expect("a DeliveryMessage serialises");
                match handler
                    .client
                    .send_message()
                    .queue_url(&handler.dead_letter_queue_url)
                    .message_body(body)
                    .send()
                    .await
                {
                    Ok(_) => {
                        info!(delivery = %dead.id, route = %dead.route, destination = %dead.destination,
                              attempt = record.attempt, "Dead letter sent to the dead-letter queue.");
                        MessageOutcome::DeadLettered
                    }
                    Err(err) => {
                        // Kept in the delivery queue: retried, then dead-lettered by the redrive.
                        warn!(delivery = %dead.id, error = %aws_sdk_sqs::error::DisplayErrorContext(err),
                              "Cannot send to the dead-letter queue; the message stays queued.");
                        MessageOutcome::Retry
                    }
                }
            }
        }
    }
}

impl SqsDeliveryHandler {
    /// Holds `message` back until `until_ms` without using an attempt: sends it again delayed
    /// (at most SQS's 15 minutes; a longer pause holds it back again then), carrying the
    /// attempts made so far, and settles this copy. If the send fails, the message is left to
    /// come back after its visibility timeout (it then uses an attempt).
    async fn postpone(
        &self,
        message: &DeliveryMessage,
        received: u32,
        until_ms: i64,
    ) -> MessageOutcome {
        let delay =
            ((until_ms - self.round.clock().now_ms() + 999) / 1000).clamp(0, MAX_DELAY_SECS);
        let again = DeliveryMessage {
            prior_attempts: message.round_prior_attempts() + received.saturating_sub(1),
            // The copy belongs to this round: no longer a dead letter being replayed.
            dead: None,
            attempts: Vec::new(),
            ..message.clone()
        };
        let body = serde_json::to_string(&again).expect("a DeliveryMessage serialises");
        match self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(delay as i32)
            .send()
            .await
        {
            Ok(_) => {
                info!(delivery = %message.id, destination = %message.destination, delay_secs = delay,
                      "Destination paused: delivery held back.");
                MessageOutcome::Postponed
            }
            Err(err) => {
                warn!(delivery = %message.id, error = %aws_sdk_sqs::error::DisplayErrorContext(err),
                      "Cannot hold the delivery back; it comes back after the visibility timeout.");
                MessageOutcome::Retry
            }
        }
    }
}

/// An SQS client from the environment (credentials chain, region, `AWS_ENDPOINT_URL`).
pub async fn client_from_env() -> Client {
    Client::new(&aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await)
}
