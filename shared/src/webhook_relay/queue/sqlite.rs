//! [`SqliteDeliveryQueue`]: the local [`DeliveryQueue`], one SQLite file under the state
//! directory in WAL mode. A commit survives a crash of the process (WAL with
//! `synchronous=NORMAL`); a power loss may lose the last commits, the price of fast accepts.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::webhook_relay::queue::limits::{PAYLOAD_OVERHEAD_BYTES, QueueLimits};
use crate::webhook_relay::queue::{
    AcceptQueue, AttemptRecord, DeadLetter, DeadLetterFilter, Delivery, DeliveryQueue, Enqueued,
    IncomingPayload, QueueCounts, QueueError, QueueHealth, Settle,
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
    /// Reads for `/healthz` and `relay status`, beside the writer (WAL): a count over a large
    /// backlog never holds an accept back.
    reader: Arc<Mutex<Connection>>,
    backlog: Arc<Backlog>,
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
    /// Opens (creating when missing) the queue in `state_dir` with the default [`QueueLimits`].
    pub fn open(state_dir: &Path) -> Result<Self, QueueError> {
        Self::open_with_limits(state_dir, QueueLimits::default())
    }

    /// Opens (creating when missing) the queue in `state_dir`, refusing accepts past `limits`.
    /// The directory is made 0700 and the database files 0600 (see [`private_state_dir`]).
    pub fn open_with_limits(state_dir: &Path, limits: QueueLimits) -> Result<Self, QueueError> {
        let dir_err = |source| QueueError::StateDir {
            path: state_dir.display().to_string(),
            source,
        };
        private_state_dir(state_dir).map_err(dir_err)?;
        let path = state_dir.join(QUEUE_FILE);
        private_queue_files(&path).map_err(dir_err)?;
        let err = |source| QueueError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let conn = connect(&path).map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        let reader = Arc::new(Mutex::new(connect(&path).map_err(err)?));
        let backlog = Arc::new(Backlog {
            bytes: AtomicU64::new(count_backlog_bytes(&conn).map_err(err)?),
            counted_at: Mutex::new(Instant::now()),
            limits,
            state_dir: state_dir.to_path_buf(),
            reader: reader.clone(),
        });
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
        let (thread_conn, thread_path, thread_backlog) =
            (conn.clone(), path.clone(), backlog.clone());
        // The thread ends when the last clone of the queue (and so of `writer`) is dropped.
        std::thread::Builder::new()
            .name("relay-queue-writer".into())
            .spawn(move || write_groups(&thread_conn, &thread_path, &thread_backlog, &jobs))
            .map_err(|source| QueueError::StateDir {
                path: state_dir.display().to_string(),
                source,
            })?;
        Ok(Self {
            path,
            conn,
            reader,
            backlog,
            writer,
            _checkpoint_stop: Arc::new(checkpoint_stop),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection on a blocking thread: SQLite calls block.
    /// The newest `limit` dead letters, newest first, each with its attempts and without its
    /// body (left empty), and how many dead letters there are: what `tapline report` lists, in
    /// memory that does not grow with the backlog.
    pub async fn newest_dead_letters(
        &self,
        limit: usize,
    ) -> Result<(u64, Vec<DeadLetter>), QueueError> {
        self.with(move |conn| {
            let total: u64 = conn.query_row(
                "SELECT count(*) FROM relay_deliveries WHERE status = 'dead'",
                [],
                |row| row.get(0),
            )?;
            let newest = dead_letters_of(
                conn,
                "SELECT d.id, d.payload_id, p.route, d.destination, X'', p.received_at_ms, \
                 d.attempts, d.settled_at_ms FROM relay_deliveries d \
                 JOIN relay_payloads p ON p.id = d.payload_id WHERE d.status = 'dead' \
                 ORDER BY d.settled_at_ms DESC, d.id DESC LIMIT ?",
                vec![rusqlite::types::Value::Integer(
                    i64::try_from(limit).unwrap_or(i64::MAX),
                )],
            )?;
            Ok((total, newest))
        })
        .await
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, QueueError> {
        self.on(&self.conn, f).await
    }

    /// Runs `f` on `conn` on a blocking thread.
    /// Runs `batch` (which deletes at most [`PRUNE_BATCH`] of something and says how many) in
    /// transactions of its own until one deletes fewer: accepts wait for one batch at most.
    async fn in_batches(
        &self,
        batch: impl Fn(&rusqlite::Transaction<'_>) -> rusqlite::Result<usize> + Send + Copy + 'static,
    ) -> Result<u64, QueueError> {
        let mut total = 0;
        loop {
            let deleted = self
                .with(move |conn| {
                    let tx = conn.transaction()?;
                    let n = batch(&tx)?;
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

    async fn on<T: Send + 'static>(
        &self,
        conn: &Arc<Mutex<Connection>>,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, QueueError> {
        let conn = conn.clone();
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

/// Creates the state directory 0700, or tightens an existing one to 0700: it holds webhook
/// bodies. An existing directory that is not ours to tighten is refused with the reason: a
/// link, one owned by another user, or a shared one (sticky or writable by others, like
/// `/tmp`). Tightening rather than refusing keeps a state dir made by an earlier version (0755
/// under the usual umask) working after an upgrade.
pub fn private_state_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    let refuse = |why: &str| {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{why}: the relay keeps webhook bodies there, so it wants a directory of its own \
                 (mode 0700); give --state-dir a new path"
            ),
        ))
    };
    if !meta.is_dir() {
        return refuse("not a directory (a link?)");
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if meta.uid() != unsafe { libc::geteuid() } {
        return refuse("owned by another user");
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o1002 != 0 {
        return refuse("a shared directory (sticky or writable by others)");
    }
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{mode:o}"),
            "State directory was open to others; made 0700."
        );
    }
    Ok(())
}

/// Creates the database file 0600 before SQLite opens it (SQLite gives its `-wal` and `-shm`
/// files the database file's mode), and tightens to 0600 the files an earlier version left
/// wider.
fn private_queue_files(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::symlink_metadata(&file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The backlog's size as the cap counts it, kept in memory so that an accept does not count
/// rows: raised by each accept, lowered when a payload's last delivery is delivered, counted
/// again from the database after a prune and when the cap is reached (another process, such as
/// `tapline relay replay`, may have drained it meanwhile).
#[derive(Debug)]
struct Backlog {
    bytes: AtomicU64,
    /// When `bytes` was last counted from the database.
    counted_at: Mutex<Instant>,
    limits: QueueLimits,
    state_dir: PathBuf,
    /// Counts run on the reading connection: a long count never holds the writer (accepts,
    /// settles) back.
    reader: Arc<Mutex<Connection>>,
}

/// How often the cap may count the backlog again while it refuses: a count reads every
/// payload of the backlog.
const RECOUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// What a payload is charged against the cap.
fn payload_cost(payload: &IncomingPayload) -> u64 {
    if payload.destinations.is_empty() {
        return 0;
    }
    payload.body.len() as u64 + PAYLOAD_OVERHEAD_BYTES
}

/// The backlog's bytes, counted: payloads with a delivery pending or dead.
fn count_backlog_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let (n, bytes): (i64, i64) = conn.query_row(
        "SELECT count(*), coalesce(sum(length(p.body)), 0) FROM relay_payloads p \
         WHERE EXISTS (SELECT 1 FROM relay_deliveries d WHERE d.payload_id = p.id \
         AND d.status <> 'delivered')",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(bytes as u64 + n as u64 * PAYLOAD_OVERHEAD_BYTES)
}

/// Free bytes (for this user) and total bytes of the file system holding `dir`.
fn disk_space(dir: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs only writes into the zeroed struct we pass; the path is NUL-terminated.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let block = stat.f_frsize as u64;
    Ok((
        (stat.f_bavail as u64).saturating_mul(block),
        (stat.f_blocks as u64).saturating_mul(block),
    ))
}

impl Backlog {
    /// Lowers the count by `freed` bytes.
    fn release(&self, freed: u64) {
        let _ = self
            .bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                Some(b.saturating_sub(freed))
            });
    }

    /// Counts the backlog again from the database. A settle that lands during the count may be
    /// counted twice until the next count: the error is on the side of refusing.
    fn recount(&self) -> rusqlite::Result<u64> {
        let bytes = count_backlog_bytes(&self.reader.lock().unwrap_or_else(|p| p.into_inner()))?;
        self.bytes.store(bytes, Ordering::SeqCst);
        *self.counted_at.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Ok(bytes)
    }

    /// Why `incoming` more bytes would pass the cap, counting again first (at most every
    /// [`RECOUNT_EVERY`]) so that a backlog drained by another process is seen.
    fn over_cap(&self, incoming: u64) -> Option<String> {
        let max = self.limits.max_backlog_bytes;
        let mut bytes = self.bytes.load(Ordering::SeqCst);
        if bytes.saturating_add(incoming) <= max {
            return None;
        }
        let stale = self
            .counted_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
            >= RECOUNT_EVERY;
        if stale && let Ok(counted) = self.recount() {
            bytes = counted;
        }
        (bytes.saturating_add(incoming) > max).then(|| {
            format!(
                "the backlog holds {bytes} bytes and the cap is {max} (settings.max_queue_mib): \
                 deliveries must drain first"
            )
        })
    }

    /// Why the state directory's file system is past the free-space watermark, with the free
    /// space read; an unreadable free space refuses too (fail closed).
    fn disk_refusal(&self) -> (Option<u64>, Option<String>) {
        match disk_space(&self.state_dir) {
            Ok((free, total)) => {
                let share = total / 100 * u64::from(self.limits.min_free_disk_percent);
                let watermark = share.max(self.limits.min_free_disk_bytes);
                let refusal = (free < watermark).then(|| {
                    format!(
                        "{free} bytes free on the state directory's file system, below the \
                         watermark of {watermark} (settings.min_free_disk_percent, \
                         min_free_disk_mib)"
                    )
                });
                (Some(free), refusal)
            }
            Err(err) => (
                None,
                Some(format!(
                    "cannot read the state directory's free space: {err}"
                )),
            ),
        }
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

/// The dead letters `select` names (the delivery's columns, then `settled_at_ms`), each with
/// every attempt.
fn dead_letters_of(
    conn: &rusqlite::Connection,
    select: &str,
    values: Vec<rusqlite::types::Value>,
) -> rusqlite::Result<Vec<DeadLetter>> {
    let mut stmt = conn.prepare(select)?;
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
    let id = crate::webhook_relay::queue::new_payload_id(payload.received_at_ms);
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

/// Records one attempt and moves its delivery on, inside `tx`. Returns the bytes that left the
/// backlog: the payload's cost when this was its last delivery not yet delivered.
fn record_attempt(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    attempt: &AttemptRecord,
    next: Settle,
) -> rusqlite::Result<u64> {
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
        Settle::Delivered => {
            // Only a delivery not delivered before frees bytes (a lease that ended may let one
            // be delivered twice).
            let changed = tx
                .prepare_cached(
                    "UPDATE relay_deliveries SET status = 'delivered', attempts = ?2, \
                     settled_at_ms = ?3 WHERE id = ?1 AND status <> 'delivered'",
                )?
                .execute(params![id, attempt.attempt, settled_at])?;
            if changed == 0 {
                return Ok(0);
            }
            let freed: Option<i64> = tx
                .prepare_cached(
                    "SELECT length(p.body) FROM relay_deliveries d0 JOIN relay_payloads p \
                     ON p.id = d0.payload_id WHERE d0.id = ?1 AND NOT EXISTS (SELECT 1 FROM \
                     relay_deliveries d WHERE d.payload_id = p.id AND d.status <> 'delivered')",
                )?
                .query_row([id], |r| r.get(0))
                .optional()?;
            return Ok(freed.map_or(0, |b| b as u64 + PAYLOAD_OVERHEAD_BYTES));
        }
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
    Ok(0)
}

/// The writer thread: waits for a payload, takes whatever else is waiting (up to
/// [`MAX_GROUP`]), commits them in one transaction and answers each caller. When the group
/// fails, each payload is tried alone so that one bad payload cannot fail the others.
fn write_groups(
    conn: &Mutex<Connection>,
    path: &Path,
    backlog: &Backlog,
    jobs: &std::sync::mpsc::Receiver<EnqueueJob>,
) {
    while let Ok(first) = jobs.recv() {
        let mut waiting = vec![first];
        while waiting.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => waiting.push(job),
                Err(_) => break,
            }
        }
        // The limits, checked here where accepts are serialised: the cap cannot be passed by
        // payloads racing each other. Refused payloads are answered at once; none is stored.
        let (_, disk_refusal) = backlog.disk_refusal();
        let mut group = Vec::with_capacity(waiting.len());
        let mut group_bytes = 0;
        for job in waiting {
            let cost = payload_cost(&job.0);
            let refusal = disk_refusal
                .clone()
                .or_else(|| backlog.over_cap(group_bytes + cost));
            match refusal {
                Some(reason) => {
                    let _ = job.2.send(Err(QueueError::Full {
                        path: path.display().to_string(),
                        reason,
                    }));
                }
                None => {
                    group_bytes += cost;
                    group.push(job);
                }
            }
        }
        if group.is_empty() {
            continue;
        }
        let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
        let stored = |payload: &IncomingPayload, outcome: &Enqueued| {
            if matches!(outcome, Enqueued::Accepted { .. }) {
                backlog
                    .bytes
                    .fetch_add(payload_cost(payload), Ordering::SeqCst);
            }
        };
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
                for ((payload, _, reply), outcome) in group.into_iter().zip(outcomes) {
                    stored(&payload, &outcome);
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
                    if let Ok(outcome) = &alone {
                        stored(&payload, outcome);
                    }
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

    async fn health(&self, now_ms: i64) -> Result<Option<QueueHealth>, QueueError> {
        let backlog = self.backlog.clone();
        let mut health = self
            .on(&self.reader, move |conn| {
                let (pending, held): (i64, i64) = conn.query_row(
                    "SELECT count(*), coalesce(sum(next_attempt_at_ms > ?1), 0) \
                     FROM relay_deliveries WHERE status = 'pending'",
                    [now_ms],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let dead: i64 = conn.query_row(
                    "SELECT count(*) FROM relay_deliveries WHERE status = 'dead'",
                    [],
                    |r| r.get(0),
                )?;
                let oldest: Option<i64> = conn.query_row(
                    "SELECT min(p.received_at_ms) FROM relay_deliveries d JOIN relay_payloads p \
                     ON p.id = d.payload_id WHERE d.status = 'pending'",
                    [],
                    |r| r.get(0),
                )?;
                Ok(QueueHealth {
                    pending: pending as u64,
                    held: held as u64,
                    dead: dead as u64,
                    oldest_pending_age_secs: oldest
                        .map(|at| (now_ms.saturating_sub(at).max(0) / 1000) as u64),
                    backlog_bytes: backlog.bytes.load(Ordering::SeqCst),
                    ..QueueHealth::default()
                })
            })
            .await?;
        let (free, disk_refusal) = self.backlog.disk_refusal();
        health.free_disk_bytes = free;
        health.refusing = disk_refusal.or_else(|| {
            let max = self.backlog.limits.max_backlog_bytes;
            // Full when not even the smallest payload fits.
            (health.backlog_bytes + PAYLOAD_OVERHEAD_BYTES > max).then(|| {
                format!(
                    "the backlog holds {} bytes and the cap is {max} (settings.max_queue_mib)",
                    health.backlog_bytes
                )
            })
        });
        Ok(Some(health))
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
        let freed = self
            .with(move |conn| {
                let tx = conn.transaction()?;
                let mut freed = 0;
                for (id, attempt, next) in &settled {
                    freed += record_attempt(&tx, id, attempt, *next)?;
                }
                tx.commit()?;
                Ok(freed)
            })
            .await?;
        self.backlog.release(freed);
        Ok(())
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
            dead_letters_of(
                conn,
                &format!(
                    "SELECT {DELIVERY_COLUMNS}, d.settled_at_ms FROM relay_deliveries d \
                     JOIN relay_payloads p ON p.id = d.payload_id WHERE {condition} \
                     ORDER BY p.received_at_ms, d.id"
                ),
                values,
            )
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
        self.in_batches(move |tx| {
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
            Ok(n)
        })
        .await
    }

    async fn prune_dead(&self, before_ms: i64) -> Result<u64, QueueError> {
        let total = self
            .in_batches(move |tx| {
                tx.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS relay_prune_dead \
                     (id TEXT PRIMARY KEY, payload_id TEXT NOT NULL)",
                    [],
                )?;
                tx.execute("DELETE FROM relay_prune_dead", [])?;
                let n = tx.execute(
                    "INSERT INTO relay_prune_dead (id, payload_id) SELECT id, payload_id \
                     FROM relay_deliveries WHERE status = 'dead' AND settled_at_ms < ?1 \
                     LIMIT ?2",
                    params![before_ms, PRUNE_BATCH],
                )?;
                tx.execute(
                    "DELETE FROM relay_attempts WHERE delivery_id IN \
                     (SELECT id FROM relay_prune_dead)",
                    [],
                )?;
                tx.execute(
                    "DELETE FROM relay_deliveries WHERE id IN (SELECT id FROM relay_prune_dead)",
                    [],
                )?;
                // A payload goes once no delivery of it is left; one with a delivery still
                // pending (or delivered, kept for the dedupe window) stays.
                tx.execute(
                    "DELETE FROM relay_payloads WHERE id IN (SELECT payload_id FROM \
                     relay_prune_dead) AND NOT EXISTS (SELECT 1 FROM relay_deliveries d \
                     WHERE d.payload_id = relay_payloads.id)",
                    [],
                )?;
                Ok(n)
            })
            .await?;
        if total > 0 {
            let backlog = self.backlog.clone();
            tokio::task::spawn_blocking(move || backlog.recount())
                .await
                .map_err(QueueError::Task)?
                .map_err(|source| QueueError::Sqlite {
                    path: self.path.display().to_string(),
                    source,
                })?;
        }
        Ok(total)
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

    /// The report's listing: the newest first, bodies left out, the total counted.
    #[tokio::test]
    async fn the_newest_dead_letters_come_without_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let q = SqliteDeliveryQueue::open(dir.path()).unwrap();
        for (n, body) in ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"].iter().enumerate() {
            q.enqueue(payload(body, 1_000 + n as i64), 0).await.unwrap();
        }
        let claimed = q.claim_due(5_000, 10, 60_000).await.unwrap();
        assert_eq!(claimed.len(), 6);
        for (n, delivery) in claimed.iter().enumerate() {
            let attempt = AttemptRecord {
                attempt: 1,
                at_ms: 10_000 + n as i64,
                duration_ms: 1,
                status: Some(400 + n as u16),
                outcome: "permanent".into(),
                error: None,
            };
            q.settle(&delivery.id, attempt, Settle::Dead).await.unwrap();
        }
        let (total, newest) = q.newest_dead_letters(2).await.unwrap();
        assert_eq!(total, 6);
        let seen: Vec<(&str, Option<u16>, usize)> = newest
            .iter()
            .map(|l| {
                (
                    l.delivery.id.as_str(),
                    l.attempts[0].status,
                    l.delivery.body.len(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (claimed[5].id.as_str(), Some(405), 0),
                (claimed[4].id.as_str(), Some(404), 0)
            ]
        );
        assert!(newest[0].dead_at_ms >= newest[1].dead_at_ms);
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
