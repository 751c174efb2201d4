//! `tapline reconcile`: per event and day, is the warehouse complete? Judged by
//! `tapline::reconcile`, written to `_tapline_completeness`, printed as a table.

use jiff::{SignedDuration, Timestamp};
use tapline::config::ConfigError;
use tapline::reconcile::{DayReport, DayStatus, Policy, Request};
use tapline::warehouse::open::OpenOptions;

use crate::AnyError;
use crate::cli::{EXIT_INCOMPLETE, EXIT_OK, ReconcileArgs, ReportArgs};
use crate::summary;
use crate::warehouse_url::open_warehouse;

/// The days, zone and policy the flags give.
fn request_of(args: &ReconcileArgs) -> Result<Request, AnyError> {
    let timezone = jiff::tz::TimeZone::get(&args.timezone).map_err(|_| ConfigError::TimeZone {
        name: args.timezone.clone(),
    })?;
    let policy = Policy {
        tolerance: args.tolerance / 100.0,
        export_grace: SignedDuration::from_hours(i64::from(args.grace)),
    };
    let now = Timestamp::now();
    Ok(match (args.from, args.to) {
        (Some(first), Some(last)) => Request {
            first,
            last,
            timezone,
            now,
            policy,
        },
        _ => Request::last_days(args.days, timezone, now, policy),
    })
}

/// Runs `tapline reconcile`; exit 3 when some day needs attention.
pub async fn run(args: ReconcileArgs) -> Result<u8, AnyError> {
    let request = request_of(&args)?;
    let warehouse = open_warehouse(&args.warehouse.warehouse, &OpenOptions::default()).await?;
    let reports = judge_and_alert(warehouse.as_ref(), &request).await?;
    print!("{}", render(&request, &reports, &warehouse.describe()));
    Ok(if reports.iter().any(|r| r.status.needs_attention()) {
        EXIT_INCOMPLETE
    } else {
        EXIT_OK
    })
}

/// Runs `tapline report`: the range's verdicts (not recorded), the recent ledger, unfinished
/// pulls, written as one HTML page.
pub async fn report(args: ReportArgs) -> Result<u8, AnyError> {
    let request = request_of(&args.days)?;
    let warehouse = open_warehouse(&args.days.warehouse.warehouse, &OpenOptions::default()).await?;
    let days = tapline::reconcile::reconcile(warehouse.as_ref(), &request).await?;
    let loads = warehouse.recent_loads(500).await?;
    let freshness = tapline::export_loader::freshness::per_day(
        warehouse.as_ref(),
        request.first,
        request.last,
        &request.timezone,
    )
    .await?;
    #[cfg(feature = "clevertap-api")]
    let unfinished_pulls = tapline::api_puller::checkpoint::unfinished(warehouse.as_ref())
        .await?
        .iter()
        .map(|c| {
            format!(
                "{} {} {}: {} pages, {} rows so far (last written {})",
                c.kind, c.event, c.window, c.checkpoint.pages, c.checkpoint.rows, c.updated_at
            )
        })
        .collect();
    #[cfg(not(feature = "clevertap-api"))]
    let unfinished_pulls = Vec::new();
    let page = tapline::reconcile::report::render(&tapline::reconcile::report::ReportInput {
        target: warehouse.describe(),
        timezone: args.days.timezone.clone(),
        first: request.first,
        last: request.last,
        made_at: tapline::time::now_utc(),
        days,
        loads,
        unfinished_pulls,
        freshness,
    });
    std::fs::write(&args.out, page.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
    println!("Wrote {}.", args.out.display());
    Ok(EXIT_OK)
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
