//! `pull profiles`: Get Profiles (the profiles that did an event in a window) merged by
//! identity into `profiles`: a profile pulled again replaces its row, page by page, and the
//! pull is checkpointed after every page so a killed run resumes where it stopped.

use jiff::civil::Date;
use serde_json::{Value, json};

use tracing::{info, warn};

use super::PullError;
use super::checkpoint::{self, Checkpoint, SliceStatus};
use crate::clevertap::cursor::day_number;
use crate::clevertap::{ClevertapClient, CursorApi, CursorPager};
use crate::error::chain::error_chain;
use crate::time::now_utc;
use crate::warehouse::{ColumnType, FixedTable, Warehouse};

/// Records per page: Get Profiles wants a multiple of 23, at most 5000.
pub const PROFILES_BATCH_SIZE: u32 = 23 * 217;

/// Whether Get Profiles accepts `batch_size`: a multiple of 23 from 23 to 4991.
pub fn valid_profiles_batch_size(batch_size: u32) -> bool {
    (23..=PROFILES_BATCH_SIZE).contains(&batch_size) && batch_size.is_multiple_of(23)
}

/// `profiles`: one row per identity; the property bags kept as JSON text.
pub const PROFILES: FixedTable = FixedTable {
    name: "profiles",
    columns: &[
        ("identity", ColumnType::Text),
        ("object_ids", ColumnType::Text),
        ("platforms", ColumnType::Text),
        ("profile_data", ColumnType::Text),
        ("platform_info", ColumnType::Text),
        ("pulled_at", ColumnType::Text),
    ],
    key: &["identity"],
};

/// What a profiles pull came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProfilesReport {
    /// Pages read by this pull (a resumed run's included).
    pub pages: u64,
    /// Profiles merged into `profiles` by this pull.
    pub merged: u64,
    /// Records without an identity (not mergeable; counted, not stored).
    pub without_identity: u64,
    /// The page this run resumed at, when it continued an interrupted pull.
    pub resumed_at_page: Option<u64>,
    /// The checkpoint's cursor was refused (expired), so the window was pulled again from
    /// its first page.
    pub restarted: bool,
}

/// One `profiles` row of a Get Profiles record; `None` without an identity.
pub fn profile_row(record: &Value, pulled_at: &str) -> Option<Vec<Option<String>>> {
    let identity = match record.get("identity")? {
        Value::String(s) if !s.trim().is_empty() => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let platform_info = record.get("platformInfo").cloned().unwrap_or(json!([]));
    let field = |name: &str| -> Value {
        platform_info
            .as_array()
            .map(|list| list.iter().filter_map(|p| p.get(name).cloned()).collect())
            .unwrap_or_default()
    };
    Some(vec![
        Some(identity),
        Some(field("objectId").to_string()),
        Some(field("platform").to_string()),
        record.get("profileData").map(Value::to_string),
        Some(platform_info.to_string()),
        Some(pulled_at.to_string()),
    ])
}

/// The `_tapline_state` key of a profiles pull: the event and its whole window, since Get
/// Profiles opens one cursor over the window (not one per day).
pub fn profiles_key(account: &str, event: &str, from: Date, to: Date) -> String {
    format!("clevertap/{account}/profiles/{event}/{from}..{to}")
}

/// Pulls the profiles that did `event` from `from` to `to`, merging each page as it arrives
/// and checkpointing after every page in `_tapline_state` ([`profiles_key`]).
///
/// A killed run leaves the checkpoint `in_progress` with the cursor of the next page: the next
/// run over the same window resumes there and says so ([`ProfilesReport::resumed_at_page`]).
/// A page merged but not yet checkpointed when the run died is fetched and merged again,
/// which replaces the same rows by identity: each profile is still one row. A checkpoint whose
/// cursor CleverTap refuses (expired) starts the window again from its first page.
pub async fn pull_profiles(
    client: &ClevertapClient,
    warehouse: &dyn Warehouse,
    event: &str,
    from: Date,
    to: Date,
    batch_size: u32,
) -> Result<ProfilesReport, PullError> {
    let key = profiles_key(&client.config().account_id, event, from, to);
    let mut report = ProfilesReport::default();
    let mut cp = match checkpoint::load(warehouse, &key).await? {
        Some(cp) if cp.status == SliceStatus::InProgress && cp.cursor.is_some() => {
            info!(event, %from, %to, page = cp.pages, "Resuming the profiles pull from its checkpoint.");
            report.resumed_at_page = Some(cp.pages);
            cp
        }
        previous => {
            let last_success = previous.and_then(|c| c.last_success);
            let window = (event, from, to, batch_size);
            open_profiles(client, warehouse, &key, window, last_success).await?
        }
    };
    let resumed_cursor = cp.cursor.clone().unwrap_or_default();
    let mut pager = CursorPager::new(CursorApi::Profiles, resumed_cursor, cp.pages);
    // Only the first page after a resume may find its cursor expired.
    let mut resuming = report.resumed_at_page.is_some();
    loop {
        let page = match pager.next(client).await {
            Ok(Some(page)) => page,
            Ok(None) => break,
            Err(e) if resuming && !e.is_retryable() => {
                warn!(event, %from, %to, error = %error_chain(&e), "The checkpoint's cursor was refused; pulling the window again.");
                report.restarted = true;
                resuming = false;
                let window = (event, from, to, batch_size);
                cp = open_profiles(client, warehouse, &key, window, cp.last_success).await?;
                let cursor = cp.cursor.clone().unwrap_or_default();
                pager = CursorPager::new(CursorApi::Profiles, cursor, 0);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        resuming = false;
        let pulled_at = now_utc();
        let rows: Vec<Vec<Option<String>>> = page
            .records
            .iter()
            .filter_map(|r| profile_row(r, &pulled_at))
            .collect();
        let without_identity = (page.records.len() - rows.len()) as u64;
        let merged = if rows.is_empty() {
            0
        } else {
            warehouse.replace_rows(&PROFILES, &rows).await?
        };
        cp.rows += merged;
        cp.rejected += without_identity;
        cp.pages = pager.page_index();
        cp.cursor = pager.cursor().map(str::to_string);
        checkpoint::save(warehouse, &key, &cp).await?;
    }
    cp.status = SliceStatus::Complete;
    cp.last_success = Some(now_utc());
    checkpoint::save(warehouse, &key, &cp).await?;
    report.pages = cp.pages;
    report.merged = cp.rows;
    report.without_identity = cp.rejected;
    info!(event, %from, %to, pages = cp.pages, merged = cp.rows, "Profiles pulled.");
    Ok(report)
}

/// Opens a new Get Profiles cursor over the window and checkpoints it at page 0.
async fn open_profiles(
    client: &ClevertapClient,
    warehouse: &dyn Warehouse,
    key: &str,
    (event, from, to, batch_size): (&str, Date, Date, u32),
    last_success: Option<String>,
) -> Result<Checkpoint, PullError> {
    let body = json!({"event_name": event, "from": day_number(from), "to": day_number(to)});
    let cursor = client
        .open_cursor(CursorApi::Profiles, batch_size, &body)
        .await?;
    let cp = Checkpoint {
        pull_id: format!("profiles-{}", now_utc()),
        status: SliceStatus::InProgress,
        cursor: Some(cursor),
        pages: 0,
        rows: 0,
        rejected: 0,
        window: (day_number(from), day_number(to)),
        stale_pages: 0,
        started_at: now_utc(),
        last_success,
    };
    checkpoint::save(warehouse, key, &cp).await?;
    Ok(cp)
}
