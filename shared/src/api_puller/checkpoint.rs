//! Checkpoints of API pulls in `_tapline_state`: one JSON value per slice, rewritten after
//! every page, so the next run knows where the last one stopped and says so.

use serde::{Deserialize, Serialize};

use super::PullError;
use crate::warehouse::{StateWrite, Warehouse};

/// Where a slice's pull stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SliceStatus {
    /// Pages are being loaded; `cursor` names the next one.
    InProgress,
    /// Every page was loaded.
    Complete,
}

/// One slice's checkpoint (key: [`slice_key`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The pull this checkpoint belongs to: the version of each of its pages in the ledger.
    pub pull_id: String,
    /// In progress or complete.
    pub status: SliceStatus,
    /// The decoded cursor of the next page; `None` once the last page was read.
    pub cursor: Option<String>,
    /// Pages loaded so far: the index of the next page.
    pub pages: u64,
    /// Rows loaded so far.
    pub rows: u64,
    /// Rows rejected so far.
    pub rejected: u64,
    /// The window asked of CleverTap (`YYYYMMDD`, project time zone).
    pub window: (i64, i64),
    /// Pages an earlier pull of this slice loaded: those past this pull's last page are
    /// emptied when it completes, so a day pulled again is replaced, never doubled.
    pub stale_pages: u64,
    /// When this pull started (UTC).
    pub started_at: String,
    /// When the slice last completed (UTC), this pull or an earlier one.
    pub last_success: Option<String>,
}

/// The `_tapline_state` key of one (account, API, name, day) slice.
pub fn slice_key(account: &str, api: &str, name: &str, day: jiff::civil::Date) -> String {
    format!("clevertap/{account}/{api}/{name}/{day}")
}

/// Reads a checkpoint.
pub async fn load(warehouse: &dyn Warehouse, key: &str) -> Result<Option<Checkpoint>, PullError> {
    match warehouse.get_state(key).await? {
        None => Ok(None),
        Some(text) => {
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|source| PullError::Checkpoint {
                    key: key.to_string(),
                    source,
                })
        }
    }
}

/// Writes a checkpoint (committed when this returns).
pub async fn save(
    warehouse: &dyn Warehouse,
    key: &str,
    checkpoint: &Checkpoint,
) -> Result<(), PullError> {
    let state = state_write(key, checkpoint);
    warehouse.put_state(&state.key, &state.value).await?;
    Ok(())
}

/// A checkpoint as the `_tapline_state` value under `key`: what [`save`] writes, and what a
/// page's load writes in its own transaction.
pub fn state_write(key: &str, checkpoint: &Checkpoint) -> StateWrite {
    StateWrite {
        key: key.to_string(),
        // Strings, numbers and a unit enum: serialising cannot fail.
        value: serde_json::to_string(checkpoint).expect("a checkpoint serialises"),
    }
}

/// A checkpoint as stored, with what its key names: what `tapline status` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The CleverTap account.
    pub account: String,
    /// The API: `events`, `profiles`.
    pub kind: String,
    /// The event.
    pub event: String,
    /// The day (`YYYY-MM-DD`) or window (`FROM..TO`) of the slice.
    pub window: String,
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// When it was last written, as the warehouse stores it (UTC).
    pub updated_at: String,
}

/// Splits a checkpoint key (`clevertap/ACCOUNT/KIND/EVENT/WINDOW`) into its parts; an event
/// name may itself hold `/`.
pub fn parse_key(key: &str) -> Option<(&str, &str, &str, &str)> {
    let rest = key.strip_prefix("clevertap/")?;
    let (account, rest) = rest.split_once('/')?;
    let (kind, rest) = rest.split_once('/')?;
    let (event, window) = rest.rsplit_once('/')?;
    Some((account, kind, event, window))
}

/// The pulls a run left unfinished (`in_progress` checkpoints), ordered by key. Values this
/// version cannot read are skipped with a warning rather than hiding the others.
pub async fn unfinished(warehouse: &dyn Warehouse) -> Result<Vec<StoredCheckpoint>, PullError> {
    let result = warehouse
        .query(
            "SELECT key, value, updated_at FROM _tapline_state \
             WHERE key LIKE 'clevertap/%' ORDER BY key",
        )
        .await?;
    let mut found = Vec::new();
    for row in result.rows {
        let cell = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let (key, value, updated_at) = (cell(0), cell(1), cell(2));
        let Some((account, kind, event, window)) = parse_key(&key) else {
            continue;
        };
        let checkpoint: Checkpoint = match serde_json::from_str(&value) {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(%key, %error, "A checkpoint cannot be read; skipped.");
                continue;
            }
        };
        if checkpoint.status == SliceStatus::InProgress {
            found.push(StoredCheckpoint {
                account: account.to_string(),
                kind: kind.to_string(),
                event: event.to_string(),
                window: window.to_string(),
                checkpoint,
                updated_at,
            });
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_into_account_kind_event_and_window() {
        let day: jiff::civil::Date = "2022-09-22".parse().unwrap();
        assert_eq!(
            parse_key(&slice_key("ACC", "events", "A/B Test", day)),
            Some(("ACC", "events", "A/B Test", "2022-09-22"))
        );
        assert_eq!(
            parse_key("clevertap/ACC/profiles/Charged/2022-09-01..2022-09-21"),
            Some(("ACC", "profiles", "Charged", "2022-09-01..2022-09-21"))
        );
        assert_eq!(parse_key("other/thing"), None);
    }
}
