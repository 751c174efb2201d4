//! The tables CleverTap's own counts land in: written by the API puller (`pull counts`), read by
//! reconcile, so they live beside the port rather than in either job.

use super::{ColumnType, FixedTable};

/// `event_counts`: CleverTap's count of each event per day of the project's time zone.
pub const EVENT_COUNTS: FixedTable = FixedTable {
    name: "event_counts",
    columns: &[
        ("event_name", ColumnType::Text),
        ("day", ColumnType::Text),
        ("count", ColumnType::Integer),
        ("timezone", ColumnType::Text),
        ("pulled_at", ColumnType::Text),
    ],
    key: &["event_name", "day"],
};

/// `profile_counts`: CleverTap's count of profiles that did each event per day.
pub const PROFILE_COUNTS: FixedTable = FixedTable {
    name: "profile_counts",
    ..EVENT_COUNTS
};
