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
    // Before the warehouse: missing credentials stop the command at once.
    let counts = counts_client(&args)?;
    let warehouse = open_warehouse(&args.warehouse.warehouse, &OpenOptions::default()).await?;
    pull_missing_counts(
        counts.as_ref(),
        warehouse.as_ref(),
        &request,
        &args.timezone,
    )
    .await?;
    let reports = judge_and_alert(warehouse.as_ref(), &request).await?;
    print!("{}", render(&request, &reports, &warehouse.describe()));
    Ok(if reports.iter().any(|r| r.status.needs_attention()) {
        EXIT_INCOMPLETE
    } else {
        EXIT_OK
    })
}

/// Runs `tapline report`: the range's verdicts (not recorded), the recent ledger, unfinished
/// pulls and, with `--relay-state` or `--relay-queue`, the relay's dead letters, written as one
/// HTML page.
pub async fn report(args: ReportArgs) -> Result<u8, AnyError> {
    let request = request_of(&args.days)?;
    let counts = counts_client(&args.days)?;
    let warehouse = open_warehouse(&args.days.warehouse.warehouse, &OpenOptions::default()).await?;
    pull_missing_counts(
        counts.as_ref(),
        warehouse.as_ref(),
        &request,
        &args.days.timezone,
    )
    .await?;
    let mut input =
        tapline::reconcile::report_input::gather(warehouse.as_ref(), &request, &args.days.timezone)
            .await?;
    if let Some(dir) = &args.relay_state {
        input.relay_dead_letters = Some(relay_dead_letters(dir).await?);
    }
    if let Some(queue) = &args.relay_queue {
        input.relay_dead_letters = Some(relay_queue_letters(queue).await?);
    }
    let page = tapline::reconcile::report::render(&input);
    std::fs::write(&args.out, page.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
    println!("Wrote {}.", args.out.display());
    Ok(EXIT_OK)
}

/// The dead letters of the local relay whose state directory is `dir` (`tapline relay serve
/// --state-dir`), newest first.
#[cfg(feature = "relay")]
async fn relay_dead_letters(
    dir: &std::path::Path,
) -> Result<tapline::reconcile::report::RelayLetters, AnyError> {
    use tapline::reconcile::report::MAX_DEAD_LETTERS;
    use tapline::webhook_relay::queue::sqlite::{QUEUE_FILE, SqliteDeliveryQueue};
    let file = dir.join(QUEUE_FILE);
    if !file.is_file() {
        return Err(format!(
            "no relay queue at {}: give --relay-state the directory `tapline relay serve` uses \
             (its --state-dir)",
            file.display()
        )
        .into());
    }
    let queue = SqliteDeliveryQueue::open(dir)?;
    let (total, letters) = queue.newest_dead_letters(MAX_DEAD_LETTERS).await?;
    Ok(tapline::reconcile::relay_letters::from_local(
        total, letters,
    ))
}

/// The dead letters of the relay's SQS dead-letter queue or Pub/Sub dead-letter subscription.
#[cfg(feature = "relay")]
async fn relay_queue_letters(
    queue: &str,
) -> Result<tapline::reconcile::report::RelayLetters, AnyError> {
    use tapline::reconcile::relay_letters::{RelayQueue, from_queue};
    let queue = RelayQueue::parse(queue).map_err(|e| format!("--relay-queue: {e}"))?;
    Ok(from_queue(&queue).await?)
}

/// This build has no relay (the `relay` feature is off).
#[cfg(not(feature = "relay"))]
async fn relay_dead_letters(
    _dir: &std::path::Path,
) -> Result<tapline::reconcile::report::RelayLetters, AnyError> {
    Err("--relay-state needs the relay: this build was made without the `relay` feature".into())
}

/// This build has no relay (the `relay` feature is off).
#[cfg(not(feature = "relay"))]
async fn relay_queue_letters(
    _queue: &str,
) -> Result<tapline::reconcile::report::RelayLetters, AnyError> {
    Err("--relay-queue needs the relay: this build was made without the `relay` feature".into())
}

/// With `--pull-counts`, the CleverTap client `tapline pull` uses (the `CLEVERTAP_*`
/// variables); an error naming them when they are missing.
#[cfg(feature = "clevertap-api")]
fn counts_client(
    args: &ReconcileArgs,
) -> Result<Option<tapline::clevertap::ClevertapClient>, AnyError> {
    if !args.pull_counts {
        return Ok(None);
    }
    crate::pull_cmd::clevertap_client().map(Some).map_err(|e| {
        format!(
            "--pull-counts asks CleverTap's API: set CLEVERTAP_ACCOUNT_ID and CLEVERTAP_PASSCODE \
             (and CLEVERTAP_REGION when the project is not in eu1): {}",
            tapline::error::error_chain(e.as_ref())
        )
        .into()
    })
}

/// This build has no CleverTap client (the `clevertap-api` feature is off).
#[cfg(not(feature = "clevertap-api"))]
fn counts_client(args: &ReconcileArgs) -> Result<Option<std::convert::Infallible>, AnyError> {
    if args.pull_counts {
        return Err(
            "--pull-counts asks CleverTap's API: this build was made without the `clevertap-api` \
             feature"
                .into(),
        );
    }
    Ok(None)
}

/// Asks CleverTap for the counts the range lacks (at most
/// `MAX_MISSING_COUNTS_PER_RUN`) and says what it asked; failed counts are named and leave
/// their days without a count.
#[cfg(feature = "clevertap-api")]
async fn pull_missing_counts(
    client: Option<&tapline::clevertap::ClevertapClient>,
    warehouse: &dyn tapline::warehouse::Warehouse,
    request: &Request,
    timezone_name: &str,
) -> Result<(), AnyError> {
    use tapline::api_puller::counts::{self, MAX_MISSING_COUNTS_PER_RUN};
    let Some(client) = client else {
        return Ok(());
    };
    let run = counts::pull_missing_counts(
        client,
        warehouse,
        request,
        timezone_name,
        MAX_MISSING_COUNTS_PER_RUN,
        COUNT_DEADLINE,
    )
    .await?;
    let failed: Vec<_> = run.reports.iter().filter(|r| r.result.is_err()).collect();
    println!(
        "Asked CleverTap for {} missing count(s): {} written to event_counts, {} failed.{}",
        run.reports.len(),
        run.reports.len() - failed.len(),
        failed.len(),
        if run.left > 0 {
            format!(
                " {} more left for the next run (at most {MAX_MISSING_COUNTS_PER_RUN} per run).",
                run.left
            )
        } else {
            String::new()
        }
    );
    for r in failed {
        if let Err(e) = &r.result {
            eprintln!(
                "The count of {} on {} could not be pulled: {}",
                tapline::printable::escaped(&r.event),
                r.day,
                tapline::printable::escaped(&tapline::error::error_chain(e))
            );
        }
    }
    Ok(())
}

#[cfg(not(feature = "clevertap-api"))]
async fn pull_missing_counts(
    _client: Option<&std::convert::Infallible>,
    _warehouse: &dyn tapline::warehouse::Warehouse,
    _request: &Request,
    _timezone_name: &str,
) -> Result<(), AnyError> {
    Ok(())
}

/// How long one count may stay `partial` (CleverTap computes large counts for a while).
#[cfg(feature = "clevertap-api")]
const COUNT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

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
