//! `tapline pull …` and `tapline alerts`: flags and help text.

use clap::{Args, Subcommand};
use tapline::api_puller::profiles::PROFILES_BATCH_SIZE;
use tapline::clevertap::messages::MESSAGE_CHANNELS;
use tapline::config::ENV_TIMEZONE;

use super::{ColumnTypesArg, WarehouseArg, parse_date};

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
    /// The profiles that did an event in a window (Get Profiles), as snapshot rows in
    /// `profile_snapshots` (`ts` = the pull's start): the window pulled again replaces its
    /// snapshot. Each page commits with its checkpoint.
    #[command(after_help = "Examples:\n  \
        tapline pull profiles --event Charged --from 2022-09-01 --to 2022-09-21\n\n\
        A run that stops (killed, timed out, CleverTap unavailable) leaves a checkpoint in \
        _tapline_state for the event and window: the same command resumes at the page where it \
        stopped and says so (`tapline status` lists unfinished pulls).\n\n\
        Exit codes: 0 every event's profiles loaded; 2 some event stopped (run again to \
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

    #[command(flatten)]
    pub column_types: ColumnTypesArg,
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

#[derive(Debug, Args)]
pub struct PullEventsArgs {
    #[command(flatten)]
    pub range: EventDays,

    /// Records per page asked of CleverTap (at most 5000).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub batch_size: u32,

    #[command(flatten)]
    pub column_types: ColumnTypesArg,

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
