//! Whether one (event, day) is complete, from its chunks, the rows the warehouse holds and
//! CleverTap's own count. Pure: the figures are gathered by the caller.

use std::fmt;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::chunks::{DayChunks, MissingChunk};

/// How strict reconcile is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Largest difference between the warehouse's rows and CleverTap's count that still counts
    /// as complete, as a fraction of the count: counts and exports are computed at different
    /// times, so a small drift is normal.
    pub tolerance: f64,
    /// How long after a day ends its export may still be on the way (CleverTap's recurring
    /// exports run every 4 to 24 hours): until then a day without (all) its rows is late.
    pub export_grace: SignedDuration,
}

/// 0.5 %.
pub const DEFAULT_TOLERANCE: f64 = 0.005;

impl Default for Policy {
    fn default() -> Self {
        Self {
            tolerance: DEFAULT_TOLERANCE,
            export_grace: SignedDuration::from_hours(24),
        }
    }
}

/// What the warehouse and CleverTap say about one (event, day).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayFigures {
    /// Rows of that event whose `ts` falls on the day (project time zone), from export files.
    pub export_rows: u64,
    /// The same, from API pulls.
    pub api_rows: u64,
    /// CleverTap's count for the day (`event_counts`), if pulled.
    pub clevertap_count: Option<u64>,
}

impl DayFigures {
    /// Rows the warehouse holds for the day, whatever path brought them.
    pub fn rows(&self) -> u64 {
        self.export_rows + self.api_rows
    }
}

/// Where a day stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DayStatus {
    /// The chunks are all there and the rows agree with CleverTap's count within the tolerance.
    Complete,
    /// A chunk never arrived, was quarantined, or failed to load.
    MissingChunk(Vec<MissingChunk>),
    /// Every chunk seen loaded, but the rows differ from CleverTap's count past the tolerance.
    CountMismatch {
        /// Rows in the warehouse.
        warehouse: u64,
        /// CleverTap's count.
        clevertap: u64,
    },
    /// CleverTap counts events that day; no export chunk and no API row arrived.
    NoExport {
        /// CleverTap's count.
        clevertap: u64,
    },
    /// The day is not over in the project's time zone, or its export is not due yet.
    Late,
    /// No count from CleverTap to check the rows against (pull counts first).
    NoCount,
}

impl DayStatus {
    /// The text stored in `_tapline_completeness.status`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DayStatus::Complete => "complete",
            DayStatus::MissingChunk(_) => "missing chunk",
            DayStatus::CountMismatch { .. } => "count mismatch",
            DayStatus::NoExport { .. } => "no export",
            DayStatus::Late => "late",
            DayStatus::NoCount => "no count",
        }
    }

    /// Whether the day needs someone's attention: something is missing or does not add up. A
    /// day not due yet does not, nor one without a count to check it by (a project that pulls no
    /// counts still has its chunks checked, and is not alerted every day for the counts).
    pub fn needs_attention(&self) -> bool {
        !matches!(
            self,
            DayStatus::Complete | DayStatus::Late | DayStatus::NoCount
        )
    }
}

impl fmt::Display for DayStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DayStatus::MissingChunk(chunks) => {
                write!(f, "missing chunk: ")?;
                for (i, c) in chunks.iter().take(3).enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{} ({})", c.name, c.why)?;
                }
                if chunks.len() > 3 {
                    write!(f, " and {} more", chunks.len() - 3)?;
                }
                Ok(())
            }
            DayStatus::CountMismatch {
                warehouse,
                clevertap,
            } => {
                let diff = *warehouse as i128 - *clevertap as i128;
                write!(
                    f,
                    "count mismatch: warehouse {warehouse}, CleverTap {clevertap} ({diff:+}, {:+.2} %)",
                    percent(diff, *clevertap)
                )
            }
            DayStatus::NoExport { clevertap } => {
                write!(
                    f,
                    "no export: CleverTap counts {clevertap}, nothing arrived"
                )
            }
            other => f.write_str(other.as_str()),
        }
    }
}

fn percent(diff: i128, of: u64) -> f64 {
    if of == 0 {
        return if diff == 0 { 0.0 } else { 100.0 };
    }
    diff as f64 * 100.0 / of as f64
}

/// Judges `day` at `now`. In order: a day not over is late; a missing chunk is named; a day with
/// neither export chunks nor API rows is late until its export is due, then "no export" when
/// CleverTap counts events; without a count nothing can be proven; otherwise the rows are
/// compared with the count (a difference before the export is due is still late).
pub fn judge(
    day: Date,
    tz: &TimeZone,
    now: Timestamp,
    chunks: &DayChunks,
    figures: &DayFigures,
    policy: &Policy,
) -> DayStatus {
    let Some(day_end) = day.tomorrow().ok().and_then(|d| {
        tz.to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
            .ok()
    }) else {
        return DayStatus::Late;
    };
    if now < day_end {
        return DayStatus::Late;
    }
    let due = day_end
        .checked_add(policy.export_grace)
        .map_or(true, |due| now >= due);
    let missing = chunks.missing();
    if !missing.is_empty() {
        return DayStatus::MissingChunk(missing);
    }
    let Some(count) = figures.clevertap_count else {
        return if chunks.is_empty() && figures.rows() == 0 && !due {
            DayStatus::Late
        } else {
            DayStatus::NoCount
        };
    };
    let rows = figures.rows();
    if chunks.is_empty() && rows == 0 && count > 0 {
        return if due {
            DayStatus::NoExport { clevertap: count }
        } else {
            DayStatus::Late
        };
    }
    let diff = rows.abs_diff(count) as f64;
    if diff <= policy.tolerance * count as f64 {
        DayStatus::Complete
    } else if !due {
        DayStatus::Late
    } else {
        DayStatus::CountMismatch {
            warehouse: rows,
            clevertap: count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::chunks::day_chunks;
    use crate::warehouse::{LedgerVersion, LoadStatus};

    fn kolkata() -> TimeZone {
        TimeZone::get("Asia/Kolkata").unwrap()
    }

    const DAY: Date = Date::constant(2022, 9, 21);

    /// `hours` after the day's end in Kolkata (2022-09-21T18:30:00Z).
    fn after_end(hours: i64) -> Timestamp {
        "2022-09-21T18:30:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_hours(hours)
    }

    fn chunks(statuses: &[(u32, LoadStatus)]) -> DayChunks {
        let versions: Vec<LedgerVersion> = statuses
            .iter()
            .map(|(i, s)| LedgerVersion {
                uri: format!("gs://b/1663664837-1663785000-Charged-20220921-{i}-0.csv.gz"),
                version: "1".into(),
                status: *s,
            })
            .collect();
        day_chunks(&versions)
            .into_values()
            .next()
            .unwrap_or_default()
    }

    fn figures(export_rows: u64, count: Option<u64>) -> DayFigures {
        DayFigures {
            export_rows,
            api_rows: 0,
            clevertap_count: count,
        }
    }

    fn judged(now: Timestamp, c: &DayChunks, f: &DayFigures) -> DayStatus {
        judge(DAY, &kolkata(), now, c, f, &Policy::default())
    }

    #[test]
    fn each_status_from_its_evidence() {
        let two = chunks(&[(0, LoadStatus::Loaded), (1, LoadStatus::Loaded)]);
        let gap = chunks(&[(0, LoadStatus::Loaded), (2, LoadStatus::Loaded)]);
        let late_day = after_end(-1);
        assert_eq!(
            judged(late_day, &two, &figures(1000, Some(1000))),
            DayStatus::Late
        );
        assert_eq!(
            judged(after_end(30), &two, &figures(1000, Some(1004))),
            DayStatus::Complete
        );
        assert_eq!(
            judged(after_end(30), &two, &figures(970, Some(1000))),
            DayStatus::CountMismatch {
                warehouse: 970,
                clevertap: 1000
            }
        );
        assert_eq!(
            judged(after_end(30), &two, &figures(970, Some(1000))).to_string(),
            "count mismatch: warehouse 970, CleverTap 1000 (-30, -3.00 %)"
        );
        let missing = judged(after_end(30), &gap, &figures(1000, Some(1000)));
        assert_eq!(missing.as_str(), "missing chunk");
        assert_eq!(
            missing.to_string(),
            "missing chunk: gs://b/1663664837-1663785000-Charged-20220921-1-0.csv.gz (never arrived)"
        );
        let none = DayChunks::default();
        assert_eq!(
            judged(after_end(30), &none, &figures(0, Some(12))),
            DayStatus::NoExport { clevertap: 12 }
        );
        assert_eq!(
            judged(after_end(2), &none, &figures(0, Some(12))),
            DayStatus::Late
        );
        assert_eq!(
            judged(after_end(30), &two, &figures(1000, None)),
            DayStatus::NoCount
        );
        assert_eq!(
            judged(after_end(30), &none, &figures(0, Some(0))),
            DayStatus::Complete
        );
    }

    #[test]
    fn a_difference_before_the_export_is_due_is_late_and_api_rows_count() {
        let two = chunks(&[(0, LoadStatus::Loaded), (1, LoadStatus::Loaded)]);
        assert_eq!(
            judged(after_end(3), &two, &figures(500, Some(1000))),
            DayStatus::Late
        );
        let pulled = DayFigures {
            export_rows: 0,
            api_rows: 1000,
            clevertap_count: Some(1000),
        };
        assert_eq!(
            judged(after_end(30), &DayChunks::default(), &pulled),
            DayStatus::Complete
        );
    }

    #[test]
    fn only_problems_need_attention() {
        assert!(!DayStatus::Complete.needs_attention());
        assert!(!DayStatus::Late.needs_attention());
        assert!(!DayStatus::NoCount.needs_attention());
        assert!(DayStatus::MissingChunk(Vec::new()).needs_attention());
        assert!(DayStatus::NoExport { clevertap: 1 }.needs_attention());
    }
}
