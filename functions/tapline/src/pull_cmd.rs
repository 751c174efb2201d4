//! `tapline pull …`: CleverTap's REST API into the warehouse, with checkpoints; `tapline alerts`:
//! count rules over what was pulled.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tapline::api_puller::alert_notifiers::alert_notifier_from_env;
use tapline::api_puller::alerts::{AlertStatus, parse_rules, run_alerts};
use tapline::api_puller::campaigns::pull_campaigns;
use tapline::api_puller::counts::{count_table, pull_event_counts};
use tapline::api_puller::days;
use tapline::api_puller::events::{EventsPull, SliceReport, pull_events};
use tapline::api_puller::messages::pull_message_reports;
use tapline::api_puller::output::{BucketOutput, FileOutput, OutputFormat, staging_dir};
use tapline::api_puller::profiles::{
    PROFILES_BATCH_SIZE, pull_profiles, valid_profiles_batch_size,
};
use tapline::clevertap::counts::CountApi;
use tapline::clevertap::{ApiConfig, ClevertapClient};
use tapline::config::ConfigError;
use tapline::error::error_chain;
use tapline::printable::escaped;
use tapline::warehouse;
use tapline::warehouse::open::OpenOptions;

use crate::AnyError;
use crate::cli::pull::{
    AlertsArgs, DayRange, EventDays, OutputArg, PullArgs, PullCommand, PullCountsArgs,
    PullEventsArgs, PullMessagesArgs, PullProfilesArgs,
};
use crate::cli::{EXIT_BREACHED, EXIT_NOT_ALL_LOADED, EXIT_OK, EXIT_USAGE};
use crate::summary;

impl DayRange {
    /// The usage error, when the range cannot be pulled.
    fn usage_error(&self) -> Option<String> {
        (self.from > self.to).then(|| {
            format!(
                "--from {} is after --to {}: nothing to pull",
                self.from, self.to
            )
        })
    }
}

impl EventDays {
    /// The usage error, when the range or an event name cannot be pulled.
    fn usage_error(&self) -> Option<String> {
        self.days.usage_error().or_else(|| {
            self.events
                .iter()
                .find(|e| e.trim().is_empty())
                .map(|blank| format!("--event {blank:?} is empty: name a CleverTap event"))
        })
    }
}

/// What every pull starts from: the client, the warehouse and the time zone.
struct Setup {
    client: ClevertapClient,
    warehouse: Arc<dyn warehouse::Warehouse>,
    timezone: jiff::tz::TimeZone,
}

/// The CleverTap client the `CLEVERTAP_*` variables describe (every command that asks the API:
/// `tapline pull`, `tapline reconcile --pull-counts`).
pub fn clevertap_client() -> Result<ClevertapClient, AnyError> {
    Ok(ClevertapClient::new(ApiConfig::from_env()?)?)
}

/// `options`: what the warehouse is opened with (the column types of a pull that loads events).
async fn setup(range: &DayRange, options: &OpenOptions) -> Result<Setup, AnyError> {
    let timezone = jiff::tz::TimeZone::get(&range.timezone).map_err(|_| ConfigError::TimeZone {
        name: range.timezone.clone(),
    })?;
    let client = clevertap_client()?;
    let warehouse: Arc<dyn warehouse::Warehouse> =
        Arc::from(crate::warehouse_url::open_warehouse(&range.warehouse.warehouse, options).await?);
    Ok(Setup {
        client,
        warehouse,
        timezone,
    })
}

/// Runs `tapline pull …`; returns the exit code.
pub async fn run(args: PullArgs) -> Result<u8, AnyError> {
    let usage = match &args.what {
        PullCommand::Events(a) => a.range.usage_error(),
        PullCommand::Counts(a) => a.range.usage_error(),
        PullCommand::Campaigns(range) => range.usage_error(),
        PullCommand::Messages(a) => a.days.usage_error(),
        PullCommand::Profiles(a) => a.range.usage_error().or_else(|| {
            (!valid_profiles_batch_size(a.batch_size)).then(|| {
                format!(
                    "--batch-size {} is not a multiple of 23 from 23 to {PROFILES_BATCH_SIZE} (Get Profiles requires it)",
                    a.batch_size
                )
            })
        }),
    };
    if let Some(error) = usage {
        eprintln!("error: {error}");
        return Ok(EXIT_USAGE);
    }
    match args.what {
        PullCommand::Events(args) => events(args).await,
        PullCommand::Counts(args) => counts(args).await,
        PullCommand::Campaigns(args) => campaigns(args).await,
        PullCommand::Profiles(args) => profiles(args).await,
        PullCommand::Messages(args) => messages(args).await,
    }
}

async fn events(args: PullEventsArgs) -> Result<u8, AnyError> {
    let options = args.column_types.open_options()?;
    let range = &args.range;
    let Setup {
        client,
        warehouse,
        timezone,
    } = setup(&range.days, &options).await?;
    let mut request = EventsPull::new(
        range.events.clone(),
        range.days.from,
        range.days.to,
        timezone,
    );
    request.batch_size = args.batch_size;
    if let (Some(format), Some(dir)) = (args.output, args.output_dir.clone()) {
        let format = match format {
            OutputArg::Jsonl => OutputFormat::Jsonl,
            OutputArg::Csv => OutputFormat::Csv,
        };
        request.output = Some(if dir.starts_with("s3://") || dir.starts_with("gs://") {
            let prefix = dir.trim_end_matches('/').to_string();
            if prefix
                .split_once("://")
                .is_none_or(|(_, bucket)| bucket.is_empty())
            {
                eprintln!("error: --output-dir {dir}: name a bucket (s3://BUCKET/PREFIX)");
                return Ok(EXIT_USAGE);
            }
            FileOutput {
                dir: staging_dir(&std::env::temp_dir(), &prefix)?,
                format,
                bucket: Some(BucketOutput {
                    sink: tapline::storage::sink_for(&prefix).await?,
                    prefix,
                }),
            }
        } else if dir.contains("://") {
            eprintln!(
                "error: --output-dir {dir}: use a local folder, s3://BUCKET/PREFIX or gs://BUCKET/PREFIX"
            );
            return Ok(EXIT_USAGE);
        } else {
            FileOutput {
                dir: dir.into(),
                format,
                bucket: None,
            }
        });
    }
    let parallel = client.config().concurrency * 2;

    let started = Instant::now();
    let reports = pull_events(&client, warehouse.clone(), &request, parallel).await;
    print!(
        "{}",
        render(
            &reports,
            &client.config().account_id,
            &warehouse.describe(),
            started
        )
    );
    Ok(exit_code(reports.iter().all(|r| r.result.is_ok())))
}

async fn counts(args: PullCountsArgs) -> Result<u8, AnyError> {
    let range = &args.range;
    let Setup {
        client, warehouse, ..
    } = setup(&range.days, &OpenOptions::default()).await?;
    let api = if args.profiles {
        CountApi::Profiles
    } else {
        CountApi::Events
    };
    let reports = pull_event_counts(
        &client,
        api,
        warehouse.as_ref(),
        &range.events,
        &days(range.days.from, range.days.to),
        &range.days.timezone,
        Duration::from_secs(args.deadline_seconds),
    )
    .await?;
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let (count, result) = match &r.result {
                Ok(n) => (summary::thousands(*n), "written".to_string()),
                Err(e) => ("-".to_string(), format!("failed: {}", error_chain(e))),
            };
            vec![r.event.clone(), r.day.to_string(), count, result]
        })
        .collect();
    println!(
        "CleverTap account {} into {} ({})\n",
        client.config().account_id,
        warehouse.describe(),
        count_table(api).name
    );
    print!(
        "{}",
        summary::table(&["event", "day", "count", "result"], &rows)
    );
    Ok(exit_code(reports.iter().all(|r| r.result.is_ok())))
}

async fn campaigns(range: DayRange) -> Result<u8, AnyError> {
    let Setup {
        client, warehouse, ..
    } = setup(&range, &OpenOptions::default()).await?;
    let report = pull_campaigns(&client, warehouse.as_ref(), range.from, range.to).await?;
    println!(
        "CleverTap account {} into {}\n",
        client.config().account_id,
        warehouse.describe()
    );
    println!(
        "{} campaigns written to campaigns, {} reports to campaign_reports, {} not ready yet, {} failed.",
        report.campaigns,
        report.reports_ready,
        report.not_ready.len(),
        report.failed.len()
    );
    for (id, why) in &report.not_ready {
        println!("  campaign {}: not ready ({})", escaped(id), escaped(why));
    }
    for (id, error) in &report.failed {
        println!(
            "  campaign {}: failed: {}",
            escaped(id),
            escaped(&error_chain(error))
        );
    }
    Ok(exit_code(report.failed.is_empty()))
}

async fn profiles(args: PullProfilesArgs) -> Result<u8, AnyError> {
    let options = args.column_types.open_options()?;
    let range = &args.range;
    let Setup {
        client, warehouse, ..
    } = setup(&range.days, &options).await?;
    println!(
        "CleverTap account {} into {} (profiles)\n",
        client.config().account_id,
        warehouse.describe()
    );
    let mut all_ok = true;
    for event in &range.events {
        match pull_profiles(
            &client,
            warehouse.as_ref(),
            event,
            range.days.from,
            range.days.to,
            args.batch_size,
        )
        .await
        {
            Ok(r) => {
                if let Some(page) = r.resumed_at_page {
                    println!("{event}: resumed from its checkpoint at page {page}.");
                }
                if r.restarted {
                    println!(
                        "{event}: CleverTap refused the checkpoint's cursor (expired?): the window was pulled again from its first page."
                    );
                }
                println!(
                    "{event}: {} pages, {} profile snapshots loaded, {} rejected (see _tapline_rejects).",
                    r.pages, r.rows, r.rejected
                );
            }
            Err(e) => {
                all_ok = false;
                println!(
                    "{event}: stopped: {} (run the same command again to resume)",
                    escaped(&error_chain(&e))
                );
            }
        }
    }
    Ok(exit_code(all_ok))
}

async fn messages(args: PullMessagesArgs) -> Result<u8, AnyError> {
    let Setup {
        client, warehouse, ..
    } = setup(&args.days, &OpenOptions::default()).await?;
    let report = pull_message_reports(
        &client,
        warehouse.as_ref(),
        args.days.from,
        args.days.to,
        &args.channels,
    )
    .await;
    println!(
        "CleverTap account {} into {} (message_reports)\n",
        client.config().account_id,
        warehouse.describe()
    );
    println!(
        "{} days written ({} rows), {} not ready yet, {} failed.",
        report.days_ready,
        report.rows,
        report.not_ready.len(),
        report.failed.len()
    );
    if report.without_id > 0 {
        println!(
            "{} messages without an id were counted, not stored.",
            report.without_id
        );
    }
    for (day, why) in &report.not_ready {
        println!("  {day}: not ready ({})", escaped(why));
    }
    for (day, error) in &report.failed {
        println!("  {day}: failed: {}", escaped(&error_chain(error)));
    }
    Ok(exit_code(report.failed.is_empty()))
}

fn exit_code(all_ok: bool) -> u8 {
    if all_ok { EXIT_OK } else { EXIT_NOT_ALL_LOADED }
}

fn render(reports: &[SliceReport], account: &str, warehouse: &str, started: Instant) -> String {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let result = match &r.result {
                Ok(()) => "pulled".to_string(),
                Err(e) => format!("stopped: {}", error_chain(e)),
            };
            let resumed = r
                .resumed_at_page
                .map(|p| format!("page {p}"))
                .unwrap_or_else(|| "-".to_string());
            vec![
                r.event.clone(),
                r.day.to_string(),
                r.pages.to_string(),
                summary::thousands(r.rows),
                summary::thousands(r.rejected),
                resumed,
                result,
            ]
        })
        .collect();
    let mut out = format!("CleverTap account {account} into {warehouse}\n\n");
    out.push_str(&summary::table(
        &[
            "event", "day", "pages", "rows", "rejected", "resumed", "result",
        ],
        &rows,
    ));
    for r in reports {
        if let Some(page) = r.resumed_at_page {
            out.push_str(&format!(
                "Resumed {} {} from its checkpoint at page {page}.\n",
                r.event, r.day
            ));
        }
        if r.output_parts_missing {
            out.push_str(&format!(
                "The --output parts of the interrupted pull of {} {} were missing: the day was pulled again from its first page.\n",
                r.event, r.day
            ));
        }
        if r.restarted {
            out.push_str(&format!(
                "CleverTap refused the checkpoint's cursor of {} {} (expired?): the day was pulled again from its first page.\n",
                r.event, r.day
            ));
        }
    }
    let failed = reports.iter().filter(|r| r.result.is_err()).count();
    let rows: u64 = reports.iter().map(|r| r.rows).sum();
    out.push_str(&format!(
        "\n{} of {} slices pulled, {} rows, in {:.1} s.",
        reports.len() - failed,
        reports.len(),
        summary::thousands(rows),
        started.elapsed().as_secs_f64()
    ));
    if failed > 0 {
        out.push_str(" Run the same command again to resume the stopped slices.");
    }
    out.push('\n');
    out
}

/// `tapline alerts`: checks the rules for a day; returns the exit code.
pub async fn alerts(args: AlertsArgs) -> Result<u8, AnyError> {
    let text = std::fs::read_to_string(&args.rules)
        .map_err(|e| format!("cannot read {}: {e}", args.rules.display()))?;
    let rules = parse_rules(&text)
        .map_err(|e| format!("{} is not a list of rules: {e}", args.rules.display()))?;
    let timezone = jiff::tz::TimeZone::get(&args.timezone).map_err(|_| ConfigError::TimeZone {
        name: args.timezone.clone(),
    })?;
    let day = match args.day {
        Some(day) => day,
        None => {
            let today = timezone.to_datetime(jiff::Timestamp::now()).date();
            today.yesterday()?
        }
    };
    let notifier = alert_notifier_from_env().await?;
    let warehouse =
        crate::warehouse_url::open_warehouse(&args.warehouse.warehouse, &OpenOptions::default())
            .await?;
    let (results, failures) =
        run_alerts(warehouse.as_ref(), &rules, day, notifier.as_deref()).await?;
    for r in &results {
        let status = match r.status {
            AlertStatus::Ok => "ok",
            AlertStatus::Breached => "BREACHED",
            AlertStatus::NoData => "no data",
        };
        println!("{status:<8} {}", escaped(&r.message));
    }
    for f in &failures {
        eprintln!(
            "error: alert {}: {}",
            escaped(&f.rule),
            escaped(&error_chain(&f.error))
        );
    }
    Ok(if !failures.is_empty() {
        EXIT_NOT_ALL_LOADED
    } else if results.iter().any(|r| r.status == AlertStatus::Breached) {
        EXIT_BREACHED
    } else {
        EXIT_OK
    })
}
