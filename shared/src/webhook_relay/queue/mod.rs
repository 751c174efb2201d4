//! The [`DeliveryQueue`] port: where accepted payloads wait for delivery, and where failed
//! deliveries end up (dead letters), in one store so that accepting and queueing are one write.
//!
//! A payload accepted on a route becomes one *delivery* per destination. A delivery is pending
//! until a worker settles an attempt as delivered, to be retried at a time, or dead.

pub mod limits;
#[cfg(feature = "relay-pubsub")]
pub mod pubsub;
#[cfg(feature = "relay-pubsub")]
pub mod pubsub_replay;
#[cfg(feature = "relay-local")]
pub mod sqlite;
#[cfg(feature = "relay-sqs")]
pub mod sqs;
#[cfg(feature = "relay-sqs")]
pub mod sqs_dead_letters;
#[cfg(feature = "relay-sqs")]
pub mod sqs_payloads;

use async_trait::async_trait;

/// A payload the HTTP endpoint accepted, to be stored before it answers 200.
#[derive(Debug, Clone)]
pub struct IncomingPayload {
    /// The route it came in on.
    pub route: String,
    /// The destinations (names within the route) it goes to; one delivery each.
    pub destinations: Vec<String>,
    /// The body exactly as received.
    pub body: Vec<u8>,
    /// When it was received (Unix ms).
    pub received_at_ms: i64,
    /// Destinations paused when it came in (the circuit breakers of `delivery::round`), with the
    /// pause's end: their deliveries are due then rather than at once, so the worker does not
    /// take each new delivery only to put it back.
    pub paused_until_ms: std::collections::HashMap<String, i64>,
}

/// A new payload id for a payload received at `received_at_ms`: 32 hex digits, the time first,
/// then random. Ids grow with time, so the SQLite queue's primary-key indexes take appends
/// instead of inserts at random pages (fewer pages written per commit).
pub fn new_payload_id(received_at_ms: i64) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{:012x}{}", received_at_ms.max(0), &random[..20])
}

/// What enqueueing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored; deliveries will follow. The id names the payload.
    Accepted {
        /// The payload id.
        id: String,
    },
    /// The same body came in on the same route within the dedupe window: nothing new stored.
    Duplicate {
        /// The id of the payload first stored.
        id: String,
    },
}

/// One payload to one destination, as a worker sees it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Unique and stable across retries and replays: `<payload id>.<destination>`. Sent as the
    /// `Idempotency-Key`.
    pub id: String,
    /// The payload's id.
    pub payload_id: String,
    /// The route the payload came in on.
    pub route: String,
    /// The destination name within the route.
    pub destination: String,
    /// The body as received.
    pub body: Vec<u8>,
    /// When the payload was received (Unix ms).
    pub received_at_ms: i64,
    /// Attempts made so far in this round (a replay starts a new round at 0).
    pub attempts: u32,
}

/// How one attempt ended, as recorded for dead letters and audit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttemptRecord {
    /// 1 for the first attempt of a round.
    pub attempt: u32,
    /// When it started (Unix ms).
    pub at_ms: i64,
    /// How long it took.
    pub duration_ms: i64,
    /// The HTTP status, when the destination answered.
    pub status: Option<u16>,
    /// `delivered`, `retryable` or `permanent`.
    pub outcome: String,
    /// What went wrong, without secrets (no URLs, no bodies beyond a short snippet).
    pub error: Option<String>,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Done.
    Delivered,
    /// Try again at this time (Unix ms).
    RetryAt(i64),
    /// Give up: move to the dead letters.
    Dead,
}

/// A delivery that gave up, with every attempt's outcome.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The delivery.
    pub delivery: Delivery,
    /// When it was given up (Unix ms).
    pub dead_at_ms: i64,
    /// Every attempt ever made for it, oldest first (all rounds).
    pub attempts: Vec<AttemptRecord>,
}

/// Which dead letters a listing or replay concerns.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    /// Only this route.
    pub route: Option<String>,
    /// Only payloads received at or after this time (Unix ms).
    pub since_ms: Option<i64>,
}

/// How many deliveries are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Accepted payloads stored (duplicates not counted).
    pub payloads: u64,
    /// Waiting for an attempt (or in flight).
    pub pending: u64,
    /// Delivered.
    pub delivered: u64,
    /// Dead letters.
    pub dead: u64,
}

/// What the local queue looks like now: `/healthz` and `tapline relay status` show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueHealth {
    /// Deliveries not yet delivered nor dead: due now, in flight, or held.
    pub pending: u64,
    /// Of `pending`, those not due yet: waiting out a retry's backoff or a paused destination.
    pub held: u64,
    /// Dead letters (kept for the dead-letter retention, or until replayed).
    pub dead: u64,
    /// Seconds since the oldest payload with a pending delivery came in; `None` when nothing is
    /// pending.
    pub oldest_pending_age_secs: Option<u64>,
    /// What counts against the backlog cap
    /// ([`crate::webhook_relay::queue::limits::QueueLimits::max_backlog_bytes`]): the payloads with a delivery
    /// pending or dead, each as its body plus [`crate::webhook_relay::queue::limits::PAYLOAD_OVERHEAD_BYTES`].
    pub backlog_bytes: u64,
    /// Free space for this user on the state directory's file system, when it could be read.
    pub free_disk_bytes: Option<u64>,
    /// Why accepts are refused (503) now, or `None` while they are taken.
    pub refusing: Option<String>,
}

/// The store could not do what was asked; the caller answers 503 or stops.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The SQLite store failed (disk full, locked beyond the busy timeout, corrupt).
    #[cfg(feature = "relay-local")]
    #[error("delivery queue at {path} failed")]
    Sqlite {
        /// The database file.
        path: String,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The state directory could not be created.
    #[error("cannot create state directory {path}")]
    StateDir {
        /// The directory.
        path: String,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The cloud queue refused or could not be reached (SQS).
    #[error("cloud queue {queue} failed: {reason}")]
    Cloud {
        /// The queue (URL or name; not a secret).
        queue: String,
        /// What the service said.
        reason: String,
        /// Whether the same call may succeed later.
        retryable: bool,
    },
    /// The payload cannot be stored by this queue whatever the retries (a body the queue's
    /// messages cannot hold): the endpoint answers 413.
    #[error("payload of {bytes} bytes is too large for the queue: {reason}")]
    TooLarge {
        /// The body's size.
        bytes: usize,
        /// Which limit, and what would lift it.
        reason: String,
    },
    /// The queue is past one of its limits ([`crate::webhook_relay::queue::limits::QueueLimits`]): nothing is
    /// stored until the worker drains it or disk space is freed. The endpoint answers 503 with
    /// `Retry-After`.
    #[error("delivery queue at {path} refuses new payloads: {reason}")]
    Full {
        /// The database file.
        path: String,
        /// Which limit, with the figures.
        reason: String,
    },
    /// The thread that commits accepted payloads has stopped (it panicked): restart the process.
    #[error("delivery queue writer for {path} has stopped")]
    WriterStopped {
        /// The database file.
        path: String,
    },
    /// The blocking task running the store call panicked or was cancelled.
    #[error("delivery queue task did not finish")]
    Task(#[source] tokio::task::JoinError),
}

impl QueueError {
    /// Whether the same call may succeed later (a busy or full disk may clear; a bad path not).
    pub fn is_retryable(&self) -> bool {
        match self {
            #[cfg(feature = "relay-local")]
            QueueError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(
                    rusqlite::ErrorCode::DatabaseBusy
                        | rusqlite::ErrorCode::DatabaseLocked
                        | rusqlite::ErrorCode::DiskFull
                        | rusqlite::ErrorCode::SystemIoFailure
                )
            ),
            QueueError::StateDir { .. }
            | QueueError::WriterStopped { .. }
            | QueueError::TooLarge { .. } => false,
            QueueError::Cloud { retryable, .. } => *retryable,
            QueueError::Task(_) | QueueError::Full { .. } => true,
        }
    }
}

/// Where the HTTP endpoint stores what it accepts: all it needs of a queue. The SQLite queue
/// keeps deliveries too ([`DeliveryQueue`]); on AWS the SQS queue only takes them
/// (`queue::sqs`), and the SQS event source hands them to the worker function.
#[async_trait]
pub trait AcceptQueue: Send + Sync {
    /// Stores `payload` durably (one delivery per destination, due now) unless the same body
    /// came in on the same route within `dedupe_window_ms` (adapters that cannot look back say
    /// so in their documentation). Returns only once it is stored.
    async fn enqueue(
        &self,
        payload: IncomingPayload,
        dedupe_window_ms: i64,
    ) -> Result<Enqueued, QueueError>;

    /// The queue's counts at `now_ms`, for `/healthz`; `None` for queues that cannot count
    /// cheaply (the cloud queues have their own metrics).
    async fn health(&self, _now_ms: i64) -> Result<Option<QueueHealth>, QueueError> {
        Ok(None)
    }
}

/// Durable storage of accepted payloads, their deliveries and dead letters.
#[async_trait]
pub trait DeliveryQueue: AcceptQueue {
    /// Takes up to `limit` pending deliveries due at `now_ms`, leasing each until
    /// `now_ms + lease_ms` so that no other worker takes it meanwhile; a worker that dies
    /// mid-attempt leaves it to be retried when the lease ends.
    async fn claim_due(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<Delivery>, QueueError>;

    /// Records an attempt of delivery `id` and what happens next.
    async fn settle(
        &self,
        id: &str,
        attempt: AttemptRecord,
        next: Settle,
    ) -> Result<(), QueueError>;

    /// Records several attempts at once (a worker's batch). The default settles them one by
    /// one; adapters override it to use one transaction.
    async fn settle_many(
        &self,
        settled: Vec<(String, AttemptRecord, Settle)>,
    ) -> Result<(), QueueError> {
        for (id, attempt, next) in settled {
            self.settle(&id, attempt, next).await?;
        }
        Ok(())
    }

    /// Makes pending deliveries `ids` due at `until_ms` without recording an attempt: the worker
    /// holds back deliveries to a destination it has paused (see `delivery::round`).
    async fn postpone(&self, ids: Vec<String>, until_ms: i64) -> Result<(), QueueError>;

    /// The earliest time a pending delivery is due, or `None` when nothing is pending.
    async fn next_due_at(&self) -> Result<Option<i64>, QueueError>;

    /// Dead letters matching `filter`, oldest payload first, with their attempts.
    async fn dead_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>, QueueError>;

    /// Makes the dead letters matching `filter` pending again, due at `now_ms`, with a fresh
    /// round of attempts (past attempts are kept). Returns how many.
    async fn requeue_dead(&self, filter: &DeadLetterFilter, now_ms: i64)
    -> Result<u64, QueueError>;

    /// Deletes payloads received before `before_ms` whose every delivery was delivered, with
    /// their deliveries and attempts. Pending deliveries and dead letters are kept whatever their
    /// age. Returns how many payloads were deleted.
    async fn prune_delivered(&self, before_ms: i64) -> Result<u64, QueueError>;

    /// Deletes dead letters that became dead before `before_ms`, with their attempts, and their
    /// payloads when no other delivery needs them. Pending deliveries (held for a paused
    /// destination included) are kept whatever their age. Returns how many were deleted.
    async fn prune_dead(&self, before_ms: i64) -> Result<u64, QueueError>;

    /// How many payloads and deliveries are in each state.
    async fn counts(&self) -> Result<QueueCounts, QueueError>;
}
