//! The delivery worker over the local queue: takes due deliveries from the [`DeliveryQueue`],
//! runs each through the [`Round`] (pause, attempt, breaker) and settles them in the queue
//! (delivered, retried at a time, dead-lettered with every attempt), a batch at a time.
//!
//! The local queue's end of the round ([`LocalQueueRedelivery`]) writes nothing itself: the
//! worker groups what it says into one postpone per pause and one transaction per batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::clock::Clock;
pub use crate::webhook_relay::delivery::round::{
    DestinationMap, DestinationPauses, PAUSE_AFTER_FAILURES,
};
use crate::webhook_relay::delivery::round::{Redelivery, Round};
use crate::webhook_relay::queue::{AttemptRecord, Delivery, DeliveryQueue, QueueError, Settle};
use crate::webhook_relay::retry::DeliveryRetry;

/// Deliveries taken from the queue at once (and attempted concurrently).
pub const DEFAULT_BATCH: usize = 32;
/// How long a taken delivery stays leased: longer than any attempt may take.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(120);
/// How often an idle worker looks at the queue even when nobody wakes it (a replay from another
/// process, a lease that ended).
pub const IDLE_POLL: Duration = Duration::from_secs(1);

/// How often a running worker deletes old delivered payloads and old dead letters (see
/// [`DeliveryQueue::prune_delivered`], [`DeliveryQueue::prune_dead`]).
pub const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// What the local queue is to do with a delivery, as the round says: written by the worker, a
/// batch at a time.
#[derive(Debug)]
pub enum LocalSettlement {
    /// Due again at `until_ms`, without an attempt recorded.
    Hold {
        /// The delivery.
        id: String,
        /// When it is due (Unix ms).
        until_ms: i64,
    },
    /// An attempt and what comes next.
    Settle {
        /// The delivery.
        id: String,
        /// The attempt.
        record: AttemptRecord,
        /// Delivered, retried at a time, or dead.
        next: Settle,
    },
}

/// The local SQLite queue's end of a [`Round`]: the queue dedupes as it accepts (no claim), hands
/// deliveries out only when due, and keeps every attempt itself (no attempt log).
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalQueueRedelivery;

#[async_trait]
impl Redelivery for LocalQueueRedelivery {
    type Outcome = Option<LocalSettlement>;

    async fn hold(&self, delivery: &Delivery, until_ms: i64) -> Self::Outcome {
        Some(LocalSettlement::Hold {
            id: delivery.id.clone(),
            until_ms,
        })
    }

    /// Never asked: [`Redelivery::claim`] always delivers here. Left leased, it comes back.
    async fn duplicate(&self, _delivery: &Delivery, _first: String) -> Self::Outcome {
        None
    }

    async fn settle(
        &self,
        delivery: &Delivery,
        record: AttemptRecord,
        next: Settle,
        _history: Vec<AttemptRecord>,
    ) -> Self::Outcome {
        Some(LocalSettlement::Settle {
            id: delivery.id.clone(),
            record,
            next,
        })
    }
}

/// What one prune deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Payloads whose every delivery was delivered, past the retention.
    pub delivered: u64,
    /// Dead letters past the dead-letter retention.
    pub dead: u64,
}

/// What a worker did, for tests and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerStats {
    /// Attempts made.
    pub attempts: u64,
    /// Deliveries that succeeded.
    pub delivered: u64,
    /// Attempts that failed and will be retried.
    pub retried: u64,
    /// Deliveries moved to the dead letters.
    pub dead: u64,
    /// Deliveries held back, unattempted, because their destination is paused.
    pub postponed: u64,
}

impl WorkerStats {
    /// One attempt settled as `next`.
    fn of(next: Settle) -> Self {
        Self {
            attempts: 1,
            delivered: u64::from(next == Settle::Delivered),
            retried: u64::from(matches!(next, Settle::RetryAt(_))),
            dead: u64::from(next == Settle::Dead),
            postponed: 0,
        }
    }
}

impl std::ops::AddAssign for WorkerStats {
    fn add_assign(&mut self, other: Self) {
        self.attempts += other.attempts;
        self.delivered += other.delivered;
        self.retried += other.retried;
        self.dead += other.dead;
        self.postponed += other.postponed;
    }
}

/// Delivers what the queue holds.
pub struct DeliveryWorker {
    queue: Arc<dyn DeliveryQueue>,
    round: Round,
    batch: usize,
    lease: Duration,
    retention: Option<Duration>,
    dead_letter_retention: Option<Duration>,
    /// When the last prune ran (Unix ms); `i64::MIN` before the first.
    last_prune_ms: std::sync::atomic::AtomicI64,
}

impl DeliveryWorker {
    /// A worker over `queue` delivering to `destinations` with `retry`, its time from `clock`.
    pub fn new(
        queue: Arc<dyn DeliveryQueue>,
        destinations: DestinationMap,
        retry: DeliveryRetry,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            queue,
            round: Round::new(destinations, retry, clock),
            batch: DEFAULT_BATCH,
            lease: DEFAULT_LEASE,
            retention: None,
            dead_letter_retention: None,
            last_prune_ms: std::sync::atomic::AtomicI64::new(i64::MIN),
        }
    }

    /// The worker's destination pauses, to share with the HTTP endpoint.
    pub fn pauses(&self) -> Arc<DestinationPauses> {
        self.round.pauses()
    }

    /// Deletes delivered payloads `retention` after they came in, every [`PRUNE_EVERY`] while
    /// [`Self::run`] runs. Without it nothing is pruned.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = Some(retention);
        self
    }

    /// Deletes dead letters `retention` after they became dead, every [`PRUNE_EVERY`] while
    /// [`Self::run`] runs. Without it dead letters are kept until replayed.
    pub fn with_dead_letter_retention(mut self, retention: Duration) -> Self {
        self.dead_letter_retention = Some(retention);
        self
    }

    /// Prunes delivered payloads and dead letters past their retentions when [`PRUNE_EVERY`]
    /// has passed since the last prune (or none ran yet); returns how many were deleted, `None`
    /// when not due (or no retention is set). Deliveries still pending, held for a paused
    /// destination included, are never pruned.
    pub async fn prune_if_due(&self) -> Result<Option<Pruned>, QueueError> {
        use std::sync::atomic::Ordering;
        if self.retention.is_none() && self.dead_letter_retention.is_none() {
            return Ok(None);
        }
        let now = self.round.clock().now_ms();
        let last = self.last_prune_ms.load(Ordering::SeqCst);
        if last != i64::MIN && now - last < PRUNE_EVERY.as_millis() as i64 {
            return Ok(None);
        }
        self.last_prune_ms.store(now, Ordering::SeqCst);
        let before = |retention: Duration| now - retention.as_millis() as i64;
        let mut pruned = Pruned::default();
        if let Some(retention) = self.retention {
            pruned.delivered = self.queue.prune_delivered(before(retention)).await?;
            if pruned.delivered > 0 {
                info!(
                    pruned = pruned.delivered,
                    retention_secs = retention.as_secs(),
                    "Delivered payloads pruned."
                );
            }
        }
        if let Some(retention) = self.dead_letter_retention {
            pruned.dead = self.queue.prune_dead(before(retention)).await?;
            if pruned.dead > 0 {
                info!(
                    pruned = pruned.dead,
                    retention_secs = retention.as_secs(),
                    "Dead letters pruned."
                );
            }
        }
        Ok(Some(pruned))
    }

    /// Attempts every delivery due now, once each, settling each as it finishes; returns what
    /// happened.
    pub async fn run_once(&self) -> Result<WorkerStats, QueueError> {
        let mut stats = WorkerStats::default();
        let mut tasks = AttemptTasks::new();
        self.start_due(self.batch, &mut tasks, &mut stats).await?;
        while let Some(joined) = tasks.join_next().await {
            self.settle_finished(joined, &mut tasks, &mut stats).await?;
        }
        Ok(stats)
    }

    /// Claims up to `room` due deliveries and starts an attempt for each, except those whose
    /// destination is paused (held back until the pause ends, no attempt used). Returns how many
    /// were claimed.
    async fn start_due(
        &self,
        room: usize,
        tasks: &mut AttemptTasks,
        stats: &mut WorkerStats,
    ) -> Result<usize, QueueError> {
        let now = self.round.clock().now_ms();
        let due = self
            .queue
            .claim_due(now, room, self.lease().as_millis() as i64)
            .await?;
        let claimed = due.len();
        // Held back by pause end: one update per pause.
        let mut postponed: HashMap<i64, Vec<String>> = HashMap::new();
        // Every delivery of the claim is admitted before any attempt starts, so that the
        // breaker judges the batch as it stood when it was claimed.
        for delivery in due {
            match self.round.admit(&LocalQueueRedelivery, &delivery).await {
                Ok(()) => {
                    let round = self.round.clone();
                    tasks
                        .spawn(async move { round.attempt(&LocalQueueRedelivery, delivery).await });
                }
                Err(Some(LocalSettlement::Hold { id, until_ms })) => {
                    postponed.entry(until_ms).or_default().push(id);
                    stats.postponed += 1;
                }
                Err(_) => {}
            }
        }
        for (until, ids) in postponed {
            self.queue.postpone(ids, until).await?;
        }
        Ok(claimed)
    }

    /// Settles the attempt that just finished together with every other attempt finished by
    /// now (one transaction for those, never a wait for one still running).
    async fn settle_finished(
        &self,
        first: Result<Option<LocalSettlement>, tokio::task::JoinError>,
        tasks: &mut AttemptTasks,
        stats: &mut WorkerStats,
    ) -> Result<(), QueueError> {
        let mut settled = Vec::new();
        let mut postponed: HashMap<i64, Vec<String>> = HashMap::new();
        let mut next = Some(first);
        while let Some(joined) = next.take() {
            match joined {
                Ok(Some(LocalSettlement::Settle { id, record, next })) => {
                    *stats += WorkerStats::of(next);
                    settled.push((id, record, next));
                }
                Ok(Some(LocalSettlement::Hold { id, until_ms })) => {
                    postponed.entry(until_ms).or_default().push(id);
                    stats.postponed += 1;
                }
                Ok(None) => {}
                // A panicking destination leaves its delivery leased; it is retried later.
                Err(err) => warn!(error = %err, "Delivery task failed."),
            }
            next = tasks.try_join_next();
        }
        if !settled.is_empty() {
            self.queue.settle_many(settled).await?;
        }
        for (until, ids) in postponed {
            self.queue.postpone(ids, until).await?;
        }
        Ok(())
    }

    /// How long a claimed delivery stays leased: [`DEFAULT_LEASE`], or twice the attempt timeout
    /// when that is longer, so that no attempt outlives its lease.
    fn lease(&self) -> Duration {
        self.lease
            .max(self.round.retry().attempt_timeout.saturating_mul(2))
    }

    /// Delivers until nothing is pending: attempts what is due, then waits (on the clock) for
    /// the next due delivery. With a [`crate::webhook_relay::clock::ManualClock`] the waits are instant, so
    /// tests drive retries deterministically.
    pub async fn run_until_idle(&self) -> Result<WorkerStats, QueueError> {
        let mut total = WorkerStats::default();
        loop {
            let stats = self.run_once().await?;
            total += stats;
            if stats.attempts + stats.postponed > 0 {
                continue;
            }
            match self.queue.next_due_at().await? {
                None => return Ok(total),
                Some(at) => self.round.clock().sleep_until(at).await,
            }
        }
    }

    /// Runs until `shutdown` turns true: keeps up to a batch of attempts in flight, settles
    /// each as it finishes and claims more as room frees up, so a destination that hangs (up to
    /// the attempt timeout) delays nobody else; when idle, sleeps until the next due delivery, a
    /// wake-up (a new payload) or [`IDLE_POLL`]. Queue errors are logged and retried. On
    /// shutdown the attempts in flight finish (within the attempt timeout) and are settled.
    pub async fn run(&self, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = AttemptTasks::new();
        // Counted for the log line only: the loop runs for the life of the process.
        let mut stats = WorkerStats::default();
        loop {
            if *shutdown.borrow() {
                break;
            }
            if let Err(err) = self.prune_if_due().await {
                warn!(error = %err, "Pruning the queue failed; trying again later.");
            }
            let room = self.batch.saturating_sub(tasks.len());
            if room > 0 {
                match self.start_due(room, &mut tasks, &mut stats).await {
                    // A full claim: more may be due at once.
                    Ok(claimed) if claimed == room && tasks.len() < self.batch => continue,
                    Ok(_) => {}
                    Err(err) => warn!(error = %err, "Delivery queue failed; trying again."),
                }
            }
            let wait = match self.queue.next_due_at().await {
                Ok(Some(at)) if tasks.len() < self.batch => {
                    let ms =
                        (at - self.round.clock().now_ms()).clamp(0, IDLE_POLL.as_millis() as i64);
                    Duration::from_millis(ms as u64)
                }
                _ => IDLE_POLL,
            };
            tokio::select! {
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(err) = self.settle_finished(joined, &mut tasks, &mut stats).await {
                        warn!(error = %err, "Settling deliveries failed; they are retried when their lease ends.");
                    }
                }
                _ = tokio::time::sleep(wait) => {}
                _ = wake.notified() => {}
                // A dropped sender means nobody can stop us any more: stop now rather than spin.
                changed = shutdown.changed() => if changed.is_err() { break; }
            }
        }
        while let Some(joined) = tasks.join_next().await {
            if let Err(err) = self.settle_finished(joined, &mut tasks, &mut stats).await {
                warn!(error = %err, "Settling deliveries failed; they are retried when their lease ends.");
            }
        }
        info!(
            attempts = stats.attempts,
            delivered = stats.delivered,
            "Delivery worker stopped."
        );
    }
}

/// The attempts a worker has in flight, each ending with what to write to the queue.
type AttemptTasks = JoinSet<Option<LocalSettlement>>;

#[cfg(all(test, feature = "relay-local"))]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::webhook_relay::clock::ManualClock;
    use crate::webhook_relay::destinations::{DeliveryAttempt, DeliveryError, Destination};
    use crate::webhook_relay::queue::sqlite::SqliteDeliveryQueue;
    use crate::webhook_relay::queue::{DeadLetterFilter, IncomingPayload};
    use crate::webhook_relay::retry::{Backoff, RouteRetry};

    /// A destination answering from a script and recording the delivery ids it saw.
    struct ScriptedDestination {
        script: Mutex<Vec<Result<u16, DeliveryError>>>,
        seen: Mutex<Vec<String>>,
    }

    impl ScriptedDestination {
        fn new(mut script: Vec<Result<u16, DeliveryError>>) -> Arc<Self> {
            script.reverse();
            Arc::new(Self {
                script: Mutex::new(script),
                seen: Mutex::new(Vec::new()),
            })
        }
    }

    #[async_trait]
    impl Destination for ScriptedDestination {
        async fn deliver(&self, attempt: DeliveryAttempt<'_>) -> Result<u16, DeliveryError> {
            self.seen
                .lock()
                .unwrap()
                .push(attempt.delivery_id.to_string());
            self.script.lock().unwrap().pop().unwrap_or(Ok(200))
        }
    }

    /// A worker over a fresh SQLite queue delivering route `r`'s destination `d` to a scripted
    /// destination, at most 3 attempts from a 1 s backoff, on a manual clock at 0.
    fn scripted_worker(
        dir: &tempfile::TempDir,
        script: Vec<Result<u16, DeliveryError>>,
        jitter: bool,
    ) -> (
        Arc<dyn DeliveryQueue>,
        Arc<ScriptedDestination>,
        DeliveryWorker,
        Arc<ManualClock>,
    ) {
        let queue: Arc<dyn DeliveryQueue> =
            Arc::new(SqliteDeliveryQueue::open(dir.path()).unwrap());
        let destination = ScriptedDestination::new(script);
        let mut destinations: DestinationMap = HashMap::new();
        destinations.insert(("r".into(), "d".into()), destination.clone());
        let retry = DeliveryRetry {
            default: RouteRetry {
                max_attempts: 3,
                backoff: Backoff::Exponential {
                    base: Duration::from_secs(1),
                    max_delay: Duration::from_secs(60),
                },
                jitter: crate::retry::Jitter::spread(crate::retry::JITTER),
            },
            jitter,
            attempt_timeout: Duration::from_secs(5),
            ..DeliveryRetry::default()
        };
        let clock = Arc::new(ManualClock::new(0));
        let worker = DeliveryWorker::new(queue.clone(), destinations, retry, clock.clone());
        (queue, destination, worker, clock)
    }

    fn status(code: u16) -> Result<u16, DeliveryError> {
        Err(DeliveryError::Status {
            status: code,
            body: String::new(),
            retry_after: None,
        })
    }

    async fn run(
        script: Vec<Result<u16, DeliveryError>>,
        destination_name: &str,
    ) -> (
        WorkerStats,
        Arc<ScriptedDestination>,
        Vec<crate::webhook_relay::queue::DeadLetter>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (queue, destination, worker, _) = scripted_worker(&dir, script, true);
        queue
            .enqueue(
                IncomingPayload {
                    route: "r".into(),
                    destinations: vec![destination_name.into()],
                    body: b"{}".to_vec(),
                    received_at_ms: 0,
                    paused_until_ms: HashMap::new(),
                },
                0,
            )
            .await
            .unwrap();
        let stats = worker.run_until_idle().await.unwrap();
        let dead = queue
            .dead_letters(&DeadLetterFilter::default())
            .await
            .unwrap();
        (stats, destination, dead)
    }

    #[tokio::test]
    async fn retryable_failures_are_retried_then_delivered_with_one_id() {
        let (stats, destination, dead) = run(vec![status(503), status(429)], "d").await;
        assert_eq!((stats.attempts, stats.retried, stats.delivered), (3, 2, 1));
        let seen = destination.seen.lock().unwrap().clone();
        assert!(seen.iter().all(|id| id == &seen[0]), "same idempotency key");
        assert!(dead.is_empty());
    }

    #[tokio::test]
    async fn a_4xx_is_dead_at_once_and_retries_stop_at_max_attempts() {
        let (stats, _, dead) = run(vec![status(422)], "d").await;
        assert_eq!((stats.attempts, stats.dead), (1, 1));
        assert_eq!(dead[0].attempts[0].outcome, "permanent");

        let timeouts = (0..5)
            .map(|_| Err(DeliveryError::Timeout(Duration::from_secs(1))))
            .collect();
        let (stats, _, dead) = run(timeouts, "d").await;
        assert_eq!((stats.attempts, stats.retried, stats.dead), (3, 2, 1));
        let outcomes: Vec<_> = dead[0]
            .attempts
            .iter()
            .map(|a| a.outcome.as_str())
            .collect();
        assert_eq!(outcomes, ["retryable", "retryable", "retryable"]);
    }

    #[tokio::test]
    async fn a_destination_no_longer_configured_is_a_dead_letter_not_a_loop() {
        let (stats, destination, dead) = run(vec![], "removed").await;
        assert_eq!((stats.attempts, stats.dead), (1, 1));
        assert!(destination.seen.lock().unwrap().is_empty());
        assert_eq!(dead.len(), 1);
    }

    #[tokio::test]
    async fn a_destination_that_keeps_failing_is_paused_without_using_up_attempts() {
        let dir = tempfile::tempdir().unwrap();
        // Five 503s (enough to pause it), then successes.
        let script = (0..5).map(|_| status(503)).collect();
        let (queue, destination, worker, clock) = scripted_worker(&dir, script, false);
        let enqueue = |from: i64, at: i64| {
            let queue = queue.clone();
            async move {
                for n in from..from + 5 {
                    let payload = IncomingPayload {
                        route: "r".into(),
                        destinations: vec!["d".into()],
                        body: format!("{{\"n\":{n}}}").into_bytes(),
                        received_at_ms: at,
                        paused_until_ms: HashMap::new(),
                    };
                    queue.enqueue(payload, 0).await.unwrap();
                }
            }
        };
        enqueue(0, 0).await;
        let first = worker.run_once().await.unwrap();
        assert_eq!((first.attempts, first.retried), (5, 5));
        // Paused for 1 s (the backoff after one pause). New deliveries are due now, but held
        // back until the pause ends, and no attempt is used.
        clock.advance(Duration::from_millis(500));
        enqueue(5, 500).await;
        let paused = worker.run_once().await.unwrap();
        assert_eq!((paused.attempts, paused.postponed), (0, 5), "{paused:?}");
        assert_eq!(destination.seen.lock().unwrap().len(), 5);
        clock.advance(Duration::from_millis(500));
        let resumed = worker.run_until_idle().await.unwrap();
        assert_eq!(
            (resumed.attempts, resumed.delivered),
            (10, 10),
            "{resumed:?}"
        );
        let counts = queue.counts().await.unwrap();
        assert_eq!((counts.delivered, counts.dead), (10, 0));
    }

    /// A destination that never answers until released, counting the attempts that began.
    struct HangingDestination {
        started: tokio::sync::Semaphore,
    }

    #[async_trait]
    impl Destination for HangingDestination {
        async fn deliver(&self, _: DeliveryAttempt<'_>) -> Result<u16, DeliveryError> {
            self.started.add_permits(1);
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_destination_that_never_answers_times_out_retryably_and_stalls_no_other_route() {
        let dir = tempfile::tempdir().unwrap();
        let (queue, fast, _, clock) = scripted_worker(&dir, vec![], false);
        let hanging = Arc::new(HangingDestination {
            started: tokio::sync::Semaphore::new(0),
        });
        let mut destinations: DestinationMap = HashMap::new();
        destinations.insert(("r".into(), "d".into()), fast.clone());
        destinations.insert(("stuck".into(), "d".into()), hanging.clone());
        let retry = DeliveryRetry {
            default: RouteRetry::schedule(vec![]),
            // Long enough that the fast route's deliveries all finish inside it.
            attempt_timeout: Duration::from_secs(2),
            ..DeliveryRetry::default()
        };
        let worker = Arc::new(DeliveryWorker::new(
            queue.clone(),
            destinations,
            retry,
            clock,
        ));
        let payload = |route: &str, n: u32| IncomingPayload {
            route: route.into(),
            destinations: vec!["d".into()],
            body: format!("{{\"n\":{n}}}").into_bytes(),
            received_at_ms: 0,
            paused_until_ms: HashMap::new(),
        };
        queue.enqueue(payload("stuck", 0), 0).await.unwrap();
        let (stop, stopped) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let running = tokio::spawn({
            let (worker, wake) = (worker.clone(), wake.clone());
            async move { worker.run(wake, stopped).await }
        });
        // The stuck delivery is in flight; deliveries of another route that come in meanwhile
        // are claimed and settled while it hangs.
        let _ = hanging.started.acquire().await.unwrap();
        for n in 1..=3 {
            queue.enqueue(payload("r", n), 0).await.unwrap();
            wake.notify_one();
        }
        // Waited for by looking at the queue (bounded: a worker stuck behind the hanging
        // attempt would never get there).
        let watch = async {
            loop {
                let counts = queue.counts().await.unwrap();
                if counts.delivered == 3 {
                    assert_eq!((counts.pending, counts.dead), (1, 0), "still hanging");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Then the hanging attempt ends at the timeout, as a retryable failure.
            loop {
                let dead = queue
                    .dead_letters(&DeadLetterFilter::default())
                    .await
                    .unwrap();
                if !dead.is_empty() {
                    break dead;
                }
                // Polling the queue's state, not waiting for time to pass.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let dead = tokio::time::timeout(Duration::from_secs(30), watch)
            .await
            .expect("the other route's deliveries settle while one destination hangs");
        stop.send(true).unwrap();
        running.await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].delivery.route, "stuck");
        let record = &dead[0].attempts[0];
        assert_eq!(record.outcome, "retryable");
        assert_eq!(record.error.as_deref(), Some("no answer within 2s"));
        assert_eq!(fast.seen.lock().unwrap().len(), 3);
    }

    /// A destination down (503) until the manual clock reaches `up_at_ms`, counting attempts.
    struct DownUntil {
        clock: Arc<ManualClock>,
        up_at_ms: i64,
        attempts: std::sync::atomic::AtomicU64,
    }

    #[async_trait]
    impl Destination for DownUntil {
        async fn deliver(&self, _: DeliveryAttempt<'_>) -> Result<u16, DeliveryError> {
            self.attempts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.clock.now_ms() < self.up_at_ms {
                return status(503);
            }
            Ok(200)
        }
    }

    #[tokio::test]
    async fn the_default_schedule_outlasts_a_20_hour_outage_at_a_few_attempts_per_pause() {
        let dir = tempfile::tempdir().unwrap();
        let queue: Arc<dyn DeliveryQueue> =
            Arc::new(SqliteDeliveryQueue::open(dir.path()).unwrap());
        let clock = Arc::new(ManualClock::new(0));
        let down = Arc::new(DownUntil {
            clock: clock.clone(),
            up_at_ms: 20 * 3_600_000,
            attempts: Default::default(),
        });
        let mut destinations: DestinationMap = HashMap::new();
        destinations.insert(("r".into(), "d".into()), down.clone());
        // The default policy, jitter included.
        let worker = DeliveryWorker::new(
            queue.clone(),
            destinations,
            DeliveryRetry::default(),
            clock.clone(),
        );
        for n in 0..40 {
            let payload = IncomingPayload {
                route: "r".into(),
                destinations: vec!["d".into()],
                body: format!("{{\"n\":{n}}}").into_bytes(),
                received_at_ms: 0,
                paused_until_ms: HashMap::new(),
            };
            queue.enqueue(payload, 0).await.unwrap();
        }
        let stats = worker.run_until_idle().await.unwrap();
        assert_eq!((stats.delivered, stats.dead), (40, 0), "{stats:?}");
        assert!(clock.now_ms() >= 20 * 3_600_000);
        // The first batch (32 attempts, all in flight before the breaker opens), then one probe
        // per pause (5 s, 5 min, 30 min, 2 h, 5 h, 10 h: six before the 20th hour); without the
        // breaker, 7 retries each (280) and dead letters.
        let failed = stats.attempts - 40;
        assert!(
            (DEFAULT_BATCH as u64..=DEFAULT_BATCH as u64 + 8).contains(&failed),
            "{failed} failed attempts: {stats:?}"
        );
    }

    #[tokio::test]
    async fn a_running_worker_prunes_delivered_payloads_after_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let queue: Arc<dyn DeliveryQueue> =
            Arc::new(SqliteDeliveryQueue::open(dir.path()).unwrap());
        let destination = ScriptedDestination::new(vec![]);
        let mut destinations: DestinationMap = HashMap::new();
        destinations.insert(("r".into(), "d".into()), destination.clone());
        let clock = Arc::new(ManualClock::new(0));
        let day = Duration::from_secs(86_400);
        let worker = DeliveryWorker::new(
            queue.clone(),
            destinations,
            DeliveryRetry::default(),
            clock.clone(),
        )
        .with_retention(day);
        let payload = IncomingPayload {
            route: "r".into(),
            destinations: vec!["d".into()],
            body: b"{}".to_vec(),
            received_at_ms: 0,
            paused_until_ms: HashMap::new(),
        };
        queue.enqueue(payload, 0).await.unwrap();
        worker.run_until_idle().await.unwrap();
        assert_eq!(
            worker.prune_if_due().await.unwrap(),
            Some(Pruned::default()),
            "the first runs at once"
        );
        clock.advance(day);
        assert_eq!(
            worker.prune_if_due().await.unwrap(),
            Some(Pruned::default()),
            "not older than a day yet"
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            worker.prune_if_due().await.unwrap(),
            None,
            "not due: the last ran 1 s ago"
        );
        clock.advance(PRUNE_EVERY);
        assert_eq!(
            worker.prune_if_due().await.unwrap(),
            Some(Pruned {
                delivered: 1,
                dead: 0
            })
        );
        assert_eq!(
            queue.counts().await.unwrap(),
            crate::webhook_relay::queue::QueueCounts::default()
        );
    }

    #[tokio::test]
    async fn dead_letters_are_pruned_after_their_retention_while_held_deliveries_stay() {
        let dir = tempfile::tempdir().unwrap();
        let queue: Arc<dyn DeliveryQueue> =
            Arc::new(SqliteDeliveryQueue::open(dir.path()).unwrap());
        let clock = Arc::new(ManualClock::new(0));
        // "gone" refuses every payload for good (dead at once); "down" answers 503 (retried, then
        // paused by the breaker: its deliveries are held).
        let gone = ScriptedDestination::new((0..10).map(|_| status(404)).collect());
        let down = ScriptedDestination::new((0..10).map(|_| status(503)).collect());
        let mut destinations: DestinationMap = HashMap::new();
        destinations.insert(("r".into(), "gone".into()), gone.clone());
        destinations.insert(("r".into(), "down".into()), down.clone());
        destinations.insert(("g".into(), "gone".into()), gone.clone());
        let month = Duration::from_secs(30 * 86_400);
        let worker = DeliveryWorker::new(
            queue.clone(),
            destinations,
            DeliveryRetry::default(),
            clock.clone(),
        )
        .with_dead_letter_retention(month);
        let enqueue = |route: &str, destinations: &[&str], n: usize| IncomingPayload {
            route: route.into(),
            destinations: destinations.iter().map(|d| d.to_string()).collect(),
            body: format!("{{\"n\":{n}}}").into_bytes(),
            received_at_ms: 0,
            paused_until_ms: HashMap::new(),
        };
        for n in 0..5 {
            queue
                .enqueue(enqueue("r", &["gone", "down"], n), 0)
                .await
                .unwrap();
        }
        queue.enqueue(enqueue("g", &["gone"], 9), 0).await.unwrap();
        let stats = worker.run_once().await.unwrap();
        assert_eq!((stats.dead, stats.retried), (6, 5), "{stats:?}");
        let key = ("r".to_string(), "down".to_string());
        assert!(
            worker.pauses().paused_until(&key, 0).is_some(),
            "down is paused"
        );
        assert_eq!(
            worker.prune_if_due().await.unwrap(),
            Some(Pruned::default()),
            "the first prune runs at once; nothing is old enough"
        );
        clock.advance(month);
        assert_eq!(
            worker.prune_if_due().await.unwrap(),
            Some(Pruned::default())
        );
        clock.advance(PRUNE_EVERY);
        assert_eq!(
            worker.prune_if_due().await.unwrap(),
            Some(Pruned {
                delivered: 0,
                dead: 6
            })
        );
        assert!(
            queue
                .dead_letters(&DeadLetterFilter::default())
                .await
                .unwrap()
                .is_empty()
        );
        let counts = queue.counts().await.unwrap();
        // The held deliveries and their payloads stay; "g"'s payload had nothing else left.
        assert_eq!(
            (
                counts.payloads,
                counts.pending,
                counts.dead,
                counts.delivered
            ),
            (5, 5, 0, 0)
        );
        let health = queue.health(clock.now_ms()).await.unwrap().unwrap();
        assert_eq!(health.pending, 5);
        assert_eq!(health.oldest_pending_age_secs, Some(30 * 86_400 + 600));
        let body_bytes: u64 = (0..5).map(|n| format!("{{\"n\":{n}}}").len() as u64).sum();
        assert_eq!(
            health.backlog_bytes,
            body_bytes + 5 * crate::webhook_relay::queue::limits::PAYLOAD_OVERHEAD_BYTES,
            "the pruned dead letters left the backlog"
        );
    }
}
