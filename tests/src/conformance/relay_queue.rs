//! The delivery-queue conformance suite: what every relay queue (the local SQLite queue, SQS,
//! Pub/Sub) guarantees about a delivery's round, checked through a small [`QueueHarness`] each
//! queue's test module implements, with [`relay_queue_conformance_tests!`](crate::relay_queue_conformance_tests).
//!
//! Every case has route `r` deliver to destination `d`, a [`ScriptedDestination`], with 3
//! attempts 1 s apart (no jitter) and a 10-minute dedupe window.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tapline::webhook_relay::delivery::worker::DestinationMap;
use tapline::webhook_relay::destinations::{DeliveryAttempt, DeliveryError, Destination};
use tapline::webhook_relay::retry::{DeliveryRetry, RouteRetry};

/// The wait between attempts in every case.
pub const WAIT: Duration = Duration::from_secs(1);
/// The dedupe window in every case.
pub const WINDOW: Duration = Duration::from_secs(600);

/// A destination answering from a script (then 200) and recording the bodies and
/// `Idempotency-Key`s (delivery ids) it saw.
#[derive(Default)]
pub struct ScriptedDestination {
    script: Mutex<Vec<Result<u16, DeliveryError>>>,
    /// (delivery id, body) of every attempt, in order.
    pub seen: Mutex<Vec<(String, String)>>,
}

impl ScriptedDestination {
    /// Answers `script` in order, then 200.
    pub fn new(mut script: Vec<u16>) -> Arc<Self> {
        script.reverse();
        Arc::new(Self {
            script: Mutex::new(
                script
                    .into_iter()
                    .map(|s| {
                        if s < 300 {
                            Ok(s)
                        } else {
                            Err(DeliveryError::Status {
                                status: s,
                                retry_after: None,
                                body: String::new(),
                            })
                        }
                    })
                    .collect(),
            ),
            seen: Mutex::new(Vec::new()),
        })
    }

    /// The bodies seen, in order.
    pub fn bodies(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.1.clone())
            .collect()
    }
}

#[async_trait]
impl Destination for ScriptedDestination {
    async fn deliver(&self, attempt: DeliveryAttempt<'_>) -> Result<u16, DeliveryError> {
        self.seen.lock().unwrap().push((
            attempt.delivery_id.to_string(),
            String::from_utf8_lossy(attempt.body).into_owned(),
        ));
        self.script.lock().unwrap().pop().unwrap_or(Ok(200))
    }
}

/// The destinations and retries every case runs with.
pub fn setup(destination: &Arc<ScriptedDestination>) -> (DestinationMap, DeliveryRetry) {
    let mut destinations: DestinationMap = HashMap::new();
    destinations.insert(("r".into(), "d".into()), destination.clone());
    let retry = DeliveryRetry {
        default: RouteRetry::schedule(vec![WAIT, WAIT]),
        jitter: false,
        ..DeliveryRetry::default()
    };
    (destinations, retry)
}

/// One queue with its worker, as a case drives it.
#[async_trait]
pub trait QueueHarness: Send + Sync {
    /// Accepts `body` on route `r` for destination `d`, as the endpoint does.
    async fn accept(&self, body: &str);
    /// Hands every delivery due now to the worker, once each, and settles them as the queue
    /// does (deletes, acknowledges, writes).
    async fn deliver_due(&self);
    /// Moves time on by `by`: what became due by then can be handed out.
    async fn advance(&self, by: Duration);
    /// The dead letters: each one's attempts' outcomes (`retryable`, `permanent`), oldest first.
    async fn dead_letters(&self) -> Vec<Vec<String>>;
}

/// Accepted, delivered once with its delivery id, settled: nothing more is attempted.
pub async fn accept_deliver_settle(h: &dyn QueueHarness, d: &ScriptedDestination) {
    h.accept(r#"{"n":1}"#).await;
    h.deliver_due().await;
    assert_eq!(d.bodies(), [r#"{"n":1}"#]);
    let id = d.seen.lock().unwrap()[0].0.clone();
    assert!(
        id.ends_with(".d"),
        "the delivery id names the destination: {id}"
    );
    h.advance(WAIT * 3).await;
    h.deliver_due().await;
    assert_eq!(d.bodies().len(), 1, "settled: not attempted again");
    assert!(h.dead_letters().await.is_empty());
}

/// A retryable failure is attempted again after the schedule's wait, not before.
pub async fn retry_schedule_honoured(h: &dyn QueueHarness, d: &ScriptedDestination) {
    h.accept(r#"{"n":2}"#).await;
    h.deliver_due().await;
    assert_eq!(d.bodies().len(), 1);
    h.deliver_due().await;
    assert_eq!(d.bodies().len(), 1, "not before the wait");
    h.advance(WAIT).await;
    h.deliver_due().await;
    assert_eq!(d.bodies(), [r#"{"n":2}"#, r#"{"n":2}"#]);
    let ids: Vec<String> = d.seen.lock().unwrap().iter().map(|s| s.0.clone()).collect();
    assert_eq!(ids[0], ids[1], "the same Idempotency-Key on every attempt");
    h.advance(WAIT * 3).await;
    h.deliver_due().await;
    assert_eq!(d.bodies().len(), 2, "delivered the second time");
    assert!(h.dead_letters().await.is_empty());
}

/// After the last attempt of the budget the delivery is a dead letter listing every attempt.
pub async fn dead_letter_after_the_budget(h: &dyn QueueHarness, d: &ScriptedDestination) {
    h.accept(r#"{"n":3}"#).await;
    for _ in 0..3 {
        h.deliver_due().await;
        h.advance(WAIT).await;
    }
    h.deliver_due().await;
    assert_eq!(d.bodies().len(), 3, "three attempts, no fourth");
    assert_eq!(
        h.dead_letters().await,
        [vec!["retryable", "retryable", "retryable"]]
    );
}

/// The same body on the same route within the window reaches the destination once.
pub async fn duplicate_suppressed(h: &dyn QueueHarness, d: &ScriptedDestination) {
    h.accept(r#"{"n":4}"#).await;
    h.accept(r#"{"n":4}"#).await;
    h.accept(r#"{"n":5}"#).await;
    h.deliver_due().await;
    h.advance(WAIT * 3).await;
    h.deliver_due().await;
    let mut bodies = d.bodies();
    bodies.sort();
    assert_eq!(bodies, [r#"{"n":4}"#, r#"{"n":5}"#]);
    assert!(h.dead_letters().await.is_empty());
}

/// The suite's cases as tests, for the harness `$make` builds: an async expression of
/// `(Box<dyn QueueHarness>, Arc<ScriptedDestination>)` from a case name and a script of
/// statuses (`$make(name, script)`).
#[macro_export]
macro_rules! relay_queue_conformance_tests {
    ($make:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn accept_deliver_settle() {
            let (h, d) = $make("accept", vec![]).await;
            $crate::conformance::relay_queue::accept_deliver_settle(h.as_ref(), &d).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn retry_schedule_honoured() {
            let (h, d) = $make("retry", vec![503]).await;
            $crate::conformance::relay_queue::retry_schedule_honoured(h.as_ref(), &d).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn dead_letter_after_the_budget() {
            let (h, d) = $make("dead", vec![503, 502, 500]).await;
            $crate::conformance::relay_queue::dead_letter_after_the_budget(h.as_ref(), &d).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn duplicate_suppressed() {
            let (h, d) = $make("dupe", vec![]).await;
            $crate::conformance::relay_queue::duplicate_suppressed(h.as_ref(), &d).await;
        }
    };
}
