//! Completeness: per event and day, what CleverTap says happened against what the warehouse
//! holds (issue 20). Loaders and connectors track files; none says whether a day is complete.
//! Reconcile answers with evidence:
//! - [`chunks`]: the export chunks of each (event, day) the ledger saw, by export run, and the
//!   ones missing (a gap in the file indexes, a quarantined or failed chunk), named;
//! - [`status`]: the day's status from its chunks, its rows (exports and API pulls) and
//!   CleverTap's count (`event_counts`), with a tolerance for counts computed at another time.
//!
//! - [`report`] and [`report_input`]: the HTML page and what it shows, gathered once for
//!   `tapline report` and the puller's `report` job.
//! - [`gather`]: the three reads from a warehouse (ledger, rows per day, counts) and the
//!   verdicts written to `_tapline_completeness`.

pub mod chunks;
pub mod gather;
pub mod relay_letters;
pub mod report;
pub mod report_input;
pub mod status;

pub use chunks::{DayChunks, MissingChunk, day_chunks, event_key};
pub use gather::{
    COMPLETENESS, DayReport, Previous, ReconcileError, Request, previous, reconcile,
    reconcile_and_record, record,
};
pub use status::{DayFigures, DayStatus, Policy, judge};
