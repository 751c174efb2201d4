//! `tapline pull`: CleverTap's REST API into the warehouse, with checkpoints.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
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
use tapline::clevertap::messages::MESSAGE_CHANNELS;
use tapline::clevertap::{ApiConfig, ClevertapClient};
use tapline::config::{ConfigError, ENV_TIMEZONE};
use tapline::error::error_chain;
use tapline::printable::escaped;
use tapline::warehouse;

use crate::cli::{EXIT_NOT_ALL_LOADED, EXIT_OK, EXIT_USAGE, WarehouseArg, parse_date};
use crate::commands::AnyError;
use crate::summary;

#[derive(Debug, Args)]
#[command(after_help = PULL_ENVIRONMENT)]
pub struct PullArgs {
    #[command(subcommand)]
    pub what: PullCommand,
}

/// The environment every `pull` reads (`tapline::clevertap::config::ENV_*`), for the help text.
const PULL_ENVIRONMENT: &str = "Environment:\n  \
     CLEVERTAP_ACCOUNT_ID   the account (project) id (required)\n  \
     CLEVERTAP_PASSCODE     the account passcode (required; never logged)\n  \
     CLEVERTAP_REGION       eu1 (default), in1, sg1, us1, aps3, mec1 or sk1\n  \
     CLEVERTAP_API_URL      a base URL that replaces the regional host (proxies, tests)\n  \
     CLEVERTAP_CONCURRENCY  concurrent requests for the account (default 3)\n  \
     CLEVERTAP_BACKOFF_MS   first backoff after a throttle, in ms (default 1000)";

#[derive(Debug, Subcommand)]
pub enum PullCommand {
    /// Events through the cursor API into the per-event tables exports fill, one (event, day)
    /// slice at a time, checkpointed after every page.
    #[command(after_help = "Examples:\n  \
        tapline pull events --event Charged --from 2022-09-01 --to 2022-09-21\n  \
        tapline pull events --event Charged --event \"App Launched\" --from 2022-09-01 \
        --to 2022-09-01 --timezone Asia/Kolkata --warehouse postgres://loader@db/analytics\n  \
        tapline pull events --event Charged --from 2022-09-01 --to 2022-09-21 \
        --output jsonl --output-dir s3://acme-clevertap/api-pulls/\n\n\
        A day pulled again replaces that event's rows for the day. A run that stops (killed, \
        timed out, CleverTap unavailable) leaves a checkpoint in _tapline_state: the next run \
        resumes at the page where it stopped and says so.\n\n\
        Exit codes: 0 every slice pulled; 2 some slice stopped (run again to resume); \
        1 nothing could start; 64 usage.")]
    Events(PullEventsArgs),
    /// Daily event counts (Get Event Count, polled while partial) into `event_counts`, one row
    /// per (event, day), replaced when counted again.
    #[command(after_help = "Examples:\n  \
        tapline pull counts --event Charged --event \"App Launched\" --from 2022-09-01 --to 2022-09-21\n\n\
        Exit codes: 0 every count written; 2 some count failed or stayed partial past the \
        deadline; 1 nothing could start; 64 usage.")]
    Counts(PullCountsArgs),
    /// Campaigns (targets) of a date range into `campaigns` (windows of at most 31 days asked
    /// of CleverTap), and each one's report into `campaign_reports`.
    #[command(after_help = "Examples:\n  \
        tapline pull campaigns --from 2022-08-01 --to 2022-09-21\n\n\
        A campaign that has not completed has no report yet: it is listed as not ready (not a \
        failure) and asked again on the next run.\n\n\
        Exit codes: 0 campaigns and every ready report written; 2 some report could not be read; \
        1 nothing could start (or the campaign list failed); 64 usage.")]
    Campaigns(DayRange),
    /// The profiles that did an event in a window (Get Profiles), merged by identity into
    /// `profiles`: a profile pulled again replaces its row. Checkpointed after every page.
    #[command(after_help = "Examples:\n  \
        tapline pull profiles --event Charged --from 2022-09-01 --to 2022-09-21\n\n\
        A run that stops (killed, timed out, CleverTap unavailable) leaves a checkpoint in \
        _tapline_state for the event and window: the same command resumes at the page where it \
        stopped and says so (`tapline status` lists unfinished pulls).\n\n\
        Exit codes: 0 every event's profiles merged; 2 some event stopped (run again to \
        resume); 1 nothing could start; 64 usage.")]
    Profiles(PullProfilesArgs),
    /// Message reports (Get Message Reports: what CleverTap sent, with sent / viewed / clicked)
    /// into `message_reports`, one row per (message, day), replaced when pulled again.
    #[command(after_help = "Examples:\n  \
        tapline pull messages --from 2022-09-01 --to 2022-09-21\n  \
        tapline pull messages --from 2022-09-21 --to 2022-09-21 --channel push --channel email\n\n\
        Each day is asked on its own. A day whose report CleverTap has not computed yet is \
        listed as not ready (not a failure) and asked again on the next run.\n\n\
        Exit codes: 0 every ready day written; 2 some day could not be read; 1 nothing could \
        start; 64 usage.")]
    Messages(PullMessagesArgs),
}

#[derive(Debug, Args)]
pub struct PullMessagesArgs {
    #[command(flatten)]
    pub days: DayRange,

    /// Only these channels (repeat): push, email, sms, browser, audiences, inapp, webhooks,
    /// web_pop_up, web_exit_intent, web_native_display, web_inbox. Default: all.
    #[arg(long = "channel", value_name = "CHANNEL", value_parser = clap::builder::PossibleValuesParser::new(MESSAGE_CHANNELS))]
    pub channels: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PullCountsArgs {
    #[command(flatten)]
    pub range: EventDays,

    /// Count profiles that did the event (Get Profile Count) into `profile_counts`, instead of
    /// occurrences into `event_counts`.
    #[arg(long)]
    pub profiles: bool,

    /// Give up on a count still `partial` after this many seconds.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub deadline_seconds: u64,
}

#[derive(Debug, Args)]
pub struct PullProfilesArgs {
    #[command(flatten)]
    pub range: EventDays,

    /// Profiles per page asked of CleverTap: a multiple of 23, at most 4991.
    #[arg(long, default_value_t = PROFILES_BATCH_SIZE, value_name = "N")]
    pub batch_size: u32,
}

/// The events and days `pull events` and `pull counts` take.
#[derive(Debug, Args)]
pub struct EventDays {
    /// An event name as CleverTap shows it (repeat for several; they are pulled concurrently).
    #[arg(long = "event", required = true, value_name = "NAME")]
    pub events: Vec<String>,

    #[command(flatten)]
    pub days: DayRange,
}

/// The days, warehouse and time zone every `pull` subcommand takes.
#[derive(Debug, Args)]
pub struct DayRange {
    /// First day, in the project's time zone.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    pub from: jiff::civil::Date,

    /// Last day (inclusive).
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    pub to: jiff::civil::Date,

    #[command(flatten)]
    pub warehouse: WarehouseArg,

    /// Your CleverTap project's time zone: CleverTap's days and `ts` values are in it.
    #[arg(long, env = ENV_TIMEZONE, default_value = "UTC", value_name = "IANA")]
    pub timezone: String,
}

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

async fn setup(range: &DayRange) -> Result<Setup, AnyError> {
    let timezone = jiff::tz::TimeZone::get(&range.timezone).map_err(|_| ConfigError::TimeZone {
        name: range.timezone.clone(),
    })?;
    let client = ClevertapClient::new(ApiConfig::from_env()?)?;
    let warehouse: Arc<dyn warehouse::Warehouse> =
        Arc::from(crate::warehouse_url::open_warehouse(&range.warehouse.warehouse).await?);
    Ok(Setup {
        client,
        warehouse,
        timezone,
    })
}

#[derive(Debug, Args)]
pub struct PullEventsArgs {
    #[command(flatten)]
    pub range: EventDays,

    /// Records per page asked of CleverTap (at most 5000).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub batch_size: u32,

    /// Also write each event's day to a file in --output-dir, like CleverTap's downloader but
    /// lossless: `jsonl` keeps every record as the API returned it; `csv` flattens them the
    /// way exports are read (`profile.identity`, `eventProps.Amount`). A file appears whole
    /// when its day is complete; a day pulled again replaces it.
    #[arg(long, value_enum, requires = "output_dir")]
    pub output: Option<OutputArg>,

    /// Where --output files go: a folder (FOLDER/EVENT/YYYY-MM-DD.jsonl or .csv), or a bucket
    /// prefix, `s3://BUCKET/PREFIX` (the usual AWS credentials; AWS_ENDPOINT_URL for
    /// S3-compatible stores) or `gs://BUCKET/PREFIX` (Application Default Credentials;
    /// STORAGE_EMULATOR_HOST for an emulator). For a bucket, pages are staged under
    /// $TMPDIR/tapline-output-UID/ (a folder of yours alone, mode 0700; anything else there is
    /// refused) and each day's file is uploaded once complete: the bucket never holds a partial
    /// file, and a killed pull resumes from the staged pages. Files are created mode 0600.
    #[arg(long, value_name = "FOLDER|s3://…|gs://…", requires = "output")]
    pub output_dir: Option<String>,
}

/// `--output` formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OutputArg {
    /// One JSON record per line, exactly as the API returned it.
    Jsonl,
    /// Flattened columns with a header row.
    Csv,
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
    let range = &args.range;
    let Setup {
        client,
        warehouse,
        timezone,
    } = setup(&range.days).await?;
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
    } = setup(&range.days).await?;
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
    } = setup(&range).await?;
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
    let range = &args.range;
    let Setup {
        client, warehouse, ..
    } = setup(&range.days).await?;
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
                    "{event}: {} pages, {} profiles merged, {} without identity (not stored).",
                    r.pages, r.merged, r.without_identity
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
    } = setup(&args.days).await?;
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

/// Exit code of `tapline alerts` when some rule breached.
const EXIT_BREACHED: u8 = 3;

#[derive(Debug, Args)]
pub struct AlertsArgs {
    /// The rules: a JSON file (see the examples); the scheduled puller takes the same JSON in
    /// TAPLINE_ALERT_RULES.
    #[arg(long, value_name = "FILE")]
    pub rules: std::path::PathBuf,

    /// The day to check; default yesterday in --timezone.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    pub day: Option<jiff::civil::Date>,

    #[command(flatten)]
    pub warehouse: WarehouseArg,

    /// Your CleverTap project's time zone (decides "yesterday").
    #[arg(long, env = ENV_TIMEZONE, default_value = "UTC", value_name = "IANA")]
    pub timezone: String,
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
    let warehouse = crate::warehouse_url::open_warehouse(&args.warehouse.warehouse).await?;
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
