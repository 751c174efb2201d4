//! `pull profiles`: Get Profiles (the profiles that did an event in a window) merged by
//! identity into `profiles`: a profile pulled again replaces its row, page by page.

use jiff::civil::Date;
use serde_json::{Value, json};

use super::PullError;
use crate::clevertap::cursor::day_number;
use crate::clevertap::{ClevertapClient, CursorApi, CursorPager};
use crate::time::now_utc;
use crate::warehouse::{ColumnType, FixedTable, Warehouse};

/// Records per page: Get Profiles wants a multiple of 23, at most 5000.
pub const PROFILES_BATCH_SIZE: u32 = 23 * 217;

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
    /// Pages read.
    pub pages: u64,
    /// Profiles merged into `profiles`.
    pub merged: u64,
    /// Records without an identity (not mergeable; counted, not stored).
    pub without_identity: u64,
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

/// Pulls the profiles that did `event` from `from` to `to`, merging each page as it arrives.
pub async fn pull_profiles(
    client: &ClevertapClient,
    warehouse: &dyn Warehouse,
    event: &str,
    from: Date,
    to: Date,
) -> Result<ProfilesReport, PullError> {
    let body = json!({"event_name": event, "from": day_number(from), "to": day_number(to)});
    let cursor = client
        .open_cursor(CursorApi::Profiles, PROFILES_BATCH_SIZE, &body)
        .await?;
    let mut pager = CursorPager::new(CursorApi::Profiles, cursor, 0);
    let mut report = ProfilesReport::default();
    while let Some(page) = pager.next(client).await? {
        report.pages += 1;
        let pulled_at = now_utc();
        let rows: Vec<Vec<Option<String>>> = page
            .records
            .iter()
            .filter_map(|r| profile_row(r, &pulled_at))
            .collect();
        report.without_identity += (page.records.len() - rows.len()) as u64;
        if !rows.is_empty() {
            report.merged += warehouse.replace_rows(&PROFILES, &rows).await?;
        }
    }
    Ok(report)
}
