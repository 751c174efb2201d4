//! Freshness: how long an export object waited between its creation in the bucket and its rows
//! committing. The loader keeps the creation time a store gives when it is plausible
//! ([`ObjectEntry::plausible_created_at`]); `tapline status` and the report read percentiles of
//! the latencies back ([`last_day`], [`per_day`]) and name the oldest object a sweep would still
//! load ([`oldest_unloaded`]).

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

use crate::Error;
use crate::config::LoadConfig;
use crate::export::{Recognition, recognise};
use crate::export_loader::sweep::{SweepRequest, pending};
use crate::storage::{ObjectEntry, ObjectSource};
use crate::time::format_utc;
use crate::warehouse::{LoadRecord, Warehouse, WarehouseError};

/// Most ledger rows one freshness figure is computed from: memory stays bounded however many
/// objects a day brings (the newest are used; the count says how many).
pub const MAX_LOADS_READ: usize = 100_000;

/// Seconds from a ledger row's object creation to its commit (0 when the store's clock ran a
/// little ahead); `None` when either time is unknown.
pub fn latency_seconds(record: &LoadRecord) -> Option<i64> {
    let created = instant(record.object_created_at.as_deref()?)?;
    let committed = instant(record.finished_at.as_deref()?)?;
    Some((committed - created).max(0))
}

/// Epoch seconds of a ledger timestamp (UTC ISO-8601, with or without a fraction: BigQuery
/// answers keep microseconds).
fn instant(text: &str) -> Option<i64> {
    text.parse::<Timestamp>().ok().map(|t| t.as_second())
}

/// Percentiles of creation→commit latency over a set of loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Loads the figures are computed from (those with a known creation time).
    pub loads: usize,
    /// Median latency, seconds (nearest rank).
    pub p50_seconds: i64,
    /// 95th percentile latency, seconds (nearest rank).
    pub p95_seconds: i64,
}

impl Freshness {
    /// The percentiles of `latencies` (any order); `None` when there are none.
    pub fn of(mut latencies: Vec<i64>) -> Option<Self> {
        if latencies.is_empty() {
            return None;
        }
        latencies.sort_unstable();
        // Nearest rank: the smallest value with at least p % of the values at or below it.
        let rank = |percent: usize| {
            let n = latencies.len();
            latencies[(n * percent).div_ceil(100).clamp(1, n) - 1]
        };
        Some(Self {
            loads: latencies.len(),
            p50_seconds: rank(50),
            p95_seconds: rank(95),
        })
    }
}

/// Freshness of the loads committed in the 24 hours before `now`; `None` when none had a
/// known creation time. A failed ledger read is an error.
pub async fn last_day(
    warehouse: &dyn Warehouse,
    now: Timestamp,
) -> Result<Option<Freshness>, WarehouseError> {
    let since = format_utc(now.as_second() - 86_400);
    let records = warehouse.commits_since(&since, MAX_LOADS_READ).await?;
    Ok(Freshness::of(
        records.iter().filter_map(latency_seconds).collect(),
    ))
}

/// The loads committed on one day: how many, the rows they rejected, and their freshness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayLoads {
    /// The day, in the zone asked for.
    pub day: Date,
    /// Loads committed that day.
    pub committed: usize,
    /// Rows those loads rejected (kept in `_tapline_rejects` with their raw lines).
    pub rejected_rows: u64,
    /// Creation→commit latency of those with a known creation time; `None` when none had one.
    pub freshness: Option<Freshness>,
}

/// The loads of each day of `first..=last` in `tz`, by the day each committed: one entry per
/// day (at most 366), from one read of the ledger ([`MAX_LOADS_READ`] newest rows at most).
pub async fn per_day(
    warehouse: &dyn Warehouse,
    first: Date,
    last: Date,
    tz: &TimeZone,
) -> Result<Vec<DayLoads>, WarehouseError> {
    let start = tz
        .to_ambiguous_timestamp(first.to_datetime(jiff::civil::Time::midnight()))
        .compatible()
        .map_or(0, |t| t.as_second());
    let records = warehouse
        .commits_since(&format_utc(start), MAX_LOADS_READ)
        .await?;
    let mut days: Vec<(DayLoads, Vec<i64>)> = Vec::new();
    let mut day = first;
    while day <= last && days.len() < 366 {
        let empty = DayLoads {
            day,
            committed: 0,
            rejected_rows: 0,
            freshness: None,
        };
        days.push((empty, Vec::new()));
        let Ok(next) = day.tomorrow() else { break };
        day = next;
    }
    for record in &records {
        let Some(at) = record
            .finished_at
            .as_deref()
            .and_then(instant)
            .and_then(|s| Timestamp::from_second(s).ok())
        else {
            continue;
        };
        let date = tz.to_datetime(at).date();
        if let Some((loads, latencies)) = days.iter_mut().find(|(l, _)| l.day == date) {
            loads.committed += 1;
            loads.rejected_rows += record.rows_rejected;
            latencies.extend(latency_seconds(record));
        }
    }
    Ok(days
        .into_iter()
        .map(|(loads, latencies)| DayLoads {
            freshness: Freshness::of(latencies),
            ..loads
        })
        .collect())
}

/// The export objects `tapline sweep LOCATION` would load now (every date, the ledger read
/// once): how many, and the oldest by creation time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unloaded {
    /// Export objects a sweep would load.
    pub objects: usize,
    /// The oldest of them whose creation time is known, and that time.
    pub oldest: Option<(ObjectEntry, Timestamp)>,
}

/// Lists `location` the way a sweep does and finds what it would load ([`Unloaded`]). Errors
/// when the listing or the ledger read fails.
pub async fn oldest_unloaded(
    source: &dyn ObjectSource,
    warehouse: &dyn Warehouse,
    location: &str,
    config: &LoadConfig,
) -> Result<Unloaded, Error> {
    let request = SweepRequest {
        uri: location.to_string(),
        since: None,
        // Every date: an object stuck for weeks is the one to name.
        window_days: Some(0),
        request_id: None,
    };
    let todo = pending(source, warehouse, &request, config, |_| true)
        .await?
        .todo;
    let exports: Vec<ObjectEntry> = todo
        .into_iter()
        .filter(|e| matches!(recognise(&e.key), Recognition::Export(_)))
        .collect();
    let now = Timestamp::now();
    let oldest = exports
        .iter()
        .filter_map(|e| {
            // The same check as the ledger's: an implausible time names nothing.
            Some((e.clone(), e.plausible_created_at(now)?))
        })
        .min_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.uri.cmp(&b.0.uri)));
    Ok(Unloaded {
        objects: exports.len(),
        oldest,
    })
}

/// A duration in seconds as people read it: `42s`, `3m 05s`, `2h 07m`, `3d 04h`.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m {:02}s", s / 60, s % 60),
        3_600..86_400 => format!("{}h {:02}m", s / 3_600, s % 3_600 / 60),
        _ => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3_600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(Freshness::of(vec![]), None);
        assert_eq!(
            Freshness::of(vec![7]),
            Some(Freshness {
                loads: 1,
                p50_seconds: 7,
                p95_seconds: 7
            })
        );
        let twenty: Vec<i64> = (1..=20).rev().collect();
        assert_eq!(
            Freshness::of(twenty),
            Some(Freshness {
                loads: 20,
                p50_seconds: 10,
                p95_seconds: 19
            })
        );
        assert_eq!(
            Freshness::of(vec![5, 100, 1]).map(|f| (f.p50_seconds, f.p95_seconds)),
            Some((5, 100))
        );
    }

    #[test]
    fn latency_is_commit_minus_creation_never_negative() {
        let record = |created: Option<&str>, finished: Option<&str>| LoadRecord {
            load_id: 1,
            uri: "s3://b/k".into(),
            version: "v".into(),
            status: crate::warehouse::LoadStatus::Loaded,
            bytes: None,
            rows_loaded: 0,
            rows_rejected: 0,
            error: None,
            attempts: 1,
            started_at: "2026-12-07T12:00:00Z".into(),
            finished_at: finished.map(str::to_string),
            object_created_at: created.map(str::to_string),
        };
        let both = record(Some("2026-12-07T11:58:30Z"), Some("2026-12-07T12:00:00Z"));
        assert_eq!(latency_seconds(&both), Some(90));
        let ahead = record(Some("2026-12-07T12:01:00Z"), Some("2026-12-07T12:00:00Z"));
        assert_eq!(latency_seconds(&ahead), Some(0));
        assert_eq!(
            latency_seconds(&record(None, Some("2026-12-07T12:00:00Z"))),
            None
        );
        assert_eq!(
            latency_seconds(&record(Some("garbage"), Some("2026-12-07T12:00:00Z"))),
            None
        );
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(human_duration(-3), "0s");
        assert_eq!(human_duration(42), "42s");
        assert_eq!(human_duration(185), "3m 05s");
        assert_eq!(human_duration(7_620), "2h 07m");
        assert_eq!(human_duration(273_600), "3d 04h");
    }
}
