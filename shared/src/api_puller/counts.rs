//! `pull counts`: daily event counts into `event_counts` (or profile counts into
//! `profile_counts`), one row per (event, day), replaced when the same day is counted again
//! (late data moves counts for days).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::civil::Date;

use super::PullError;
use crate::clevertap::ClevertapClient;
use crate::clevertap::counts::CountApi;
use crate::reconcile::gather::day_windows;
use crate::reconcile::{DayReport, Request, reconcile};
use crate::time::now_utc;
use crate::warehouse::{FixedTable, Warehouse};

pub use crate::warehouse::counts_tables::{EVENT_COUNTS, PROFILE_COUNTS};

/// The table each count API fills.
pub fn count_table(api: CountApi) -> &'static FixedTable {
    match api {
        CountApi::Events => &EVENT_COUNTS,
        CountApi::Profiles => &PROFILE_COUNTS,
    }
}

/// One (event, day) count.
#[derive(Debug)]
pub struct CountReport {
    /// The event.
    pub event: String,
    /// The day.
    pub day: Date,
    /// The count, or why there is none.
    pub result: Result<u64, PullError>,
}

/// Counts every event on every day from `from` to `to` (all at once under the client's
/// limit) and writes the counts that arrived to `event_counts` (or `profile_counts`) in one
/// transaction.
pub async fn pull_event_counts(
    client: &ClevertapClient,
    api: CountApi,
    warehouse: &dyn Warehouse,
    events: &[String],
    days: &[Date],
    timezone_name: &str,
    deadline: Duration,
) -> Result<Vec<CountReport>, PullError> {
    let pairs: Vec<(String, Date)> = days
        .iter()
        .flat_map(|day| events.iter().map(move |event| (event.clone(), *day)))
        .collect();
    pull_counts_of(client, api, warehouse, &pairs, timezone_name, deadline).await
}

/// Counts each (event, day) of `pairs` (all at once under the client's limit) and writes the
/// counts that arrived in one transaction; the reports in the order of `pairs`.
pub async fn pull_counts_of(
    client: &ClevertapClient,
    api: CountApi,
    warehouse: &dyn Warehouse,
    pairs: &[(String, Date)],
    timezone_name: &str,
    deadline: Duration,
) -> Result<Vec<CountReport>, PullError> {
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (event, day)) in pairs.iter().enumerate() {
        let (client, event, day) = (client.clone(), event.clone(), *day);
        tasks.spawn(async move {
            let count = client.count_of(api, &event, day, day, deadline).await;
            (index, event, day, count)
        });
    }
    let mut reports = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(done) => reports.push(done),
            Err(e) => tracing::warn!(error = %e, "A count task stopped unexpectedly."),
        }
    }
    reports.sort_by_key(|(index, ..)| *index);
    let pulled_at = now_utc();
    let rows: Vec<Vec<Option<String>>> = reports
        .iter()
        .filter_map(|(_, event, day, count)| {
            let count = count.as_ref().ok()?;
            Some(vec![
                Some(event.clone()),
                Some(day.to_string()),
                Some(count.to_string()),
                Some(timezone_name.to_string()),
                Some(pulled_at.clone()),
            ])
        })
        .collect();
    if !rows.is_empty() {
        warehouse.replace_rows(count_table(api), &rows).await?;
    }
    Ok(reports
        .into_iter()
        .map(|(_, event, day, count)| CountReport {
            event,
            day,
            result: count.map_err(PullError::from),
        })
        .collect())
}

/// Most (event, day) counts one `--pull-counts` run asks CleverTap for: each is a request (and
/// its polls) against the account's rate limit. The days past the cap are asked by the next run.
pub const MAX_MISSING_COUNTS_PER_RUN: usize = 100;

/// The (event, day)s of a range that lack CleverTap's count, newest day first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MissingCounts {
    /// To ask now (at most the cap).
    pub asked: Vec<(String, Date)>,
    /// Left for a later run by the cap.
    pub left: usize,
}

/// The counts `reports` (one reconcile of `request`) lack: for every event the exports or the
/// warehouse know in the range, each day that is over at `request.now` and has no count in
/// `event_counts`; newest day first, then by event, at most `cap`. A day not over is never
/// asked (its count would be partial and, once stored, never asked again). An event known
/// only from file names whose name has a `-` is not asked: a file name cannot give the real
/// name back ("Order-Placed" may be "Order Placed"); its rows or a pulled count name it.
pub fn missing_counts(reports: &[DayReport], request: &Request, cap: usize) -> MissingCounts {
    let mut events: BTreeMap<&str, (&str, bool)> = BTreeMap::new();
    let mut counted: BTreeSet<(&str, Date)> = BTreeSet::new();
    for r in reports {
        let named = r.figures.rows() > 0 || r.figures.clevertap_count.is_some();
        let entry = events
            .entry(r.event_key.as_str())
            .or_insert((r.event_name.as_str(), false));
        entry.1 |= named || !r.event_key.contains('-');
        if r.figures.clevertap_count.is_some() {
            counted.insert((r.event_key.as_str(), r.day));
        }
    }
    let over: Vec<Date> = day_windows(request.first, request.last, &request.timezone)
        .unwrap_or_default()
        .into_iter()
        .filter(|w| w.end <= request.now)
        .map(|w| w.day)
        .rev()
        .collect();
    let mut missing = MissingCounts::default();
    for day in over {
        for (key, (name, askable)) in &events {
            if !askable || name.trim().is_empty() || counted.contains(&(*key, day)) {
                continue;
            }
            if missing.asked.len() < cap {
                missing.asked.push((name.to_string(), day));
            } else {
                missing.left += 1;
            }
        }
    }
    missing
}

/// What [`pull_missing_counts`] did.
#[derive(Debug)]
pub struct MissingCountsRun {
    /// Each count asked, with its result (the ones that arrived are in `event_counts`).
    pub reports: Vec<CountReport>,
    /// Counts still missing that the cap left for the next run.
    pub left: usize,
}

/// Asks CleverTap for the counts `request`'s days lack ([`missing_counts`], at most `cap`)
/// and lands those that arrive in `event_counts`, under the client's concurrency limit and
/// backoff. Days already counted are not asked again.
pub async fn pull_missing_counts(
    client: &ClevertapClient,
    warehouse: &dyn Warehouse,
    request: &Request,
    timezone_name: &str,
    cap: usize,
    deadline: Duration,
) -> Result<MissingCountsRun, PullError> {
    let reports = reconcile(warehouse, request).await?;
    let missing = missing_counts(&reports, request, cap);
    let reports = pull_counts_of(
        client,
        CountApi::Events,
        warehouse,
        &missing.asked,
        timezone_name,
        deadline,
    )
    .await?;
    Ok(MissingCountsRun {
        reports,
        left: missing.left,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::{DayFigures, DayStatus, Policy};

    fn day(d: i8) -> Date {
        Date::constant(2022, 9, d)
    }

    fn report(key: &str, name: &str, d: i8, rows: u64, count: Option<u64>) -> DayReport {
        DayReport {
            event_key: key.to_string(),
            event_name: name.to_string(),
            day: day(d),
            export_chunks: 1,
            figures: DayFigures {
                export_rows: rows,
                api_rows: 0,
                clevertap_count: count,
            },
            status: DayStatus::NoCount,
        }
    }

    fn request(now: &str) -> Request {
        Request {
            first: day(20),
            last: day(23),
            timezone: jiff::tz::TimeZone::UTC,
            now: now.parse().unwrap(),
            policy: Policy::default(),
        }
    }

    #[test]
    fn days_over_without_a_count_are_asked_newest_first_under_the_cap() {
        let reports = [
            report("Charged", "Charged", 20, 10, Some(10)),
            report("Charged", "Charged", 21, 10, None),
            report("Order-Placed", "Order Placed", 21, 5, None),
            // Known only from a file name with a `-`: its real name is unknown.
            report("App-Launched", "App-Launched", 21, 0, None),
        ];
        // The 23rd is not over at noon on the 23rd.
        let at_noon = request("2022-09-23T12:00:00Z");
        let missing = missing_counts(&reports, &at_noon, 100);
        let asked: Vec<(&str, String)> = missing
            .asked
            .iter()
            .map(|(e, d)| (e.as_str(), d.to_string()))
            .collect();
        assert_eq!(
            asked,
            [
                ("Charged", "2022-09-22".to_string()),
                ("Order Placed", "2022-09-22".to_string()),
                ("Charged", "2022-09-21".to_string()),
                ("Order Placed", "2022-09-21".to_string()),
                ("Order Placed", "2022-09-20".to_string()),
            ]
        );
        assert_eq!(missing.left, 0);
        let capped = missing_counts(&reports, &at_noon, 2);
        assert_eq!((capped.asked.len(), capped.left), (2, 3));
        assert_eq!(capped.asked[0], ("Charged".to_string(), day(22)));
        // Every day counted: nothing to ask.
        let counted: Vec<DayReport> = (20..=23)
            .map(|d| report("Charged", "Charged", d, 1, Some(1)))
            .collect();
        assert_eq!(
            missing_counts(&counted, &request("2022-09-25T00:00:00Z"), 100),
            MissingCounts::default()
        );
    }
}
