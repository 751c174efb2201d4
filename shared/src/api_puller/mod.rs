//! The API puller: CleverTap API data into the same warehouse tables the export loader fills.
//!
//! - [`events`]: Get Events, one (event, day) slice at a time, each page its own load
//!   (`clevertap-api://ACCOUNT/events/EVENT/DAY/page-N`, version = the pull's id), so a page is
//!   loaded exactly once and a new pull of a day replaces the old pull's rows page by page.
//! - [`checkpoint`]: what `_tapline_state` holds per slice, written after every page so a
//!   killed run resumes where it stopped.
//! - [`counts`]: Get Event Count per (event, day) into `event_counts`, replaced by key.
//! - [`campaigns`]: campaigns and their reports into `campaigns` / `campaign_reports`.
//! - [`profiles`]: Get Profiles as snapshot rows in `profile_snapshots`, each page its own load
//!   (`clevertap-api://ACCOUNT/profiles/EVENT/FROM..TO/page-N`), checkpointed in it.
//! - [`messages`]: Get Message Reports per day into `message_reports`, replaced by key.
//! - [`jobs`]: the scheduled function's configured jobs over a window ending yesterday.
//! - [`alert_rules`]: alert rules (parsed from JSON) and a rule's result for a day.
//! - [`alerts`]: count rules checked against `event_counts`, results in `alert_runs`.
//! - [`alert_notifiers`]: where breaches go: Slack, or the webhook relay's alerts route.
//! - [`completeness`]: reconcile ([`crate::reconcile`]) with its alerts, sent once per status.
//! - [`report_job`]: the completeness page put at `TAPLINE_REPORT_URI` (the `report` job).
//! - [`lambda`]: one EventBridge Scheduler invocation on AWS Lambda; `cloud_run` (feature
//!   `cloud-run`): the puller as an HTTP service for Cloud Scheduler. Both run a
//!   [`jobs::PullService`], built once from the environment.
//! - [`page_load`]: one page of API records through the export's JSON parser into the warehouse.

pub mod alert_notifiers;
pub mod alert_rules;
pub mod alerts;
pub mod campaigns;
pub mod checkpoint;
#[cfg(feature = "cloud-run")]
pub mod cloud_run;
pub mod completeness;
pub mod counts;
pub mod events;
pub mod jobs;
pub mod lambda;
pub mod messages;
pub mod output;
pub mod page_load;
pub mod profiles;
pub mod report_job;

use jiff::civil::Date;

use crate::clevertap::ApiError;
use crate::warehouse::WarehouseError;

/// Why a slice of a pull stopped.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// CleverTap did not give what was asked.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The warehouse failed.
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    /// Reconcile could not read what a pull needs (the days that lack a count).
    #[error(transparent)]
    Reconcile(#[from] crate::reconcile::ReconcileError),
    /// A page could not be parsed as a whole (a record past the size limit) or its reject
    /// share is above the ratio: it is recorded in the ledger as quarantined and the slice
    /// stops there, its checkpoint before the page.
    #[error("{uri} was quarantined: {reason}")]
    Quarantined {
        /// The page's source uri.
        uri: String,
        /// Why.
        reason: String,
    },
    /// A page's load failed (the warehouse, or the parser); the ledger records it as failed
    /// and the slice stops there, its checkpoint before the page.
    #[error("loading {uri} failed: {error}")]
    Load {
        /// The page's source uri.
        uri: String,
        /// What went wrong, with its causes.
        error: String,
        /// Whether a retry may succeed.
        retryable: bool,
    },
    /// The `--output` file could not be written.
    #[error("cannot write {path}")]
    Output {
        /// The file or folder.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The checkpoint in `_tapline_state` is not one this version understands.
    #[error("checkpoint {key} cannot be read")]
    Checkpoint {
        /// Its key.
        key: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
}

impl PullError {
    /// Whether running the pull again later may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            PullError::Api(e) => e.is_retryable(),
            PullError::Warehouse(e) => e.is_retryable(),
            PullError::Reconcile(e) => e.is_retryable(),
            PullError::Load { retryable, .. } => *retryable,
            // A full disk or a permission: someone has to act.
            PullError::Output { .. } => false,
            PullError::Quarantined { .. } | PullError::Checkpoint { .. } => false,
        }
    }
}

/// Every day from `from` to `to`, both included (none when `from` is after `to`).
pub fn days(from: Date, to: Date) -> Vec<Date> {
    let mut days = Vec::new();
    let mut day = from;
    while day <= to {
        days.push(day);
        match day.tomorrow() {
            Ok(next) => day = next,
            Err(_) => break,
        }
    }
    days
}
