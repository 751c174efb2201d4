//! `pull counts`: daily event counts into `event_counts` (or profile counts into
//! `profile_counts`), one row per (event, day), replaced when the same day is counted again
//! (late data moves counts for days).

use std::time::Duration;

use jiff::civil::Date;

use super::PullError;
use crate::clevertap::ClevertapClient;
use crate::clevertap::counts::CountApi;
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
    let mut tasks = tokio::task::JoinSet::new();
    let mut index = 0usize;
    for day in days {
        for event in events {
            let (client, event, day) = (client.clone(), event.clone(), *day);
            tasks.spawn(async move {
                let count = client.count_of(api, &event, day, day, deadline).await;
                (index, event, day, count)
            });
            index += 1;
        }
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
