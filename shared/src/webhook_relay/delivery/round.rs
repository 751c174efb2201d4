//! One delivery round, written once for every queue: (not due yet →) dedupe → pause → attempt →
//! circuit breaker → settle. What differs per queue is behind the [`Redelivery`] port: how a
//! delivery is held back, how its next attempt is scheduled, where dead letters go. Adapters:
//! the local SQLite queue (`delivery::worker`), SQS (`queue::sqs`), Pub/Sub (`queue::pubsub`).
//!
//! The circuit breaker ([`DestinationPauses`]): after [`PAUSE_AFTER_FAILURES`] retryable
//! failures in a row a destination is paused, its deliveries held back without using up their
//! attempts until the pause ends; then one attempt probes it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tracing::{debug, info, warn};

use crate::clock::Clock;
use crate::webhook_relay::dedupe::attempt_log::{self, AttemptLog};
use crate::webhook_relay::dedupe::{Claim, ClaimStore, DedupeWindow};
use crate::webhook_relay::destinations::{DeliveryAttempt, DeliveryError, Destination};
use crate::webhook_relay::queue::{AttemptRecord, Delivery, Settle};
use crate::webhook_relay::retry::DeliveryRetry;

/// Retryable failures in a row after which a destination is paused.
pub const PAUSE_AFTER_FAILURES: u32 = 5;

/// The destinations of every route, by (route, destination name).
pub type DestinationMap = HashMap<(String, String), Arc<dyn Destination>>;

/// What a queue does with a delivery at each end of a round. One adapter per queue.
#[async_trait]
pub trait Redelivery: Send + Sync {
    /// What the round comes to, as the queue's caller needs it.
    type Outcome: Send;

    /// Not attempted before then (Unix ms), for queues that carry a retry's due time on the
    /// message itself (Pub/Sub); 0 for queues that hand deliveries out only when due.
    fn not_before_ms(&self, _delivery: &Delivery) -> i64 {
        0
    }

    /// Claims the delivery in the dedupe window; [`Claim::Deliver`] for queues that dedupe as
    /// they accept (the local queue).
    async fn claim(&self, _delivery: &Delivery) -> Claim {
        Claim::Deliver
    }

    /// Holds the delivery back until `until_ms` without using an attempt (not due yet, or its
    /// destination is paused).
    async fn hold(&self, delivery: &Delivery, until_ms: i64) -> Self::Outcome;

    /// The same body went to this destination within the dedupe window, as payload `first`.
    async fn duplicate(&self, delivery: &Delivery, first: String) -> Self::Outcome;

    /// Settles an attempt: delivered, retried at a time (the attempt is already in the attempt
    /// log), or dead with `history`, every attempt of the delivery, oldest first.
    async fn settle(
        &self,
        delivery: &Delivery,
        record: AttemptRecord,
        next: Settle,
        history: Vec<AttemptRecord>,
    ) -> Self::Outcome;
}

/// Claims `delivery` in `window`, for the queues that dedupe at delivery (SQS, Pub/Sub); without
/// a window, deliver.
pub async fn claim_in<S: ClaimStore>(
    window: Option<&DedupeWindow<S>>,
    delivery: &Delivery,
) -> Claim {
    match window {
        Some(window) => {
            window
                .claim(
                    &delivery.route,
                    &delivery.destination,
                    &delivery.body,
                    &delivery.payload_id,
                    delivery.received_at_ms,
                )
                .await
        }
        None => Claim::Deliver,
    }
}

/// The parts of a round every queue shares: destinations, retries, time, the breakers and the
/// attempt log of the queues that do not record attempts themselves.
#[derive(Clone)]
pub struct Round {
    destinations: Arc<DestinationMap>,
    retry: Arc<DeliveryRetry>,
    clock: Arc<dyn Clock>,
    pauses: Arc<DestinationPauses>,
    attempt_log: Option<Arc<dyn AttemptLog>>,
}

impl Round {
    /// Rounds delivering to `destinations` with `retry`, their time from `clock`.
    pub fn new(destinations: DestinationMap, retry: DeliveryRetry, clock: Arc<dyn Clock>) -> Self {
        Self {
            destinations: Arc::new(destinations),
            retry: Arc::new(retry),
            clock,
            pauses: Arc::default(),
            attempt_log: None,
        }
    }

    /// Failed attempts that will be retried are written to `log`, so that a dead letter lists
    /// every attempt (see [`crate::webhook_relay::dedupe::attempt_log`]).
    pub fn with_attempt_log(mut self, log: Option<Arc<dyn AttemptLog>>) -> Self {
        self.attempt_log = log;
        self
    }

    /// The destination pauses, to share with the HTTP endpoint.
    pub fn pauses(&self) -> Arc<DestinationPauses> {
        self.pauses.clone()
    }

    /// The retries.
    pub fn retry(&self) -> &DeliveryRetry {
        &self.retry
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The whole round for one delivery: [`Self::admit`], then [`Self::attempt`].
    pub async fn run<R: Redelivery + ?Sized>(&self, port: &R, delivery: Delivery) -> R::Outcome {
        match self.admit(port, &delivery).await {
            Err(outcome) => outcome,
            Ok(()) => self.attempt(port, delivery).await,
        }
    }

    /// Whether `delivery` is attempted now: not before its due time, not when it is a duplicate
    /// (settled through the port), not while its destination is paused (held through the port).
    pub async fn admit<R: Redelivery + ?Sized>(
        &self,
        port: &R,
        delivery: &Delivery,
    ) -> Result<(), R::Outcome> {
        let now = self.clock.now_ms();
        let not_before_ms = port.not_before_ms(delivery);
        if not_before_ms > now {
            return Err(port.hold(delivery, not_before_ms).await);
        }
        if let Claim::Duplicate { first } = port.claim(delivery).await {
            info!(delivery = %delivery.id, route = %delivery.route, destination = %delivery.destination,
                  first = %first, "Duplicate within the dedupe window: not delivered.");
            return Err(port.duplicate(delivery, first).await);
        }
        let key = (delivery.route.clone(), delivery.destination.clone());
        let probe_ms = self.retry.attempt_timeout.as_millis() as i64;
        match self.pauses.admit(&key, self.clock.now_ms(), probe_ms) {
            Some(until) => Err(port.hold(delivery, until).await),
            None => Ok(()),
        }
    }

    /// One attempt of an admitted `delivery`, fed to its destination's breaker, then settled
    /// through the port: retries logged in the attempt log, dead letters with their history.
    pub async fn attempt<R: Redelivery + ?Sized>(
        &self,
        port: &R,
        delivery: Delivery,
    ) -> R::Outcome {
        let key = (delivery.route.clone(), delivery.destination.clone());
        let destination = self.destinations.get(&key).cloned();
        let attempted = attempt(self.clock.as_ref(), &self.retry, destination, &delivery).await;
        let now = self.clock.now_ms();
        if let Some(until) = self
            .pauses
            .record(&key, &attempted.breaker, now, &self.retry)
        {
            warn!(route = %key.0, destination = %key.1, failures = PAUSE_AFTER_FAILURES,
                  paused_ms = until - now, "Destination paused: it keeps failing.");
        }
        let Attempted { record, next, .. } = attempted;
        let history = match next {
            Settle::Delivered => Vec::new(),
            Settle::RetryAt(_) => {
                if let Some(log) = &self.attempt_log {
                    attempt_log::append(log.as_ref(), &delivery.id, &record).await;
                }
                Vec::new()
            }
            Settle::Dead => {
                attempt_log::history(self.attempt_log.as_deref(), &delivery.id, &record).await
            }
        };
        port.settle(&delivery, record, next, history).await
    }
}

/// One destination's circuit breaker.
#[derive(Debug, Default, Clone, Copy)]
struct Breaker {
    /// Retryable failures since the last success.
    failures_in_row: u32,
    /// Pauses since the last success: each lasts as long as the backoff after that many failures.
    pauses: u32,
    /// Deliveries are held back until then (Unix ms).
    paused_until_ms: i64,
    /// After a pause, one attempt probes the destination (started then, Unix ms); the others
    /// wait for its outcome. A probe that never reports (its task died) is forgotten after twice
    /// the probe time.
    probe_started_ms: Option<i64>,
}

/// The circuit breakers of every destination that has failed, by (route, destination name):
/// shared by the worker, which pauses destinations, and the HTTP endpoint, which queues new
/// deliveries to a paused destination due when its pause ends.
#[derive(Debug, Default)]
pub struct DestinationPauses(std::sync::Mutex<HashMap<(String, String), Breaker>>);

impl DestinationPauses {
    /// When the destination's pause ends, if it is paused at `now_ms`.
    pub fn paused_until(&self, key: &(String, String), now_ms: i64) -> Option<i64> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .map(|b| b.paused_until_ms)
            .filter(|until| *until > now_ms)
    }

    /// Whether a delivery to the destination may be attempted at `now_ms`: `None` when it may,
    /// else when to look again. While paused, not before the pause ends; once a pause has ended,
    /// one attempt at a time probes the destination and the others are held for `probe_ms`
    /// (the probe's outcome is known by then), so that a pause's end costs one attempt, not one
    /// per delivery that fell due meanwhile.
    pub fn admit(&self, key: &(String, String), now_ms: i64, probe_ms: i64) -> Option<i64> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let breaker = map.get_mut(key)?;
        if breaker.paused_until_ms > now_ms {
            return Some(breaker.paused_until_ms);
        }
        if breaker.failures_in_row < PAUSE_AFTER_FAILURES {
            return None;
        }
        if breaker
            .probe_started_ms
            .is_some_and(|started| now_ms < started + 2 * probe_ms)
        {
            return Some(now_ms + probe_ms);
        }
        breaker.probe_started_ms = Some(now_ms);
        None
    }

    /// Records an attempt's outcome: a success closes the breaker, a retryable failure counts
    /// and, from [`PAUSE_AFTER_FAILURES`] in a row, pauses the destination (again) for the
    /// backoff of its pause count, or the destination's `Retry-After` when longer. Returns the
    /// new pause's end when this outcome paused it.
    fn record(
        &self,
        key: &(String, String),
        outcome: &Result<(), Option<Duration>>,
        now_ms: i64,
        retry: &DeliveryRetry,
    ) -> Option<i64> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(()) => {
                map.remove(key);
                None
            }
            Err(retry_after) => {
                let breaker = map.entry(key.clone()).or_default();
                breaker.probe_started_ms = None;
                breaker.failures_in_row += 1;
                if breaker.failures_in_row < PAUSE_AFTER_FAILURES
                    || breaker.paused_until_ms > now_ms
                {
                    return None;
                }
                breaker.pauses += 1;
                let pause = retry.delay(&key.0, breaker.pauses, *retry_after);
                breaker.paused_until_ms = now_ms + pause.as_millis() as i64;
                Some(breaker.paused_until_ms)
            }
        }
    }
}

/// What one attempt came to.
struct Attempted {
    /// The attempt, as recorded.
    record: AttemptRecord,
    /// How to settle the delivery.
    next: Settle,
    /// What the circuit breaker makes of it (`Err(Retry-After)` for a failure that counts).
    breaker: Result<(), Option<Duration>>,
}

/// One attempt of `delivery`, bounded by the attempt timeout. Logged: delivered and retried at
/// info, dead-lettered at warn.
async fn attempt(
    clock: &dyn Clock,
    retry: &DeliveryRetry,
    destination: Option<Arc<dyn Destination>>,
    delivery: &Delivery,
) -> Attempted {
    let attempt_no = delivery.attempts + 1;
    let at_ms = clock.now_ms();
    let started = Instant::now();
    let result = match &destination {
        Some(destination) => {
            let deliver = destination.deliver(DeliveryAttempt {
                delivery_id: &delivery.id,
                payload_id: &delivery.payload_id,
                received_at_ms: delivery.received_at_ms,
                route: &delivery.route,
                body: &delivery.body,
                now_ms: at_ms,
            });
            // Whatever the destination does (a locked table, an endpoint that never answers),
            // the attempt ends here; dropping it cancels the destination's work.
            tokio::time::timeout(retry.attempt_timeout, deliver)
                .await
                .unwrap_or(Err(DeliveryError::Timeout(retry.attempt_timeout)))
        }
        None => Err(DeliveryError::Transport(
            "destination no longer configured".into(),
        )),
    };
    let duration_ms = started.elapsed().as_millis() as i64;
    match result {
        Ok(status) => {
            info!(delivery = %delivery.id, route = %delivery.route, destination = %delivery.destination,
                  attempt = attempt_no, status, "Delivered.");
            Attempted {
                record: AttemptRecord {
                    attempt: attempt_no,
                    at_ms,
                    duration_ms,
                    status: Some(status),
                    outcome: "delivered".into(),
                    error: None,
                },
                next: Settle::Delivered,
                breaker: Ok(()),
            }
        }
        Err(err) => {
            let retryable = err.is_retryable() && destination.is_some();
            // Only failures that say the destination is unwell count towards pausing it; a
            // permanent refusal of one payload says nothing about the next.
            let breaker = if retryable {
                Err(err.retry_after())
            } else {
                Ok(())
            };
            let next = if retryable && attempt_no < retry.max_attempts(&delivery.route) {
                let wait = retry.delay(&delivery.route, attempt_no, err.retry_after());
                debug!(delivery = %delivery.id, wait_ms = wait.as_millis() as u64, "Retry scheduled.");
                Settle::RetryAt(clock.now_ms() + wait.as_millis() as i64)
            } else {
                Settle::Dead
            };
            // Dead letters need an operator (replay), so they are warnings; retries are routine.
            if next == Settle::Dead {
                warn!(delivery = %delivery.id, route = %delivery.route, destination = %delivery.destination,
                      attempt = attempt_no, error = %err, "Delivery dead-lettered.");
            } else {
                info!(delivery = %delivery.id, route = %delivery.route, destination = %delivery.destination,
                      attempt = attempt_no, error = %err, "Delivery failed; will retry.");
            }
            Attempted {
                record: AttemptRecord {
                    attempt: attempt_no,
                    at_ms,
                    duration_ms,
                    status: err.status(),
                    outcome: if retryable { "retryable" } else { "permanent" }.into(),
                    error: Some(err.to_string()),
                },
                next,
                breaker,
            }
        }
    }
}
