//! Gathering a range of days' evidence from a warehouse and writing the verdicts to
//! `_tapline_completeness`: the ledger (which chunks arrived), rows per event and project-zone day
//! (from `all_events`, exports and API pulls apart), and CleverTap's counts (`event_counts`).
//! Three reads, whatever the range; nothing here is adapter-specific: the SQL is the portable
//! subset SQLite, PostgreSQL and BigQuery share (`ts` compared with UTC ISO-8601 literals, which
//! each of them reads as a time).

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

use super::chunks::{DayChunks, day_chunks, event_key};
use super::status::{DayFigures, DayStatus, Policy, judge};
use crate::export::object_name::{ExportKind, Recognition, recognise};
use crate::time::{format_utc, now_utc};
use crate::warehouse::counts_tables::EVENT_COUNTS;
use crate::warehouse::{
    ColumnType, FixedTable, LedgerVersion, LoadStatus, QueryResult, Warehouse, WarehouseError,
};

/// Most days one reconcile covers: a year. The rows query has one `CASE` branch per day.
pub const MAX_DAYS: usize = 366;

/// `_tapline_completeness`: one row per (event, day) reconciled, replaced on every run.
pub const COMPLETENESS: FixedTable = FixedTable {
    name: "_tapline_completeness",
    columns: &[
        ("event_key", ColumnType::Text),
        ("day", ColumnType::Text),
        ("event_name", ColumnType::Text),
        ("status", ColumnType::Text),
        ("detail", ColumnType::Text),
        ("export_chunks", ColumnType::Integer),
        ("missing_chunks", ColumnType::Integer),
        ("export_rows", ColumnType::Integer),
        ("api_rows", ColumnType::Integer),
        ("clevertap_count", ColumnType::Integer),
        ("notified", ColumnType::Text),
        ("checked_at", ColumnType::Text),
    ],
    key: &["event_key", "day"],
};

/// What to reconcile.
#[derive(Debug, Clone)]
pub struct Request {
    /// First day (project time zone).
    pub first: Date,
    /// Last day, included.
    pub last: Date,
    /// The project's time zone: days are its days.
    pub timezone: TimeZone,
    /// The instant to judge at (a day not over then is late).
    pub now: Timestamp,
    /// Tolerance and grace.
    pub policy: Policy,
}

impl Request {
    /// The last `days` whole days before `now`'s day in `timezone`.
    pub fn last_days(days: u16, timezone: TimeZone, now: Timestamp, policy: Policy) -> Self {
        let today = timezone.to_datetime(now).date();
        let last = today.yesterday().unwrap_or(today);
        let first = last
            .checked_sub(jiff::Span::new().days(i64::from(days.max(1)) - 1))
            .unwrap_or(last);
        Self {
            first,
            last,
            timezone,
            now,
            policy,
        }
    }
}

/// One (event, day)'s verdict and its figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayReport {
    /// The event as file names write it (see [`event_key`]).
    pub event_key: String,
    /// The event's name as rows or counts give it, else the key.
    pub event_name: String,
    /// The day.
    pub day: Date,
    /// Export chunks seen.
    pub export_chunks: usize,
    /// Rows and count.
    pub figures: DayFigures,
    /// The verdict.
    pub status: DayStatus,
}

/// Why reconcile could not give a verdict. Never an empty answer instead: a read in doubt fails.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The range is empty or too long.
    #[error("cannot reconcile {first} to {last}: {reason}")]
    Range {
        /// First day asked.
        first: Date,
        /// Last day asked.
        last: Date,
        /// What is wrong.
        reason: String,
    },
    /// A warehouse read or write failed.
    #[error("reconcile could not {step}")]
    Warehouse {
        /// What it was doing.
        step: &'static str,
        /// The warehouse's error.
        #[source]
        source: WarehouseError,
    },
    /// A warehouse answer had an unexpected shape.
    #[error("reconcile could not read {what}: {detail}")]
    Answer {
        /// Which read.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl ReconcileError {
    /// Whether running again later may work.
    pub fn is_retryable(&self) -> bool {
        match self {
            ReconcileError::Warehouse { source, .. } => source.is_retryable(),
            _ => false,
        }
    }
}

/// One day's bounds in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayWindow {
    /// The day.
    pub day: Date,
    /// Its first instant.
    pub start: Timestamp,
    /// The next day's first instant.
    pub end: Timestamp,
}

/// The windows of `first..=last` in `tz` (days of 23 or 25 hours where the zone changes offset).
pub fn day_windows(first: Date, last: Date, tz: &TimeZone) -> Result<Vec<DayWindow>, String> {
    if last < first {
        return Err("the last day is before the first".to_string());
    }
    let start_of = |d: Date| {
        tz.to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
            .map_err(|e| format!("{d} has no start in the time zone: {e}"))
    };
    let mut windows = Vec::new();
    let mut day = first;
    while day <= last {
        if windows.len() == MAX_DAYS {
            return Err(format!("at most {MAX_DAYS} days at once"));
        }
        let next = day.tomorrow().map_err(|e| e.to_string())?;
        windows.push(DayWindow {
            day,
            start: start_of(day)?,
            end: start_of(next)?,
        });
        day = next;
    }
    Ok(windows)
}

/// A UTC instant as the literal every warehouse compares `ts` with.
fn literal(t: Timestamp) -> String {
    format!("'{}'", format_utc(t.as_second()))
}

/// Whether a ledger version committed event rows: loaded (or replaced since), and no profile
/// export or profile API page (those fill `profile_snapshots`, not an event table).
fn committed_event_rows(v: &LedgerVersion) -> bool {
    if !matches!(v.status, LoadStatus::Loaded | LoadStatus::Replaced) {
        return false;
    }
    let key = v.uri.rsplit_once("://").map_or(v.uri.as_str(), |(_, k)| k);
    if v.uri.starts_with("clevertap-api://") {
        return !key.contains("/profiles/");
    }
    !matches!(recognise(key), Recognition::Export(o) if o.kind == ExportKind::Profiles)
}

/// Rows per (event, day, source) over `windows` from `all_events`: one scan of the range, the
/// day from `ts` by the windows' bounds, the source from `_source_uri` (API pages are
/// `clevertap-api://…`).
pub fn rows_per_day_sql(windows: &[DayWindow]) -> String {
    let (Some(first), Some(last)) = (windows.first(), windows.last()) else {
        return String::new();
    };
    let branches: String = windows
        .iter()
        .map(|w| format!(" WHEN ts < {} THEN '{}'", literal(w.end), w.day))
        .collect();
    format!(
        "SELECT event_name, CASE{branches} END AS day, \
         CASE WHEN _source_uri LIKE 'clevertap-api:%' THEN 'api' ELSE 'export' END AS source, \
         count(*) AS n FROM all_events WHERE ts >= {} AND ts < {} GROUP BY 1, 2, 3",
        literal(first.start),
        literal(last.end)
    )
}

/// Reads every (event, day) of `request` and judges it. Events with nothing in the range (no
/// chunk, no row, no count) are not listed.
pub async fn reconcile(
    warehouse: &dyn Warehouse,
    request: &Request,
) -> Result<Vec<DayReport>, ReconcileError> {
    let range_err = |reason: String| ReconcileError::Range {
        first: request.first,
        last: request.last,
        reason,
    };
    let windows = day_windows(request.first, request.last, &request.timezone).map_err(range_err)?;
    let wh = |step| move |source| ReconcileError::Warehouse { step, source };
    let versions = warehouse
        .ledger_versions("")
        .await
        .map_err(wh("read the load ledger"))?;
    let in_range = |d: &Date| *d >= request.first && *d <= request.last;
    let chunks: BTreeMap<(String, Date), DayChunks> = day_chunks(&versions)
        .into_iter()
        .filter(|((_, d), _)| in_range(d))
        .collect();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut figures: BTreeMap<(String, Date), DayFigures> = BTreeMap::new();
    // `all_events` exists once event rows committed: without a loaded event version (none
    // seen, each one quarantined or failed, or profiles only) it may not exist, and it holds
    // nothing of the range.
    if versions.iter().any(committed_event_rows) {
        let rows = warehouse
            .query(&rows_per_day_sql(&windows))
            .await
            .map_err(wh("count rows per day"))?;
        for row in answer_rows(&rows, "rows per day", 4)? {
            let (name, day, source, n) = (&row[0], &row[1], &row[2], &row[3]);
            let day = parse_day(day, "rows per day")?;
            let n = parse_count(n, "rows per day")?;
            let key = event_key(name);
            names.entry(key.clone()).or_insert_with(|| name.clone());
            let f = figures.entry((key, day)).or_default();
            if source == "api" {
                f.api_rows += n;
            } else {
                f.export_rows += n;
            }
        }
    }
    // Makes `event_counts` exist (empty) where counts were never pulled, so a failed read is
    // an error and never "no counts".
    warehouse
        .replace_rows(&EVENT_COUNTS, &[])
        .await
        .map_err(wh("prepare event_counts"))?;
    let counts = warehouse
        .query(&format!(
            "SELECT event_name, day, count FROM event_counts WHERE day >= '{}' AND day <= '{}'",
            request.first, request.last
        ))
        .await
        .map_err(wh("read event_counts"))?;
    for row in answer_rows(&counts, "event_counts", 3)? {
        let day = parse_day(&row[1], "event_counts")?;
        let count = parse_count(&row[2], "event_counts")?;
        let key = event_key(&row[0]);
        names.insert(key.clone(), row[0].clone());
        figures.entry((key, day)).or_default().clevertap_count = Some(count);
    }
    let keys: BTreeSet<(String, Date)> = chunks
        .keys()
        .chain(figures.keys())
        .filter(|(_, d)| in_range(d))
        .cloned()
        .collect();
    let empty = DayChunks::default();
    Ok(keys
        .into_iter()
        .map(|(key, day)| {
            let c = chunks.get(&(key.clone(), day)).unwrap_or(&empty);
            let f = figures
                .get(&(key.clone(), day))
                .copied()
                .unwrap_or_default();
            DayReport {
                event_name: names.get(&key).cloned().unwrap_or_else(|| key.clone()),
                export_chunks: c.len(),
                status: judge(day, &request.timezone, request.now, c, &f, &request.policy),
                event_key: key,
                day,
                figures: f,
            }
        })
        .collect())
}

/// An earlier verdict of one (event, day): its status and whether it was alerted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    /// `_tapline_completeness.status`.
    pub status: String,
    /// `_tapline_completeness.notified`: `yes`, `no` or `failed`.
    pub notified: String,
}

/// The verdicts `_tapline_completeness` holds for `request`'s days, by (event key, day): what
/// decides whether a day is alerted again. A failed read is an error, never "none": a day must
/// not be alerted twice because a read failed.
pub async fn previous(
    warehouse: &dyn Warehouse,
    request: &Request,
) -> Result<BTreeMap<(String, Date), Previous>, ReconcileError> {
    let wh = |step| move |source| ReconcileError::Warehouse { step, source };
    warehouse
        .replace_rows(&COMPLETENESS, &[])
        .await
        .map_err(wh("prepare _tapline_completeness"))?;
    let answer = warehouse
        .query(&format!(
            "SELECT event_key, day, status, notified FROM _tapline_completeness \
             WHERE day >= '{}' AND day <= '{}'",
            request.first, request.last
        ))
        .await
        .map_err(wh("read _tapline_completeness"))?;
    let mut out = BTreeMap::new();
    for row in &answer.rows {
        let text = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let day = parse_day(&text(1), "_tapline_completeness")?;
        out.insert(
            (text(0), day),
            Previous {
                status: text(2),
                notified: text(3),
            },
        );
    }
    Ok(out)
}

/// Writes `reports` to `_tapline_completeness`, replacing each (event, day)'s earlier verdict;
/// `notified[i]` says whether report i's alert went out (`yes`, `no`, `failed`; missing: `no`).
pub async fn record(
    warehouse: &dyn Warehouse,
    reports: &[DayReport],
    notified: &[&str],
) -> Result<u64, ReconcileError> {
    let checked_at = now_utc();
    let rows: Vec<Vec<Option<String>>> = reports
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let missing = match &r.status {
                DayStatus::MissingChunk(m) => m.len(),
                _ => 0,
            };
            vec![
                Some(r.event_key.clone()),
                Some(r.day.to_string()),
                Some(r.event_name.clone()),
                Some(r.status.as_str().to_string()),
                Some(r.status.to_string()),
                Some(r.export_chunks.to_string()),
                Some(missing.to_string()),
                Some(r.figures.export_rows.to_string()),
                Some(r.figures.api_rows.to_string()),
                r.figures.clevertap_count.map(|c| c.to_string()),
                Some(notified.get(i).copied().unwrap_or("no").to_string()),
                Some(checked_at.clone()),
            ]
        })
        .collect();
    warehouse
        .replace_rows(&COMPLETENESS, &rows)
        .await
        .map_err(|source| ReconcileError::Warehouse {
            step: "write _tapline_completeness",
            source,
        })
}

/// Reconciles `request` and records the verdicts without alerting: a day whose status did not
/// change keeps its earlier `notified`, so a run that alerts later does not alert it twice.
pub async fn reconcile_and_record(
    warehouse: &dyn Warehouse,
    request: &Request,
) -> Result<Vec<DayReport>, ReconcileError> {
    let before = previous(warehouse, request).await?;
    let reports = reconcile(warehouse, request).await?;
    let notified: Vec<&str> = reports
        .iter()
        .map(|r| match before.get(&(r.event_key.clone(), r.day)) {
            Some(p) if p.status == r.status.as_str() && p.notified == "yes" => "yes",
            _ => "no",
        })
        .collect();
    record(warehouse, &reports, &notified).await?;
    Ok(reports)
}

/// The rows of an answer, each with `width` non-NULL values.
fn answer_rows(
    result: &QueryResult,
    what: &'static str,
    width: usize,
) -> Result<Vec<Vec<String>>, ReconcileError> {
    result
        .rows
        .iter()
        .map(|row| {
            if row.len() != width {
                return Err(ReconcileError::Answer {
                    what,
                    detail: format!("a row of {} values, expected {width}", row.len()),
                });
            }
            row.iter()
                .map(|v| {
                    v.clone().ok_or_else(|| ReconcileError::Answer {
                        what,
                        detail: "a NULL value".to_string(),
                    })
                })
                .collect()
        })
        .collect()
}

fn parse_day(text: &str, what: &'static str) -> Result<Date, ReconcileError> {
    text.parse().map_err(|_| ReconcileError::Answer {
        what,
        detail: format!("{:?} is no day", crate::printable::escaped(text)),
    })
}

fn parse_count(text: &str, what: &'static str) -> Result<u64, ReconcileError> {
    text.parse().map_err(|_| ReconcileError::Answer {
        what,
        detail: format!("{:?} is no count", crate::printable::escaped(text)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_the_zones_days_and_the_sql_maps_ts_to_them() {
        let tz = TimeZone::get("Asia/Kolkata").unwrap();
        let w = day_windows(
            Date::constant(2022, 9, 20),
            Date::constant(2022, 9, 21),
            &tz,
        )
        .unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].start.to_string(), "2022-09-19T18:30:00Z");
        assert_eq!(w[1].end.to_string(), "2022-09-21T18:30:00Z");
        assert_eq!(
            rows_per_day_sql(&w),
            "SELECT event_name, CASE WHEN ts < '2022-09-20T18:30:00Z' THEN '2022-09-20' \
             WHEN ts < '2022-09-21T18:30:00Z' THEN '2022-09-21' END AS day, \
             CASE WHEN _source_uri LIKE 'clevertap-api:%' THEN 'api' ELSE 'export' END AS source, \
             count(*) AS n FROM all_events WHERE ts >= '2022-09-19T18:30:00Z' \
             AND ts < '2022-09-21T18:30:00Z' GROUP BY 1, 2, 3"
        );
    }

    #[test]
    fn a_day_where_the_zone_changes_offset_has_its_own_length() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let w = day_windows(
            Date::constant(2024, 3, 31),
            Date::constant(2024, 3, 31),
            &tz,
        )
        .unwrap();
        assert_eq!(w[0].end.duration_since(w[0].start).as_hours(), 23);
    }

    #[test]
    fn ranges_are_checked() {
        let tz = TimeZone::UTC;
        assert_eq!(
            day_windows(Date::constant(2022, 9, 2), Date::constant(2022, 9, 1), &tz).unwrap_err(),
            "the last day is before the first"
        );
        assert_eq!(
            day_windows(Date::constant(2020, 1, 1), Date::constant(2022, 1, 1), &tz).unwrap_err(),
            "at most 366 days at once"
        );
    }

    #[test]
    fn the_default_range_is_the_last_whole_days() {
        let now: Timestamp = "2022-09-21T20:00:00Z".parse().unwrap();
        let r = Request::last_days(
            7,
            TimeZone::get("Asia/Kolkata").unwrap(),
            now,
            Policy::default(),
        );
        // 20:00Z is already the 22nd in Kolkata: the last whole day is the 21st.
        assert_eq!(
            (r.first.to_string(), r.last.to_string()),
            ("2022-09-15".into(), "2022-09-21".into())
        );
    }
}
