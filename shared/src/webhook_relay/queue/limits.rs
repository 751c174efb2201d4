//! [`QueueLimits`]: the local queue's backlog cap and free-disk watermark, and what a refused
//! accept answers. A leaf of its own, so that the configuration can hold the limits without
//! depending on the queue.

/// What one payload is charged against the backlog cap beside its body: its row, one delivery
/// row per destination, the attempt records and the index entries take from a few hundred bytes
/// to about a kilobyte, so that small bodies cannot run the disk out under the cap.
pub const PAYLOAD_OVERHEAD_BYTES: u64 = 1024;
/// Default cap on the backlog: 4 GiB (about 3 million CleverTap-sized payloads).
pub const DEFAULT_MAX_BACKLOG_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// Default free-disk watermark, as a share of the file system.
pub const DEFAULT_MIN_FREE_DISK_PERCENT: u8 = 5;
/// Default free-disk watermark, in bytes: the larger of this and the share applies.
pub const DEFAULT_MIN_FREE_DISK_BYTES: u64 = 256 * 1024 * 1024;
/// The `Retry-After` of a 503 for a full queue: the worker needs a while to drain.
pub const QUEUE_FULL_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// Bounds on the local queue, checked before each accept: past either, accepts are refused
/// with `QueueError::Full` (503) while nothing already stored is touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most backlog bytes (`QueueHealth::backlog_bytes`) the queue holds: a destination that
    /// refuses everything fills this, not the disk.
    pub max_backlog_bytes: u64,
    /// Accepts stop while the state directory's file system has less free space than this
    /// share of its size…
    pub min_free_disk_percent: u8,
    /// …or than this many bytes, whichever is larger: well before SQLite hits a full disk.
    pub min_free_disk_bytes: u64,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_backlog_bytes: DEFAULT_MAX_BACKLOG_BYTES,
            min_free_disk_percent: DEFAULT_MIN_FREE_DISK_PERCENT,
            min_free_disk_bytes: DEFAULT_MIN_FREE_DISK_BYTES,
        }
    }
}
