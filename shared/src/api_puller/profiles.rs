//! `pull profiles`: Get Profiles (the profiles that did an event in a window) as profile
//! snapshot rows in `profile_snapshots`, page by page through the export loader's batch-load
//! path, checkpointed in each page's own transaction so a killed run resumes where it stopped.

use jiff::civil::Date;
use serde_json::json;

use tracing::{info, warn};

use super::PullError;
use super::checkpoint::{self, Checkpoint, SliceStatus};
use super::events::new_pull_id;
use super::page_load::{load_profile_page, profile_parse_options};
use crate::clevertap::cursor::day_number;
use crate::clevertap::{ClevertapClient, CursorApi, CursorPager};
use crate::config::DEFAULT_MAX_REJECT_RATIO;
use crate::error::chain::error_chain;
use crate::export_loader::batch_load::StateAtCommit;
use crate::time::{MICROS_PER_SECOND, now_utc, parse_utc};
use crate::warehouse::{SourceObject, Warehouse};

/// Records per page: Get Profiles wants a multiple of 23, at most 5000.
pub const PROFILES_BATCH_SIZE: u32 = 23 * 217;

/// Whether Get Profiles accepts `batch_size`: a multiple of 23 from 23 to 4991.
pub fn valid_profiles_batch_size(batch_size: u32) -> bool {
    (23..=PROFILES_BATCH_SIZE).contains(&batch_size) && batch_size.is_multiple_of(23)
}

/// What a profiles pull came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProfilesReport {
    /// Pages this pull has in the warehouse (a resumed run's included).
    pub pages: u64,
    /// Snapshot rows this pull loaded into `profile_snapshots`.
    pub rows: u64,
    /// Records rejected (in `_tapline_rejects`: a profile with neither an identity nor a
    /// CleverTap ID, a record that is not an object, …).
    pub rejected: u64,
    /// The page this run resumed at, when it continued an interrupted pull.
    pub resumed_at_page: Option<u64>,
    /// The checkpoint's cursor was refused (expired), so the window was pulled again from
    /// its first page.
    pub restarted: bool,
}

/// The source uri of one page of a profiles pull: one ledger object per (event, window, page),
/// so a window pulled again replaces its pages rather than doubling them.
pub fn profiles_page_uri(account: &str, event: &str, from: Date, to: Date, page: u64) -> String {
    format!(
        "clevertap-api://{account}/profiles/{}/{from}..{to}/page-{page}",
        crate::clevertap::client::encode_query_value(event)
    )
}

/// The `_tapline_state` key of a profiles pull: the event and its whole window, since Get
/// Profiles opens one cursor over the window (not one per day).
pub fn profiles_key(account: &str, event: &str, from: Date, to: Date) -> String {
    format!("clevertap/{account}/profiles/{event}/{from}..{to}")
}

/// Pulls the profiles that did `event` from `from` to `to` as profile snapshot rows in
/// `profile_snapshots`, `ts` the pull's start. Each page is a source object of its own
/// ([`profiles_page_uri`], version = the pull id) loaded through the export loader's batch-load
/// path, and the pull's checkpoint past it ([`profiles_key`]) commits in the page's own
/// transaction: rows and checkpoint cannot part.
///
/// A killed run leaves the checkpoint `in_progress` with the cursor of the next page: the next
/// run over the same window resumes there and says so ([`ProfilesReport::resumed_at_page`]).
/// A checkpoint whose cursor CleverTap refuses (expired) starts the window again from its
/// first page under a new pull id. A new pull of a window replaces the pages of the previous
/// one page by page and empties those past its own last page, so the window's snapshot is
/// replaced, never doubled. A page whose reject share is above the loader's default ratio is
/// quarantined and stops the pull there ([`PullError::Quarantined`]).
pub async fn pull_profiles(
    client: &ClevertapClient,
    warehouse: &dyn Warehouse,
    event: &str,
    from: Date,
    to: Date,
    batch_size: u32,
) -> Result<ProfilesReport, PullError> {
    let account = client.config().account_id.clone();
    let key = profiles_key(&account, event, from, to);
    let window = (event, from, to, batch_size);
    let mut report = ProfilesReport::default();
    let mut cp = match checkpoint::load(warehouse, &key).await? {
        Some(cp) if cp.status == SliceStatus::InProgress && cp.cursor.is_some() => {
            info!(event, %from, %to, page = cp.pages, "Resuming the profiles pull from its checkpoint.");
            report.resumed_at_page = Some(cp.pages);
            cp
        }
        previous => {
            let last_success = previous.as_ref().and_then(|c| c.last_success.clone());
            let stale = previous.map_or(0, |c| c.pages.max(c.stale_pages));
            open_profiles(client, warehouse, &key, window, last_success, stale).await?
        }
    };
    let resumed_cursor = cp.cursor.clone().unwrap_or_default();
    let mut pager = CursorPager::new(CursorApi::Profiles, resumed_cursor, cp.pages);
    // Only the first page after a resume may find its cursor expired.
    let mut resuming = report.resumed_at_page.is_some();
    loop {
        let index = pager.page_index();
        let page = match pager.next(client).await {
            Ok(Some(page)) => page,
            Ok(None) => break,
            Err(e) if resuming && !e.is_retryable() => {
                warn!(event, %from, %to, error = %error_chain(&e), "The checkpoint's cursor was refused; pulling the window again.");
                report.restarted = true;
                resuming = false;
                let stale = cp.pages.max(cp.stale_pages);
                cp = open_profiles(client, warehouse, &key, window, cp.last_success, stale).await?;
                let cursor = cp.cursor.clone().unwrap_or_default();
                pager = CursorPager::new(CursorApi::Profiles, cursor, 0);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        resuming = false;
        let object = SourceObject {
            uri: profiles_page_uri(&account, event, from, to, index),
            version: cp.pull_id.clone(),
            bytes: None,
        };
        let mut past = cp.clone();
        past.pages = pager.page_index();
        past.cursor = pager.cursor().map(str::to_string);
        let state_key = key.clone();
        let written = past.clone();
        let state: StateAtCommit = Box::new(move |rows, rejected| {
            let mut written = written;
            written.rows += rows;
            written.rejected += rejected;
            checkpoint::state_write(&state_key, &written)
        });
        let opts = profile_parse_options(snapshot_micros(&cp), warehouse.max_columns());
        let counts = load_profile_page(
            warehouse,
            &object,
            page.records,
            opts,
            DEFAULT_MAX_REJECT_RATIO,
            Some(state),
        )
        .await?;
        cp = past;
        cp.rows += counts.rows;
        cp.rejected += counts.rejected;
        if counts.already_loaded {
            // The ledger had the page (a concurrent pull's commit): its checkpoint is saved here.
            checkpoint::save(warehouse, &key, &cp).await?;
        }
    }
    // Pages an earlier pull of the window had beyond this pull's last: empty loads of this
    // pull's version replace their rows.
    for index in cp.pages..cp.stale_pages {
        let object = SourceObject {
            uri: profiles_page_uri(&account, event, from, to, index),
            version: cp.pull_id.clone(),
            bytes: None,
        };
        let opts = profile_parse_options(snapshot_micros(&cp), warehouse.max_columns());
        load_profile_page(
            warehouse,
            &object,
            Vec::new(),
            opts,
            DEFAULT_MAX_REJECT_RATIO,
            None,
        )
        .await?;
    }
    cp.status = SliceStatus::Complete;
    cp.stale_pages = 0;
    cp.last_success = Some(now_utc());
    checkpoint::save(warehouse, &key, &cp).await?;
    report.pages = cp.pages;
    report.rows = cp.rows;
    report.rejected = cp.rejected;
    info!(event, %from, %to, pages = cp.pages, rows = cp.rows, rejected = cp.rejected, "Profiles pulled.");
    Ok(report)
}

/// The snapshot instant of a pull's rows: its start, kept in the checkpoint so a resumed pull
/// gives its later pages the same `ts` as its first ones.
fn snapshot_micros(cp: &Checkpoint) -> i64 {
    parse_utc(&cp.started_at)
        .map(|seconds| seconds * MICROS_PER_SECOND)
        .unwrap_or_else(|| jiff::Timestamp::now().as_microsecond())
}

/// Opens a new Get Profiles cursor over the window under a new pull id and checkpoints it at
/// page 0; `stale_pages` are the pages an earlier pull of the window left, emptied when this
/// one completes.
async fn open_profiles(
    client: &ClevertapClient,
    warehouse: &dyn Warehouse,
    key: &str,
    (event, from, to, batch_size): (&str, Date, Date, u32),
    last_success: Option<String>,
    stale_pages: u64,
) -> Result<Checkpoint, PullError> {
    let body = json!({"event_name": event, "from": day_number(from), "to": day_number(to)});
    let cursor = client
        .open_cursor(CursorApi::Profiles, batch_size, &body)
        .await?;
    let cp = Checkpoint {
        pull_id: new_pull_id(),
        status: SliceStatus::InProgress,
        cursor: Some(cursor),
        pages: 0,
        rows: 0,
        rejected: 0,
        window: (day_number(from), day_number(to)),
        stale_pages,
        started_at: now_utc(),
        last_success,
    };
    checkpoint::save(warehouse, key, &cp).await?;
    Ok(cp)
}
