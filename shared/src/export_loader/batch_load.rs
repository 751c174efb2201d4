//! The one batch-load path of every job: begin the source object's load in the ledger, append
//! the parser's batches as they come, judge the reject share, then commit the rows and the
//! ledger row together, or quarantine, or record the failure. Export files (`load.rs`) and
//! API pages (`api_puller/page_load.rs`) both load through [`BatchLoad`], so they keep the same rejects (the first [`MAX_STORED_REJECTS`]), the same
//! reject-ratio judgement and the same failure records.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{info, warn};

use crate::error::chain::error_chain;
use crate::export::Reject;
use crate::export::RowBatch;
use crate::export::parse::{FileProblem, ParseError, ParseSummary};
use crate::warehouse::{
    Begin, Committed, LoadRecord, LoadStatus, LoadTransaction, MAX_STORED_REJECTS, Outcome,
    SourceObject, StateWrite, Warehouse,
};

/// Batches in flight between the parser and the warehouse: enough to keep both busy, few
/// enough that memory stays flat.
const BATCHES_IN_FLIGHT: usize = 4;

/// How one object ended.
#[derive(Debug, Clone, PartialEq)]
pub enum FileOutcome {
    /// Rows committed now.
    Loaded(LoadRecord),
    /// This version was loaded before (or replaced since): nothing done.
    AlreadyLoaded(LoadRecord),
    /// Quarantined now, or before (`record.attempts` tells): no rows appended.
    Quarantined(LoadRecord),
    /// The attempt failed; `retryable` says whether trying again later may work.
    Failed {
        /// What went wrong, with its causes.
        error: String,
        /// Whether a retry may succeed.
        retryable: bool,
    },
    /// Not a CleverTap export (or a format this build does not load).
    Skipped {
        /// Why.
        reason: String,
    },
}

impl FileOutcome {
    /// A short word for tables and logs.
    pub fn label(&self) -> &'static str {
        match self {
            FileOutcome::Loaded(_) => "loaded",
            FileOutcome::AlreadyLoaded(_) => "already loaded",
            FileOutcome::Quarantined(_) => "quarantined",
            FileOutcome::Failed { .. } => "failed",
            FileOutcome::Skipped { .. } => "skipped",
        }
    }

    /// Whether this outcome leaves the object correctly in the warehouse (or not an export).
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            FileOutcome::Loaded(_) | FileOutcome::AlreadyLoaded(_) | FileOutcome::Skipped { .. }
        )
    }
}

/// A parser run: fed a sink for its batches (which answers `false` once nobody takes more),
/// it returns the summary. It runs on a blocking thread.
pub type Parse =
    Box<dyn FnOnce(&mut dyn FnMut(RowBatch) -> bool) -> Result<ParseSummary, ParseError> + Send>;

/// The state (an API page's checkpoint) a load writes in its own transaction when it commits
/// as loaded, given the rows loaded and rejected. Not written for a quarantined load, so a
/// checkpoint never moves past a quarantined page.
pub type StateAtCommit = Box<dyn FnOnce(u64, u64) -> StateWrite + Send>;

/// One source object's load, begun in the ledger and not yet ended.
pub struct BatchLoad<'a> {
    warehouse: &'a dyn Warehouse,
    object: &'a SourceObject,
    max_reject_ratio: f64,
    txn: Box<dyn LoadTransaction>,
}

impl<'a> BatchLoad<'a> {
    /// Begins `object`'s load. `Err` is the outcome when there is nothing to load: the ledger
    /// has the version already (loaded, or quarantined unless `retry_quarantined`), or the
    /// ledger could not be read (then nothing is recorded: the warehouse is what failed).
    pub async fn begin(
        warehouse: &'a dyn Warehouse,
        object: &'a SourceObject,
        retry_quarantined: bool,
        max_reject_ratio: f64,
    ) -> Result<Self, FileOutcome> {
        match warehouse.begin_load(object, retry_quarantined).await {
            Ok(Begin::Started(txn)) => Ok(Self {
                warehouse,
                object,
                max_reject_ratio,
                txn,
            }),
            Ok(Begin::Done(record)) => {
                info!(uri = %object.uri, status = %record.status, "Object already handled.");
                Err(handled_before(record))
            }
            Err(e) => Err(FileOutcome::Failed {
                error: error_chain(&e),
                retryable: e.is_retryable(),
            }),
        }
    }

    /// Has the commit record when the object was created in its bucket (UTC ISO-8601, already
    /// checked: see `ObjectEntry::plausible_created_at`).
    pub fn record_object_created_at(&mut self, created_at: Option<String>) {
        self.txn.record_object_created_at(created_at);
    }

    /// Ends the load without rows (its source could not be read): rolls back and records the
    /// failure in the ledger.
    pub async fn fail(self, error: String, retryable: bool) -> FileOutcome {
        let Self {
            warehouse,
            object,
            txn,
            ..
        } = self;
        drop(txn);
        let outcome = FileOutcome::Failed { error, retryable };
        record_failure(warehouse, object, &outcome).await;
        outcome
    }

    /// Runs `parse` on a blocking thread while appending its batches, keeps the first
    /// [`MAX_STORED_REJECTS`] rejects, judges the reject share and ends the load. `read_bytes`
    /// is the source bytes read, read once the parser is done. Returns the outcome and the
    /// decoded bytes parsed (0 unless committed). `state`, when given, is written with the rows
    /// of a load that commits as loaded ([`StateAtCommit`]).
    pub async fn run(
        self,
        parse: Parse,
        read_bytes: Arc<AtomicU64>,
        state: Option<StateAtCommit>,
    ) -> (FileOutcome, u64) {
        let Self {
            warehouse,
            object,
            max_reject_ratio,
            mut txn,
        } = self;
        let failed = |error: String, retryable: bool| FileOutcome::Failed { error, retryable };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<RowBatch>(BATCHES_IN_FLIGHT);
        let parser = tokio::task::spawn_blocking(move || {
            parse(&mut |batch| tx.blocking_send(batch).is_ok())
        });

        let mut rejects: Vec<Reject> = Vec::new();
        let mut append_error = None;
        while let Some(mut batch) = rx.recv().await {
            let room = MAX_STORED_REJECTS.saturating_sub(rejects.len());
            rejects.extend(batch.rejects.drain(..).take(room));
            if batch.row_count() == 0 {
                continue;
            }
            if let Err(e) = txn.append(batch).await {
                append_error = Some(e);
                break;
            }
        }
        // Closing the channel stops a parser still running after an append failed.
        drop(rx);
        let parsed = parser.await;
        let bytes = read_bytes.load(Ordering::Relaxed);

        if let Some(e) = append_error {
            drop(txn);
            let outcome = failed(error_chain(&e), e.is_retryable());
            record_failure(warehouse, object, &outcome).await;
            return (outcome, 0);
        }
        let summary = match parsed {
            Ok(Ok(summary)) => Ok(summary),
            Ok(Err(ParseError::Problem(problem))) => Err(problem),
            Ok(Err(e @ (ParseError::Source(_) | ParseError::Stopped))) => {
                drop(txn);
                let outcome = failed(error_chain(&e), true);
                record_failure(warehouse, object, &outcome).await;
                return (outcome, 0);
            }
            Err(join) => {
                drop(txn);
                let outcome = failed(format!("the parser stopped unexpectedly: {join}"), false);
                record_failure(warehouse, object, &outcome).await;
                return (outcome, 0);
            }
        };
        let (result, decoded) = match summary {
            Ok(s) => {
                let decoded = s.decoded_bytes;
                match judge(&s, max_reject_ratio) {
                    None => (
                        Outcome::Loaded {
                            bytes,
                            rows: s.rows,
                            rejected: s.rejected,
                        },
                        decoded,
                    ),
                    Some(problem) => (quarantine(problem, bytes, &s), decoded),
                }
            }
            Err(problem) => (quarantine(problem, bytes, &ParseSummary::default()), 0),
        };
        let quarantined = matches!(result, Outcome::Quarantined { .. });
        if let (Some(state), Outcome::Loaded { rows, rejected, .. }) = (state, &result) {
            txn.write_state_at_commit(state(*rows, *rejected));
        }
        match txn.commit(result, rejects).await {
            Ok(Committed::Theirs(record)) => {
                info!(uri = %record.uri, status = %record.status, "Another loader committed this version first; this load's rows were discarded.");
                (handled_before(record), 0)
            }
            Ok(Committed::Ours(record)) if quarantined => {
                warn!(uri = %record.uri, reason = record.error.as_deref().unwrap_or(""), "Export quarantined.");
                (FileOutcome::Quarantined(record), decoded)
            }
            Ok(Committed::Ours(record)) => {
                info!(uri = %record.uri, rows = record.rows_loaded, rejected = record.rows_rejected, "Export loaded.");
                (FileOutcome::Loaded(record), decoded)
            }
            Err(e) => {
                let outcome = failed(error_chain(&e), e.is_retryable());
                record_failure(warehouse, object, &outcome).await;
                (outcome, 0)
            }
        }
    }
}

/// The outcome of a version some earlier (or concurrent) load already handled.
fn handled_before(record: LoadRecord) -> FileOutcome {
    match record.status {
        LoadStatus::Quarantined => FileOutcome::Quarantined(record),
        _ => FileOutcome::AlreadyLoaded(record),
    }
}

/// Whether a file's reject share is above the threshold.
fn judge(summary: &ParseSummary, max_reject_ratio: f64) -> Option<FileProblem> {
    let total = summary.total();
    let too_many = total > 0 && summary.rejected as f64 > max_reject_ratio * total as f64;
    too_many.then_some(FileProblem::TooManyRejects {
        rejected: summary.rejected,
        total,
        threshold: max_reject_ratio,
    })
}

fn quarantine(problem: FileProblem, bytes: u64, summary: &ParseSummary) -> Outcome {
    Outcome::Quarantined {
        reason: problem.to_string(),
        bytes,
        rows: summary.rows,
        rejected: summary.rejected,
    }
}

async fn record_failure(warehouse: &dyn Warehouse, object: &SourceObject, outcome: &FileOutcome) {
    let FileOutcome::Failed { error, retryable } = outcome else {
        return;
    };
    warn!(uri = %object.uri, %error, retryable, "Export load failed.");
    if let Err(e) = warehouse.record_failure(object, error).await {
        // The warehouse is what failed, most likely: the next attempt records it.
        warn!(uri = %object.uri, error = %error_chain(&e), "Could not record the failure in the ledger.");
    }
}
