//! One fuzz case: an object name and its stored bytes through `tapline::export_loader::load::load_object`, the
//! function `tapline load` runs per object (recognition, decode, CSV/JSON rows, validation,
//! reject keeping, the quarantine judgement), with an in-memory source and a warehouse that
//! plans tables and columns like the SQL adapters, reads every value, and discards the rows.

use std::io::{self, Read};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tapline::config::{DEFAULT_MAX_REJECT_RATIO, LoadConfig};
use tapline::export::{Reject, RowBatch};
use tapline::export_loader::load::{FileOutcome, load_object};
use tapline::storage::{ObjectEntry, ObjectSource};
use tapline::warehouse::catalog::Catalog;
use tapline::warehouse::{
    Begin, Checkpoints, Committed, FixedTable, FixedTables, LedgerVersion, LoadLedger, LoadRecord,
    LoadStatus, LoadTransaction, Outcome, QueryResult, SourceObject, SqlQuery, StateWrite,
    Warehouse, WarehouseError,
};

use crate::ALLOCATOR;
use crate::json_flatten_differential::json_flatten_difference;

/// Default per-case bound on peak heap bytes above the case's baseline. The load path is built
/// to stay flat: batches of at most 4 MiB of text (4 in flight), a record of at most 16 MiB,
/// at most 10,000 stored rejects of 4 KiB; a Lambda has 512 MB. A case past 256 MiB is a
/// file that would take a loader down.
pub const DEFAULT_MEMORY_BOUND_BYTES: usize = 256 * 1024 * 1024;

/// Source reads hand out at most this much: the case is stopped at the next read once it is
/// past the bound, so a runaway case is stopped early (a 512-byte gzip read inflates to at
/// most ~0.5 MB).
const SOURCE_READ_BYTES: usize = 512;

/// Most columns a table may have: BigQuery's, the widest warehouse (the most memory per row).
const MAX_COLUMNS: usize = 10_000 - 4;

/// What one case came to.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// The loader's outcome: `loaded: 3 rows, 1 rejected`, `quarantined: <reason>`, …
    pub outcome: String,
    /// The panic's message and place, when the case panicked (anywhere, any thread); for a
    /// JSON object, else where the streaming flatten parts from the `Value` one (as grave).
    pub panic: Option<String>,
    /// Peak heap bytes above the baseline at the case's start.
    pub peak_bytes: usize,
    /// Whether the case was stopped at a source read for passing its time budget.
    pub stopped_for_time: bool,
    /// Kinds of reject reasons seen (digits and quoted text left out), sorted.
    pub reject_kinds: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
}

/// How a case is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No panic, within the memory bound.
    Pass,
    /// A panic: a bug to fix.
    Panic(String),
    /// Past the memory bound (the loader would be OOM-killed on a small function).
    OverMemory {
        /// Peak heap bytes above the baseline.
        peak_bytes: usize,
    },
}

impl CaseReport {
    /// A panic wins over memory: it is the clearer bug.
    pub fn verdict(&self, bound_bytes: usize) -> Verdict {
        if let Some(p) = &self.panic {
            return Verdict::Panic(p.clone());
        }
        if self.peak_bytes > bound_bytes {
            return Verdict::OverMemory {
                peak_bytes: self.peak_bytes,
            };
        }
        Verdict::Pass
    }
}

/// Runs cases one after another (the allocator's counters are process-wide).
pub struct OneObjectLoad {
    runtime: tokio::runtime::Runtime,
    config: LoadConfig,
    bound_bytes: usize,
    time_budget: Option<Duration>,
}

/// The message of the last panic on any thread: the parser runs on a blocking thread, whose
/// panic the loader turns into a "failed" outcome, so the hook is what tells a panic apart.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);
/// Whether a case is running: panics outside one (the caller's own) go to the previous hook.
static IN_CASE: AtomicBool = AtomicBool::new(false);

impl OneObjectLoad {
    /// A harness whose cases stop reading once past `bound_bytes` (see [`Verdict`]).
    pub fn new(bound_bytes: usize) -> Self {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !IN_CASE.load(Ordering::SeqCst) {
                return previous(info);
            }
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-text panic payload".to_string());
            let place = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let mut last = LAST_PANIC.lock().unwrap_or_else(PoisonError::into_inner);
            last.get_or_insert(format!("{message}{place}"));
        }));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        // CleverTap's documented example project zone: `ts` is local time, shifted to UTC.
        let config = LoadConfig::new("Asia/Kolkata", DEFAULT_MAX_REJECT_RATIO).expect("valid");
        Self {
            runtime,
            config,
            bound_bytes,
            time_budget: None,
        }
    }

    /// Cases are stopped at their next source read once they have run this long (the fuzzer
    /// keeps its rate up; a replay has no budget).
    pub fn with_time_budget(mut self, budget: Duration) -> Self {
        self.time_budget = Some(budget);
        self
    }

    /// Loads `bytes` as the object named `name` (a key, folders allowed).
    pub fn run(&self, name: &str, bytes: &[u8]) -> CaseReport {
        *LAST_PANIC.lock().unwrap_or_else(PoisonError::into_inner) = None;
        let entry = ObjectEntry {
            uri: format!("fuzz:///{name}"),
            key: name.to_string(),
            version: "1".to_string(),
            size: Some(bytes.len() as u64),
            created_at: None,
        };
        let started = Instant::now();
        let baseline = ALLOCATOR.reset_peak();
        let source = CaseSource {
            bytes: Arc::from(bytes),
            stop_above: baseline.saturating_add(self.bound_bytes),
            stop_at: self.time_budget.map(|b| started + b),
            stopped_for_time: Arc::new(AtomicBool::new(false)),
        };
        let warehouse = DiscardingWarehouse::default();
        IN_CASE.store(true, Ordering::SeqCst);
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            self.runtime.block_on(load_object(
                &source,
                &warehouse,
                &entry,
                &self.config,
                Arc::new(AtomicU64::new(0)),
            ))
        }));
        IN_CASE.store(false, Ordering::SeqCst);
        let peak_bytes = ALLOCATOR.peak().saturating_sub(baseline);
        let elapsed = started.elapsed();
        let difference = if name.contains(".json") {
            IN_CASE.store(true, Ordering::SeqCst);
            let difference =
                panic::catch_unwind(AssertUnwindSafe(|| json_flatten_difference(bytes)));
            IN_CASE.store(false, Ordering::SeqCst);
            difference.unwrap_or(None)
        } else {
            None
        };
        let panic = LAST_PANIC
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .or(difference);
        let outcome = match result {
            Ok(report) => describe(&report.outcome),
            Err(_) => "panicked".to_string(),
        };
        let reject_kinds = std::mem::take(
            &mut *warehouse
                .reject_kinds
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        CaseReport {
            outcome,
            panic,
            peak_bytes,
            stopped_for_time: source.stopped_for_time.load(Ordering::Relaxed),
            reject_kinds,
            elapsed,
        }
    }
}

/// `text` without what varies between files: digits become `#`, quoted text `"…"`.
pub fn kind_of(text: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' if !quoted => {
                quoted = true;
                out.push_str("\"…\"");
            }
            '"' => quoted = false,
            _ if quoted => {}
            '0'..='9' if out.ends_with('#') => {}
            '0'..='9' => out.push('#'),
            _ => out.push(c),
        }
        if out.len() >= 80 {
            break;
        }
    }
    out
}

/// A short, stable description: the outcome label and what it carries.
pub fn describe(outcome: &FileOutcome) -> String {
    match outcome {
        FileOutcome::Loaded(r) => {
            format!(
                "loaded: {} rows, {} rejected",
                r.rows_loaded, r.rows_rejected
            )
        }
        FileOutcome::AlreadyLoaded(_) => "already loaded".to_string(),
        FileOutcome::Quarantined(r) => {
            format!("quarantined: {}", r.error.as_deref().unwrap_or_default())
        }
        FileOutcome::Failed { error, retryable } => {
            format!("failed (retryable: {retryable}): {error}")
        }
        FileOutcome::Skipped { reason } => format!("skipped: {reason}"),
    }
}

/// The case's bytes as an object source.
struct CaseSource {
    bytes: Arc<[u8]>,
    /// Live heap bytes past which reads fail: the case is over the bound already.
    stop_above: usize,
    /// When reads start to fail, if the case has a time budget.
    stop_at: Option<Instant>,
    stopped_for_time: Arc<AtomicBool>,
}

#[async_trait]
impl ObjectSource for CaseSource {
    async fn list(&self, _location: &str) -> Result<Vec<ObjectEntry>, tapline::Error> {
        Ok(Vec::new())
    }

    async fn open(&self, _entry: &ObjectEntry) -> Result<Box<dyn Read + Send>, tapline::Error> {
        Ok(Box::new(SmallReads {
            bytes: self.bytes.clone(),
            at: 0,
            stop_above: self.stop_above,
            stop_at: self.stop_at,
            stopped_for_time: self.stopped_for_time.clone(),
        }))
    }
}

/// Hands the bytes out in small reads, failing once the case is past its memory bound or its
/// time budget.
struct SmallReads {
    bytes: Arc<[u8]>,
    at: usize,
    stop_above: usize,
    stop_at: Option<Instant>,
    stopped_for_time: Arc<AtomicBool>,
}

impl Read for SmallReads {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if ALLOCATOR.live() > self.stop_above {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "fuzz case stopped: past its memory bound",
            ));
        }
        if self.stop_at.is_some_and(|t| Instant::now() >= t) {
            self.stopped_for_time.store(true, Ordering::Relaxed);
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "fuzz case stopped: past its time budget",
            ));
        }
        let n = buf
            .len()
            .min(SOURCE_READ_BYTES)
            .min(self.bytes.len() - self.at);
        buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Plans tables and columns like the SQL adapters (the same [`Catalog`]), reads every value of
/// every row, and keeps nothing but counts.
#[derive(Default)]
struct DiscardingWarehouse {
    reject_kinds: Arc<Mutex<Vec<String>>>,
}

impl Warehouse for DiscardingWarehouse {
    fn describe(&self) -> String {
        "discard://fuzz".to_string()
    }
}

#[async_trait]
impl LoadLedger for DiscardingWarehouse {
    fn max_columns(&self) -> usize {
        MAX_COLUMNS
    }

    async fn begin_load(
        &self,
        object: &SourceObject,
        _retry_quarantined: bool,
    ) -> Result<Begin, WarehouseError> {
        Ok(Begin::Started(Box::new(DiscardingLoad {
            object: object.clone(),
            catalog: Catalog::new(Vec::new()),
            value_bytes: 0,
            reject_kinds: self.reject_kinds.clone(),
        })))
    }

    async fn record_failure(&self, _: &SourceObject, _: &str) -> Result<(), WarehouseError> {
        Ok(())
    }

    async fn recent_loads(&self, _: usize) -> Result<Vec<LoadRecord>, WarehouseError> {
        Ok(Vec::new())
    }

    async fn commits_since(&self, _: &str, _: usize) -> Result<Vec<LoadRecord>, WarehouseError> {
        Ok(Vec::new())
    }

    async fn ledger_versions(&self, _: &str) -> Result<Vec<LedgerVersion>, WarehouseError> {
        Ok(Vec::new())
    }
}

// A load touches none of these: they keep nothing, like the rest of this warehouse.
#[async_trait]
impl SqlQuery for DiscardingWarehouse {
    async fn query(&self, _: &str) -> Result<QueryResult, WarehouseError> {
        Ok(QueryResult::default())
    }
}

#[async_trait]
impl Checkpoints for DiscardingWarehouse {
    async fn get_state(&self, _: &str) -> Result<Option<String>, WarehouseError> {
        Ok(None)
    }

    async fn put_state(&self, _: &str, _: &str) -> Result<(), WarehouseError> {
        Ok(())
    }
}

#[async_trait]
impl FixedTables for DiscardingWarehouse {
    async fn replace_rows(
        &self,
        _: &FixedTable,
        _: &[Vec<Option<String>>],
    ) -> Result<u64, WarehouseError> {
        Ok(0)
    }
}

struct DiscardingLoad {
    object: SourceObject,
    catalog: Catalog,
    /// Every value is read (and counted) so a batch whose offsets are wrong panics here.
    value_bytes: u64,
    reject_kinds: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl LoadTransaction for DiscardingLoad {
    fn load_id(&self) -> i64 {
        1
    }

    // Export loads carry no state; nothing is kept anyway.
    fn write_state_at_commit(&mut self, _state: StateWrite) {}

    fn record_object_created_at(&mut self, _created_at: Option<String>) {}

    async fn append(&mut self, batch: RowBatch) -> Result<(), WarehouseError> {
        let columns = batch.schema().columns();
        let mut rows = batch.rows().peekable();
        while let Some(first) = rows.peek().copied() {
            let event = first.event_name().to_string();
            if self.catalog.needs_ddl(&event, columns) {
                self.catalog.plan(&event, columns, MAX_COLUMNS)?;
            }
            while let Some(row) = rows.next_if(|r| r.event_name() == event) {
                for i in 0..columns.len() {
                    self.value_bytes += row.value(i).map_or(0, str::len) as u64;
                }
            }
        }
        Ok(())
    }

    async fn commit(
        self: Box<Self>,
        outcome: Outcome,
        rejects: Vec<Reject>,
    ) -> Result<Committed, WarehouseError> {
        let (status, rows, rejected, error) = match outcome {
            Outcome::Loaded { rows, rejected, .. } => (LoadStatus::Loaded, rows, rejected, None),
            Outcome::Quarantined {
                reason,
                rows,
                rejected,
                ..
            } => (LoadStatus::Quarantined, rows, rejected, Some(reason)),
        };
        let mut kinds: Vec<String> = rejects.iter().map(|r| kind_of(&r.reason)).collect();
        kinds.sort_unstable();
        kinds.dedup();
        *self
            .reject_kinds
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = kinds;
        std::hint::black_box(self.value_bytes);
        Ok(Committed::Ours(LoadRecord {
            load_id: 1,
            uri: self.object.uri,
            version: self.object.version,
            status,
            bytes: self.object.bytes,
            rows_loaded: rows,
            rows_rejected: rejected,
            error,
            attempts: 1,
            started_at: String::new(),
            finished_at: None,
            object_created_at: None,
        }))
    }
}
