//! `pull events`: Get Events into the per-event tables, one (event, day) slice at a time,
//! several slices at once under the account's one concurrency limit.
//!
//! Each page is a source object of its own (`…/page-N`, version = the pull id), committed with
//! its ledger row and the slice's checkpoint past it, in one transaction. A killed run resumes
//! from the checkpoint's cursor; a page the ledger has already (a concurrent loader's) is not
//! loaded twice. A new pull of a day replaces the previous pull's pages one by one and
//! empties those past its own last page, so the (event, day) slice is replaced, never doubled.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use super::PullError;
use super::checkpoint::{self, Checkpoint, SliceStatus, slice_key};
use super::output::FileOutput;
use super::page_load::{PageCounts, event_parse_options, load_event_page};
use crate::clevertap::cursor::{DEFAULT_BATCH_SIZE, day_number};
use crate::clevertap::{ClevertapClient, CursorApi, CursorPager};
use crate::config::DEFAULT_MAX_REJECT_RATIO;
use crate::error::chain::error_chain;
use crate::export_loader::batch_load::StateAtCommit;
use crate::time::now_utc;
use crate::warehouse::{SourceObject, Warehouse};

/// What to pull.
#[derive(Debug, Clone)]
pub struct EventsPull {
    /// Event names as CleverTap knows them (`Charged`, `App Launched`).
    pub events: Vec<String>,
    /// First day, in the project's time zone.
    pub from: Date,
    /// Last day (inclusive).
    pub to: Date,
    /// The project's time zone: `ts` values are local times in it.
    pub timezone: TimeZone,
    /// Records per page asked for (CleverTap allows up to 5000).
    pub batch_size: u32,
    /// Also write each (event, day) to a file (`--output`).
    pub output: Option<FileOutput>,
    /// A page whose reject share is above this is quarantined, like an export file (the
    /// loader's default, [`DEFAULT_MAX_REJECT_RATIO`]).
    pub max_reject_ratio: f64,
}

impl EventsPull {
    /// A pull of `events` over `from..=to` with the default page size.
    pub fn new(events: Vec<String>, from: Date, to: Date, timezone: TimeZone) -> Self {
        Self {
            events,
            from,
            to,
            timezone,
            batch_size: DEFAULT_BATCH_SIZE,
            output: None,
            max_reject_ratio: DEFAULT_MAX_REJECT_RATIO,
        }
    }

    /// Every (event, day) slice, day by day.
    pub fn slices(&self) -> Vec<(String, Date)> {
        super::days(self.from, self.to)
            .into_iter()
            .flat_map(|day| self.events.iter().map(move |e| (e.clone(), day)))
            .collect()
    }
}

/// How one slice ended.
#[derive(Debug)]
pub struct SliceReport {
    /// The event.
    pub event: String,
    /// The day.
    pub day: Date,
    /// Pages this slice has in the warehouse (this run's and a resumed run's).
    pub pages: u64,
    /// Rows loaded for the slice, over every run of this pull.
    pub rows: u64,
    /// Rows rejected.
    pub rejected: u64,
    /// The page this run resumed at, when it continued an interrupted pull.
    pub resumed_at_page: Option<u64>,
    /// The checkpoint's cursor was refused (expired), so the day was pulled again from its
    /// first page under a new pull id.
    pub restarted: bool,
    /// The interrupted pull's `--output` parts were missing, so the day was pulled again from
    /// its first page (its file would otherwise lack their records).
    pub output_parts_missing: bool,
    /// `Ok` when every page is loaded; else why it stopped (the checkpoint keeps its place).
    pub result: Result<(), PullError>,
    /// Wall time.
    pub elapsed: Duration,
}

/// The source uri of one page of a slice.
pub fn page_uri(account: &str, event: &str, day: Date, page: u64) -> String {
    format!(
        "clevertap-api://{account}/events/{}/{day}/page-{page}",
        crate::clevertap::client::encode_query_value(event)
    )
}

/// Pulls every slice of `request`, `parallel_slices` at a time (each slice holds one request
/// at a time; the client's limit bounds them all together).
pub async fn pull_events(
    client: &ClevertapClient,
    warehouse: Arc<dyn Warehouse>,
    request: &EventsPull,
    parallel_slices: usize,
) -> Vec<SliceReport> {
    let gate = Arc::new(Semaphore::new(parallel_slices.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (event, day)) in request.slices().into_iter().enumerate() {
        let client = client.clone();
        let warehouse = warehouse.clone();
        let request = request.clone();
        let gate = gate.clone();
        tasks.spawn(async move {
            let _slot = gate.acquire_owned().await.ok();
            let report = pull_slice(&client, warehouse.as_ref(), &request, &event, day).await;
            (index, report)
        });
    }
    let mut reports = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(done) => reports.push(done),
            Err(e) => warn!(error = %e, "A slice task stopped unexpectedly."),
        }
    }
    reports.sort_by_key(|(index, _)| *index);
    reports.into_iter().map(|(_, r)| r).collect()
}

/// A fresh pull id: sortable by start time, unique per process.
pub(super) fn new_pull_id() -> String {
    let now = jiff::Timestamp::now();
    format!(
        "pull-{}-{:08x}",
        now.strftime("%Y%m%dT%H%M%S%.6fZ"),
        fastrand::u32(..)
    )
}

/// Counters of one slice, carried between pages and into the checkpoint.
struct SliceRun {
    key: String,
    checkpoint: Checkpoint,
    resumed_at_page: Option<u64>,
    restarted: bool,
    output_parts_missing: bool,
}

async fn pull_slice(
    client: &ClevertapClient,
    warehouse: &dyn Warehouse,
    request: &EventsPull,
    event: &str,
    day: Date,
) -> SliceReport {
    let started = Instant::now();
    let account = client.config().account_id.clone();
    let key = slice_key(&account, "events", event, day);
    let mut run = SliceRun {
        key,
        checkpoint: Checkpoint {
            pull_id: String::new(),
            status: SliceStatus::InProgress,
            cursor: None,
            pages: 0,
            rows: 0,
            rejected: 0,
            window: (day_number(day), day_number(day)),
            stale_pages: 0,
            started_at: now_utc(),
            last_success: None,
        },
        resumed_at_page: None,
        restarted: false,
        output_parts_missing: false,
    };
    let result = run_slice(client, warehouse, request, event, day, &mut run).await;
    if let Err(e) = &result {
        warn!(event, %day, page = run.checkpoint.pages, error = %error_chain(e), "Slice stopped; its checkpoint keeps its place.");
    }
    SliceReport {
        event: event.to_string(),
        day,
        pages: run.checkpoint.pages,
        rows: run.checkpoint.rows,
        rejected: run.checkpoint.rejected,
        resumed_at_page: run.resumed_at_page,
        restarted: run.restarted,
        output_parts_missing: run.output_parts_missing,
        result,
        elapsed: started.elapsed(),
    }
}

async fn run_slice(
    client: &ClevertapClient,
    warehouse: &dyn Warehouse,
    request: &EventsPull,
    event: &str,
    day: Date,
    run: &mut SliceRun,
) -> Result<(), PullError> {
    let account = client.config().account_id.clone();
    let previous = checkpoint::load(warehouse, &run.key).await?;
    // A resumed pull writing a file needs the parts of the pages it already has; without them
    // (another --output-dir, a cleared staging folder) the day is pulled again from page 0.
    let parts_lost = |cp: &Checkpoint| {
        request
            .output
            .as_ref()
            .is_some_and(|o| !o.has_parts(event, day, &cp.pull_id, cp.pages))
    };
    let mut pager = match previous {
        Some(cp) if cp.status == SliceStatus::InProgress && parts_lost(&cp) => {
            warn!(event, %day, page = cp.pages, "The output parts of the interrupted pull are missing; pulling the day again.");
            run.output_parts_missing = true;
            run.checkpoint.last_success = cp.last_success.clone();
            let stale = cp.pages.max(cp.stale_pages);
            Some(start_pull(client, warehouse, request, event, day, run, stale).await?)
        }
        Some(cp) if cp.status == SliceStatus::InProgress => {
            info!(event, %day, page = cp.pages, pull_id = %cp.pull_id, "Resuming from the checkpoint.");
            run.resumed_at_page = Some(cp.pages);
            let pager = cp
                .cursor
                .clone()
                .map(|c| CursorPager::new(CursorApi::Events, c, cp.pages));
            run.checkpoint = cp;
            pager
        }
        other => {
            run.checkpoint.last_success = other.as_ref().and_then(|c| c.last_success.clone());
            let stale = other.map_or(0, |c| c.pages.max(c.stale_pages));
            Some(start_pull(client, warehouse, request, event, day, run, stale).await?)
        }
    };
    let opts = event_parse_options(event, &request.timezone, day, warehouse.max_columns());
    // Only the first page after a resume may find its cursor expired.
    let mut resuming = run.resumed_at_page.is_some();
    while let Some(current) = pager.as_mut() {
        let index = current.page_index();
        let page = match current.next(client).await {
            Ok(Some(page)) => page,
            Ok(None) => break,
            Err(e) if resuming && !e.is_retryable() => {
                // CleverTap refuses the checkpoint's cursor (expired): pull the day again
                // under a new pull id; its pages replace those of the interrupted pull.
                warn!(event, %day, error = %error_chain(&e), "The checkpoint's cursor was refused; pulling the day again.");
                let stale = run.checkpoint.pages.max(run.checkpoint.stale_pages);
                run.checkpoint.rows = 0;
                run.checkpoint.rejected = 0;
                run.restarted = true;
                resuming = false;
                pager = Some(start_pull(client, warehouse, request, event, day, run, stale).await?);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        resuming = false;
        if let Some(output) = &request.output {
            output
                .write_page(event, day, &run.checkpoint.pull_id, index, &page.records)
                .map_err(output_error(&output.dir))?;
        }
        let object = SourceObject {
            uri: page_uri(&account, event, day, index),
            version: run.checkpoint.pull_id.clone(),
            bytes: None,
        };
        // The checkpoint past this page commits in the page's own transaction.
        let mut past = run.checkpoint.clone();
        past.pages = current.page_index();
        past.cursor = current.cursor().map(str::to_string);
        let key = run.key.clone();
        let written = past.clone();
        let state: StateAtCommit = Box::new(move |rows, rejected| {
            let mut written = written;
            written.rows += rows;
            written.rejected += rejected;
            checkpoint::state_write(&key, &written)
        });
        let counts = load_event_page(
            warehouse,
            &object,
            event,
            page.records,
            opts.clone(),
            request.max_reject_ratio,
            Some(state),
        )
        .await?;
        run.checkpoint = past;
        add(&mut run.checkpoint, counts);
        if counts.already_loaded {
            // The ledger had the page (another loader's commit, or one from before the
            // checkpoint went into the page's transaction): its checkpoint is written here.
            checkpoint::save(warehouse, &run.key, &run.checkpoint).await?;
        }
    }
    // Pages an earlier pull had beyond this pull's last: empty loads of this pull's version
    // replace their rows.
    for index in run.checkpoint.pages..run.checkpoint.stale_pages {
        let object = SourceObject {
            uri: page_uri(&account, event, day, index),
            version: run.checkpoint.pull_id.clone(),
            bytes: None,
        };
        load_event_page(
            warehouse,
            &object,
            event,
            Vec::new(),
            opts.clone(),
            request.max_reject_ratio,
            None,
        )
        .await?;
    }
    if let Some(output) = &request.output {
        let file = output
            .complete(event, day, &run.checkpoint.pull_id, run.checkpoint.pages)
            .await
            .map_err(|source| PullError::Output {
                path: output.destination_of(event, day),
                source,
            })?;
        info!(event, %day, %file, "Slice written to its file.");
    }
    run.checkpoint.status = SliceStatus::Complete;
    run.checkpoint.stale_pages = 0;
    run.checkpoint.last_success = Some(now_utc());
    checkpoint::save(warehouse, &run.key, &run.checkpoint).await?;
    info!(event, %day, pages = run.checkpoint.pages, rows = run.checkpoint.rows, "Slice pulled.");
    Ok(())
}

/// Opens a new cursor under a new pull id and checkpoints it; `stale_pages` are the pages an
/// earlier pull of the slice left, to be emptied when this one completes.
async fn start_pull(
    client: &ClevertapClient,
    warehouse: &dyn Warehouse,
    request: &EventsPull,
    event: &str,
    day: Date,
    run: &mut SliceRun,
    stale_pages: u64,
) -> Result<CursorPager, PullError> {
    if let Some(output) = &request.output {
        output
            .start(event, day)
            .map_err(output_error(&output.dir))?;
    }
    run.checkpoint.pull_id = new_pull_id();
    run.checkpoint.status = SliceStatus::InProgress;
    run.checkpoint.pages = 0;
    run.checkpoint.stale_pages = stale_pages;
    run.checkpoint.started_at = now_utc();
    let cursor = client
        .open_events_cursor(event, day, day, request.batch_size)
        .await?;
    run.checkpoint.cursor = Some(cursor.clone());
    checkpoint::save(warehouse, &run.key, &run.checkpoint).await?;
    Ok(CursorPager::new(CursorApi::Events, cursor, 0))
}

fn output_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> PullError + use<> {
    let path = path.display().to_string();
    move |source| PullError::Output { path, source }
}

fn add(checkpoint: &mut Checkpoint, counts: PageCounts) {
    checkpoint.rows += counts.rows;
    checkpoint.rejected += counts.rejected;
}
