//! Checkpoints of API pulls in `_tapline_state`: one JSON value per slice, rewritten after
//! every page, so the next run knows where the last one stopped and says so.

use serde::{Deserialize, Serialize};

use super::PullError;
use crate::warehouse::Warehouse;

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
    let text = serde_json::to_string(checkpoint).map_err(|source| PullError::Checkpoint {
        key: key.to_string(),
        source,
    })?;
    warehouse.put_state(key, &text).await?;
    Ok(())
}
