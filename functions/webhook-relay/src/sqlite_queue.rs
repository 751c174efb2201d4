//! [`SqliteDeliveryQueue`]: the local [`DeliveryQueue`], one SQLite file under the state
//! directory in WAL mode. A commit survives a crash of the process (WAL with
//! `synchronous=NORMAL`); a power loss may lose the last commits, the price of fast accepts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::queue::{
    AcceptQueue, AttemptRecord, DeadLetter, DeadLetterFilter, Delivery, DeliveryQueue, Enqueued,
    IncomingPayload, QueueCounts, QueueError, Settle,
};

/// The database file's name under the state directory.
pub const QUEUE_FILE: &str = "relay-queue.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS relay_payloads (
    id TEXT PRIMARY KEY,
    route TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    dedupe_key TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS relay_payloads_dedupe ON relay_payloads (dedupe_key, received_at_ms);
CREATE TABLE IF NOT EXISTS relay_deliveries (
    id TEXT PRIMARY KEY,
    payload_id TEXT NOT NULL REFERENCES relay_payloads (id),
    destination TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    settled_at_ms INTEGER
);
CREATE INDEX IF NOT EXISTS relay_deliveries_due ON relay_deliveries (status, next_attempt_at_ms);
CREATE INDEX IF NOT EXISTS relay_deliveries_payload ON relay_deliveries (payload_id);
CREATE INDEX IF NOT EXISTS relay_payloads_received ON relay_payloads (received_at_ms);
CREATE TABLE IF NOT EXISTS relay_attempts (
    delivery_id TEXT NOT NULL REFERENCES relay_deliveries (id),
    attempt INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status_code INTEGER,
    outcome TEXT NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS relay_attempts_delivery ON relay_attempts (delivery_id);
";

/// Most payloads deleted in one transaction by a prune: accepts wait for the writer meanwhile.
const PRUNE_BATCH: i64 = 2_000;

/// Most payloads committed in one transaction by the writer thread.
const MAX_GROUP: usize = 512;

/// A payload waiting for the writer thread, and where to send the outcome.
type EnqueueJob = (
    IncomingPayload,
    i64,
    tokio::sync::oneshot::Sender<Result<Enqueued, QueueError>>,
);

/// The delivery queue and dead letters in one SQLite file.
///
/// Accepts go through one writer thread that commits whatever is waiting in one transaction
/// (group commit): under load, one commit serves many requests, and each caller still hears
/// back only once its own payload is committed.
#[derive(Clone)]
pub struct SqliteDeliveryQueue {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    writer: std::sync::mpsc::Sender<EnqueueJob>,
    /// Dropped with the last clone: the checkpoint thread then stops.
    _checkpoint_stop: Arc<std::sync::mpsc::Sender<()>>,
}

impl std::fmt::Debug for SqliteDeliveryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteDeliveryQueue")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteDeliveryQueue {
    /// Opens (creating when missing) the queue in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, QueueError> {
        std::fs::create_dir_all(state_dir).map_err(|source| QueueError::StateDir {
            path: state_dir.display().to_string(),
            source,
        })?;
        let path = state_dir.join(QUEUE_FILE);
        let err = |source| QueueError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let conn = connect(&path).map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        // Checkpoints (copying the WAL into the database, with its fsyncs) run on their own
        // connection and thread, so that an accept never waits for one.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(err)?;
        let conn = Arc::new(Mutex::new(conn));
        let checkpoints = connect(&path).map_err(err)?;
        let (checkpoint_stop, checkpoint_stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("relay-queue-checkpoint".into())
            .spawn(move || checkpoint_wal(&checkpoints, &checkpoint_stopped))
            .map_err(|source| QueueError::StateDir {
                path: state_dir.display().to_string(),
                source,
            })?;
        let (writer, jobs) = std::sync::mpsc::channel();
        let (thread_conn, thread_path) = (conn.clone(), path.clone());
        // The thread ends when the last clone of the queue (and so of `writer`) is dropped.
        std::thread::Builder::new()
            .name("relay-queue-writer".into())
            .spawn(move || write_groups(&thread_conn, &thread_path, &jobs))
            .map_err(|source| QueueError::StateDir {
                path: state_dir.display().to_string(),
                source,
            })?;
        Ok(Self {
            path,
            conn,
            writer,
            _checkpoint_stop: Arc::new(checkpoint_stop),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection on a blocking thread: SQLite calls block.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, QueueError> {
        let conn = self.conn.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock leaves SQLite consistent (transactions roll back).
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard).map_err(|source| QueueError::Sqlite {
                path: path.display().to_string(),
                source,
            })
        })
        .await
        .map_err(QueueError::Task)?
    }
}

/// How often the checkpoint thread copies the WAL into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// A connection with the queue's settings. WAL lets `tapline relay replay` work beside a running
/// server, and `synchronous=NORMAL` makes a commit a write to the WAL without an fsync: it
/// survives a crash of the process, not necessarily of the machine (see the README). The busy
/// timeout lets processes wait for each other instead of failing.
fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // 64 MiB of page cache: the indexes of a busy queue stay in memory instead of being read
    // back for every insert.
    conn.pragma_update(None, "cache_size", -65_536)?;
    // The WAL file is cut back to this after a checkpoint instead of staying at its peak size.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// The checkpoint thread: a passive checkpoint every [`CHECKPOINT_EVERY`], beside the writer
/// and never blocking it, until the queue is dropped. Under constant writes a passive checkpoint
/// does not catch up and the WAL grows; once writes pause, a checkpoint catches up and the next
/// commit starts the WAL again from its beginning (cut back to `journal_size_limit`). Holding the
/// writer for a full checkpoint instead bounds the WAL but puts an fsync on the accept path: p99
/// went from 15 ms to 230 ms under `make bench-relay`. A failed checkpoint is retried the next time.
fn checkpoint_wal(conn: &Connection, stop: &std::sync::mpsc::Receiver<()>) {
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY)
    {
        if let Err(err) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %err, "Delivery queue checkpoint failed; trying again.");
        }
    }
}

fn dedupe_key(route: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(route.as_bytes());
    hash.update([0u8]);
    hash.update(body);
    hex::encode(hash.finalize())
}

const DELIVERY_COLUMNS: &str = "d.id, d.payload_id, p.route, d.destination, p.body, \
     p.received_at_ms, d.attempts";

fn delivery_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: row.get(0)?,
        payload_id: row.get(1)?,
        route: row.get(2)?,
        destination: row.get(3)?,
        body: row.get(4)?,
        received_at_ms: row.get(5)?,
        attempts: row.get(6)?,
    })
}

/// `WHERE` conditions and parameters for a dead-letter filter.
fn filter_sql(filter: &DeadLetterFilter) -> (String, Vec<rusqlite::types::Value>) {
    let mut sql = String::from("d.status = 'dead'");
    let mut values = Vec::new();
    if let Some(route) = &filter.route {
        sql.push_str(" AND p.route = ?");
        values.push(rusqlite::types::Value::Text(route.clone()));
    }
    if let Some(since) = filter.since_ms {
        sql.push_str(" AND p.received_at_ms >= ?");
        values.push(rusqlite::types::Value::Integer(since));
    }
    (sql, values)
}

/// Stores one payload inside `tx` unless the same body came in on the same route within the
/// window (payloads earlier in the same transaction count).
fn insert_payload(
    tx: &rusqlite::Transaction<'_>,
    payload: &IncomingPayload,
    dedupe_window_ms: i64,
) -> rusqlite::Result<Enqueued> {
    let key = dedupe_key(&payload.route, &payload.body);
    let earlier: Option<String> = tx
        .prepare_cached(
            "SELECT id FROM relay_payloads WHERE dedupe_key = ?1 AND received_at_ms > ?2 \
             ORDER BY received_at_ms LIMIT 1",
        )?
        .query_row(
            params![key, payload.received_at_ms - dedupe_window_ms],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(id) = earlier {
        return Ok(Enqueued::Duplicate { id });
    }
    let id = crate::queue::new_payload_id(payload.received_at_ms);
    tx.prepare_cached(
        "INSERT INTO relay_payloads (id, route, received_at_ms, dedupe_key, body) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        id,
        payload.route,
        payload.received_at_ms,
        key,
        payload.body
    ])?;
    let mut insert_delivery = tx.prepare_cached(
        "INSERT INTO relay_deliveries (id, payload_id, destination, status, next_attempt_at_ms) \
         VALUES (?1, ?2, ?3, 'pending', ?4)",
    )?;
    for destination in &payload.destinations {
        let due = payload
            .paused_until_ms
            .get(destination)
            .copied()
            .unwrap_or(payload.received_at_ms);
        insert_delivery.execute(params![format!("{id}.{destination}"), id, destination, due])?;
    }
    Ok(Enqueued::Accepted { id })
}

/// Records one attempt and moves its delivery on, inside `tx`.
fn record_attempt(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    attempt: &AttemptRecord,
    next: Settle,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO relay_attempts (delivery_id, attempt, at_ms, duration_ms, status_code, \
         outcome, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        id,
        attempt.attempt,
        attempt.at_ms,
        attempt.duration_ms,
        attempt.status,
        attempt.outcome,
        attempt.error
    ])?;
    let settled_at = attempt.at_ms + attempt.duration_ms;
    match next {
        Settle::Delivered => tx
            .prepare_cached(
                "UPDATE relay_deliveries SET status = 'delivered', attempts = ?2, \
                 settled_at_ms = ?3 WHERE id = ?1",
            )?
            .execute(params![id, attempt.attempt, settled_at])?,
        Settle::Dead => tx
            .prepare_cached(
                "UPDATE relay_deliveries SET status = 'dead', attempts = ?2, settled_at_ms = ?3 \
                 WHERE id = ?1",
            )?
            .execute(params![id, attempt.attempt, settled_at])?,
        Settle::RetryAt(at) => tx
            .prepare_cached(
                "UPDATE relay_deliveries SET attempts = ?2, next_attempt_at_ms = ?3 WHERE id = ?1",
            )?
            .execute(params![id, attempt.attempt, at])?,
    };
    Ok(())
}

/// The writer thread: waits for a payload, takes whatever else is waiting (up to
/// [`MAX_GROUP`]), commits them in one transaction and answers each caller. When the group
/// fails, each payload is tried alone so that one bad payload cannot fail the others.
fn write_groups(
    conn: &Mutex<Connection>,
    path: &Path,
    jobs: &std::sync::mpsc::Receiver<EnqueueJob>,
) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
        let together = (|| {
            let tx = guard.transaction()?;
            let outcomes = group
                .iter()
                .map(|(payload, window, _)| insert_payload(&tx, payload, *window))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            tx.commit()?;
            Ok::<_, rusqlite::Error>(outcomes)
        })();
        match together {
            Ok(outcomes) => {
                drop(guard);
                for ((_, _, reply), outcome) in group.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(_) => {
                for (payload, window, reply) in group {
                    let alone = (|| {
                        let tx = guard.transaction()?;
                        let outcome = insert_payload(&tx, &payload, window)?;
                        tx.commit()?;
                        Ok(outcome)
                    })();
                    let _ = reply.send(alone.map_err(|source| QueueError::Sqlite {
                        path: path.display().to_string(),
                        source,
                    }));
                }
            }
        }
    }
}

#[async_trait]
impl AcceptQueue for SqliteDeliveryQueue {
    async fn enqueue(
        &self,
        payload: IncomingPayload,
        dedupe_window_ms: i64,
    ) -> Result<Enqueued, QueueError> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let closed = || QueueError::WriterStopped {
            path: self.path.display().to_string(),
        };
        self.writer
            .send((payload, dedupe_window_ms, reply))
            .map_err(|_| closed())?;
        outcome.await.map_err(|_| closed())?
    }
}

#[async_trait]
impl DeliveryQueue for SqliteDeliveryQueue {
    async fn claim_due(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<Delivery>, QueueError> {
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let deliveries = {
                let mut stmt = tx.prepare(&format!(
                    "SELECT {DELIVERY_COLUMNS} FROM relay_deliveries d \
                     JOIN relay_payloads p ON p.id = d.payload_id \
                     WHERE d.status = 'pending' AND d.next_attempt_at_ms <= ?1 \
                     ORDER BY d.next_attempt_at_ms LIMIT ?2"
                ))?;
                stmt.query_map(params![now_ms, limit as i64], delivery_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?
            };
            for d in &deliveries {
                tx.execute(
                    "UPDATE relay_deliveries SET next_attempt_at_ms = ?2 WHERE id = ?1",
                    params![d.id, now_ms + lease_ms],
                )?;
            }
            tx.commit()?;
            Ok(deliveries)
        })
        .await
    }

    async fn settle(
        &self,
        id: &str,
        attempt: AttemptRecord,
        next: Settle,
    ) -> Result<(), QueueError> {
        self.settle_many(vec![(id.to_string(), attempt, next)])
            .await
    }

    async fn settle_many(
        &self,
        settled: Vec<(String, AttemptRecord, Settle)>,
    ) -> Result<(), QueueError> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            for (id, attempt, next) in &settled {
                record_attempt(&tx, id, attempt, *next)?;
            }
            tx.commit()
        })
        .await
    }

    async fn postpone(&self, ids: Vec<String>, until_ms: i64) -> Result<(), QueueError> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE relay_deliveries SET next_attempt_at_ms = ?2 \
                     WHERE id = ?1 AND status = 'pending'",
                )?;
                for id in &ids {
                    stmt.execute(params![id, until_ms])?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn next_due_at(&self) -> Result<Option<i64>, QueueError> {
        self.with(|conn| {
            conn.query_row(
                "SELECT min(next_attempt_at_ms) FROM relay_deliveries WHERE status = 'pending'",
                [],
                |row| row.get(0),
            )
        })
        .await
    }

    async fn dead_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>, QueueError> {
        let (condition, values) = filter_sql(filter);
        self.with(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {DELIVERY_COLUMNS}, d.settled_at_ms FROM relay_deliveries d \
                 JOIN relay_payloads p ON p.id = d.payload_id WHERE {condition} \
                 ORDER BY p.received_at_ms, d.id"
            ))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(values), |row| {
                    Ok((delivery_from_row(row)?, row.get::<_, Option<i64>>(7)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut attempts_stmt = conn.prepare(
                "SELECT attempt, at_ms, duration_ms, status_code, outcome, error \
                 FROM relay_attempts WHERE delivery_id = ?1 ORDER BY rowid",
            )?;
            rows.into_iter()
                .map(|(delivery, dead_at)| {
                    let attempts = attempts_stmt
                        .query_map([&delivery.id], |row| {
                            Ok(AttemptRecord {
                                attempt: row.get(0)?,
                                at_ms: row.get(1)?,
                                duration_ms: row.get(2)?,
                                status: row.get(3)?,
                                outcome: row.get(4)?,
                                error: row.get(5)?,
                            })
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    Ok(DeadLetter {
                        delivery,
                        dead_at_ms: dead_at.unwrap_or_default(),
                        attempts,
                    })
                })
                .collect()
        })
        .await
    }

    async fn requeue_dead(
        &self,
        filter: &DeadLetterFilter,
        now_ms: i64,
    ) -> Result<u64, QueueError> {
        let (condition, mut values) = filter_sql(filter);
        self.with(move |conn| {
            values.insert(0, rusqlite::types::Value::Integer(now_ms));
            let n = conn.execute(
                &format!(
                    "UPDATE relay_deliveries SET status = 'pending', attempts = 0, \
                     settled_at_ms = NULL, next_attempt_at_ms = ? WHERE id IN ( \
                     SELECT d.id FROM relay_deliveries d JOIN relay_payloads p \
                     ON p.id = d.payload_id WHERE {condition})"
                ),
                rusqlite::params_from_iter(values),
            )?;
            Ok(n as u64)
        })
        .await
    }

    async fn prune_delivered(&self, before_ms: i64) -> Result<u64, QueueError> {
        let mut total = 0;
        loop {
            // In batches, each its own transaction, so that accepts wait for one batch at most.
            let deleted = self
                .with(move |conn| {
                    let tx = conn.transaction()?;
                    tx.execute(
                        "CREATE TEMP TABLE IF NOT EXISTS relay_prune (id TEXT PRIMARY KEY)",
                        [],
                    )?;
                    tx.execute("DELETE FROM relay_prune", [])?;
                    let n = tx.execute(
                        "INSERT INTO relay_prune (id) SELECT p.id FROM relay_payloads p \
                         WHERE p.received_at_ms < ?1 AND NOT EXISTS (SELECT 1 FROM \
                         relay_deliveries d WHERE d.payload_id = p.id AND d.status <> 'delivered') \
                         LIMIT ?2",
                        params![before_ms, PRUNE_BATCH],
                    )?;
                    tx.execute(
                        "DELETE FROM relay_attempts WHERE delivery_id IN (SELECT d.id FROM \
                         relay_deliveries d JOIN relay_prune r ON r.id = d.payload_id)",
                        [],
                    )?;
                    tx.execute(
                        "DELETE FROM relay_deliveries WHERE payload_id IN (SELECT id FROM relay_prune)",
                        [],
                    )?;
                    tx.execute(
                        "DELETE FROM relay_payloads WHERE id IN (SELECT id FROM relay_prune)",
                        [],
                    )?;
                    tx.commit()?;
                    Ok(n as u64)
                })
                .await?;
            total += deleted;
            if deleted < PRUNE_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    async fn counts(&self) -> Result<QueueCounts, QueueError> {
        self.with(|conn| {
            let payloads: i64 =
                conn.query_row("SELECT count(*) FROM relay_payloads", [], |r| r.get(0))?;
            let mut counts = QueueCounts {
                payloads: payloads as u64,
                ..QueueCounts::default()
            };
            let mut stmt =
                conn.prepare("SELECT status, count(*) FROM relay_deliveries GROUP BY status")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (status, n) = row?;
                match status.as_str() {
                    "pending" => counts.pending = n as u64,
                    "delivered" => counts.delivered = n as u64,
                    _ => counts.dead = n as u64,
                }
            }
            Ok(counts)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn payload(body: &str, at: i64) -> IncomingPayload {
        IncomingPayload {
            route: "alerts".into(),
            destinations: vec!["slack-1".into(), "http-2".into()],
            body: body.as_bytes().to_vec(),
            received_at_ms: at,
            paused_until_ms: HashMap::new(),
        }
    }

    #[tokio::test]
    async fn enqueue_dedupes_claims_lease_and_dead_letters_replay() {
        let dir = tempfile::tempdir().unwrap();
        let q = SqliteDeliveryQueue::open(dir.path()).unwrap();
        let Enqueued::Accepted { id } = q.enqueue(payload("{}", 1_000), 600_000).await.unwrap()
        else {
            panic!("first is accepted")
        };
        assert_eq!(
            q.enqueue(payload("{}", 2_000), 600_000).await.unwrap(),
            Enqueued::Duplicate { id: id.clone() }
        );
        // Outside the window the same body is a new payload.
        assert!(matches!(
            q.enqueue(payload("{}", 700_000), 600_000).await.unwrap(),
            Enqueued::Accepted { .. }
        ));
        let claimed = q.claim_due(2_000, 10, 60_000).await.unwrap();
        assert_eq!(claimed.len(), 2, "only the first payload is due");
        assert!(
            q.claim_due(2_000, 10, 60_000).await.unwrap().is_empty(),
            "leased"
        );
        let attempt = AttemptRecord {
            attempt: 1,
            at_ms: 2_000,
            duration_ms: 5,
            status: Some(404),
            outcome: "permanent".into(),
            error: Some("HTTP 404".into()),
        };
        q.settle(&claimed[0].id, attempt.clone(), Settle::Dead)
            .await
            .unwrap();
        q.settle(&claimed[1].id, attempt, Settle::Delivered)
            .await
            .unwrap();
        let dead = q.dead_letters(&DeadLetterFilter::default()).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].attempts[0].status, Some(404));
        let filter = DeadLetterFilter {
            route: Some("other".into()),
            since_ms: None,
        };
        assert_eq!(q.requeue_dead(&filter, 3_000).await.unwrap(), 0);
        assert_eq!(
            q.requeue_dead(&DeadLetterFilter::default(), 3_000)
                .await
                .unwrap(),
            1
        );
        let counts = q.counts().await.unwrap();
        assert_eq!((counts.payloads, counts.delivered, counts.dead), (2, 1, 0));
        assert_eq!(counts.pending, 3);
    }

    #[tokio::test]
    async fn pruning_deletes_old_delivered_payloads_only_and_dedupe_still_works() {
        let dir = tempfile::tempdir().unwrap();
        let q = SqliteDeliveryQueue::open(dir.path()).unwrap();
        let window = 600_000;
        let delivered = AttemptRecord {
            attempt: 1,
            at_ms: 10,
            duration_ms: 1,
            status: Some(200),
            outcome: "delivered".into(),
            error: None,
        };
        // Old and fully delivered; old with one delivery dead; old and pending; recent.
        for (body, at) in [
            ("old", 1_000),
            ("dead", 1_000),
            ("pending", 1_000),
            ("new", 900_000),
        ] {
            q.enqueue(payload(body, at), window).await.unwrap();
        }
        let claimed = q.claim_due(1_000, 10, 0).await.unwrap();
        assert_eq!(claimed.len(), 6, "the three old payloads' deliveries");
        for d in &claimed {
            let body = String::from_utf8_lossy(&d.body).to_string();
            let next = match (body.as_str(), d.destination.as_str()) {
                ("old", _) | ("dead", "slack-1") => Settle::Delivered,
                ("dead", _) => Settle::Dead,
                _ => continue,
            };
            q.settle(&d.id, delivered.clone(), next).await.unwrap();
        }
        let cutoff = 900_000 - window;
        assert_eq!(q.prune_delivered(cutoff).await.unwrap(), 1, "only \"old\"");
        assert_eq!(q.prune_delivered(cutoff).await.unwrap(), 0, "idempotent");
        let counts = q.counts().await.unwrap();
        assert_eq!(
            (
                counts.payloads,
                counts.delivered,
                counts.dead,
                counts.pending
            ),
            (3, 1, 1, 4)
        );
        assert_eq!(
            q.dead_letters(&DeadLetterFilter::default())
                .await
                .unwrap()
                .len(),
            1
        );
        // Within the window the recent body is still a duplicate; the pruned one is new again.
        assert!(matches!(
            q.enqueue(payload("new", 900_001), window).await.unwrap(),
            Enqueued::Duplicate { .. }
        ));
        assert!(matches!(
            q.enqueue(payload("old", 900_001), window).await.unwrap(),
            Enqueued::Accepted { .. }
        ));
        let orphans: i64 = q
            .with(|c| {
                c.query_row(
                    "SELECT count(*) FROM relay_attempts a LEFT JOIN relay_deliveries d \
                     ON d.id = a.delivery_id WHERE d.id IS NULL",
                    [],
                    |r| r.get(0),
                )
            })
            .await
            .unwrap();
        assert_eq!(orphans, 0, "attempts go with their deliveries");
    }
}
