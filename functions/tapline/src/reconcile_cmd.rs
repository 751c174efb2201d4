//! `tapline reconcile`: per event and day, is the warehouse complete? Judged by
//! `tapline::reconcile`, written to `_tapline_completeness`, printed as a table.

use jiff::{SignedDuration, Timestamp};
use tapline::config::ConfigError;
use tapline::reconcile::{DayReport, DayStatus, Policy, Request};

use crate::AnyError;
use crate::cli::{EXIT_INCOMPLETE, EXIT_OK, ReconcileArgs};
use crate::summary;
use crate::warehouse_url::open_warehouse;

/// Runs `tapline reconcile`; exit 3 when some day needs attention.
pub async fn run(args: ReconcileArgs) -> Result<u8, AnyError> {
    let timezone = jiff::tz::TimeZone::get(&args.timezone).map_err(|_| ConfigError::TimeZone {
        name: args.timezone.clone(),
    })?;
    let policy = Policy {
        tolerance: args.tolerance / 100.0,
        export_grace: SignedDuration::from_hours(i64::from(args.grace)),
    };
    let now = Timestamp::now();
    let request = match (args.from, args.to) {
        (Some(first), Some(last)) => Request {
            first,
            last,
            timezone,
            now,
            policy,
        },
        _ => Request::last_days(args.days, timezone, now, policy),
    };
    let warehouse = open_warehouse(&args.warehouse.warehouse).await?;
    let reports = judge_and_alert(warehouse.as_ref(), &request).await?;
    print!("{}", render(&request, &reports, &warehouse.describe()));
    Ok(if reports.iter().any(|r| r.status.needs_attention()) {
        EXIT_INCOMPLETE
    } else {
        EXIT_OK
    })
}

/// Reconciles and records; with the API features, days that need attention go to the alerts
/// path `tapline alerts` uses (`TAPLINE_ALERTS_SLACK_URL` or the relay's), once per status.
#[cfg(feature = "clevertap-api")]
async fn judge_and_alert(
    warehouse: &dyn tapline::warehouse::Warehouse,
    request: &Request,
) -> Result<Vec<DayReport>, AnyError> {
    use tapline::api_puller::{alert_notifiers, completeness};
    let notifier =
        alert_notifiers::alert_notifier_from_lookup(|name| std::env::var(name).ok()).await?;
    let run = completeness::reconcile_and_alert(warehouse, request, notifier.as_deref()).await?;
    if run.alerted > 0 {
        eprintln!("{} completeness alert(s) posted.", run.alerted);
    }
    for (event, day, error) in &run.failures {
        eprintln!(
            "The completeness alert for {event} on {day} could not be posted: {}",
            tapline::error::error_chain(error)
        );
    }
    Ok(run.reports)
}

/// Reconciles and records (this build has no alerts path: the `clevertap-api` feature is off).
#[cfg(not(feature = "clevertap-api"))]
async fn judge_and_alert(
    warehouse: &dyn tapline::warehouse::Warehouse,
    request: &Request,
) -> Result<Vec<DayReport>, AnyError> {
    Ok(tapline::reconcile::reconcile_and_record(warehouse, request).await?)
}

/// The table and a closing line per status.
fn render(request: &Request, reports: &[DayReport], target: &str) -> String {
    let mut out = format!(
        "Completeness of {} to {} ({}) in {target}:\n\n",
        request.first,
        request.last,
        request.timezone.iana_name().unwrap_or("the given zone"),
    );
    if reports.is_empty() {
        out.push_str(
            "Nothing to reconcile: no export chunk, row or CleverTap count in these days.\n",
        );
        return out;
    }
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let detail = match &r.status {
                DayStatus::Complete | DayStatus::Late | DayStatus::NoCount => String::new(),
                // The status has its own column.
                other => {
                    let text = other.to_string();
                    let prefix = format!("{}: ", other.as_str());
                    text.strip_prefix(&prefix).unwrap_or(&text).to_string()
                }
            };
            vec![
                r.event_name.clone(),
                r.day.to_string(),
                r.status.as_str().to_string(),
                r.export_chunks.to_string(),
                r.figures.export_rows.to_string(),
                r.figures.api_rows.to_string(),
                r.figures
                    .clevertap_count
                    .map_or_else(|| "-".to_string(), |c| c.to_string()),
                detail,
            ]
        })
        .collect();
    out.push_str(&summary::table(
        &[
            "Event",
            "Day",
            "Status",
            "Chunks",
            "Export rows",
            "API rows",
            "CleverTap",
            "Detail",
        ],
        &rows,
    ));
    let attention = reports
        .iter()
        .filter(|r| r.status.needs_attention())
        .count();
    out.push_str(&format!(
        "\n{} (event, day) checked: {} complete, {} late, {attention} need attention.\n",
        reports.len(),
        reports
            .iter()
            .filter(|r| r.status == DayStatus::Complete)
            .count(),
        reports
            .iter()
            .filter(|r| r.status == DayStatus::Late)
            .count(),
    ));
    out
}
