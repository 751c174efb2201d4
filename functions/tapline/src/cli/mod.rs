//! Flags and help text. Everything a user types is described here, with examples; what each
//! command does is in its `*_cmd.rs`, which reads these types (never the reverse).

#[cfg(feature = "clevertap-api")]
pub mod pull;
#[cfg(feature = "relay")]
pub mod relay;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tapline::config::{
    DEFAULT_MAX_REJECT_RATIO, ENV_MAX_REJECT_RATIO, ENV_TIMEZONE, ENV_WAREHOUSE,
};

/// Every recognised file loaded or already loaded.
pub const EXIT_OK: u8 = 0;
/// Something could not start (warehouse, path, configuration).
pub const EXIT_FATAL: u8 = 1;
/// At least one file was quarantined or failed.
pub const EXIT_NOT_ALL_LOADED: u8 = 2;
/// `tapline alerts`: some rule breached.
#[cfg(feature = "clevertap-api")]
pub const EXIT_BREACHED: u8 = 3;
/// `tapline reconcile`: some (event, day) is not complete.
pub const EXIT_INCOMPLETE: u8 = 3;
/// The command line itself is wrong (sysexits EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

const DEFAULT_WAREHOUSE: &str = "sqlite://tapline.sqlite";

#[derive(Debug, Parser)]
#[command(
    name = "tapline",
    version,
    about = "Move CleverTap exports into the warehouse your BI tools read, exactly once.",
    long_about = "Move CleverTap exports into the warehouse your BI tools read, exactly once.\n\n\
        Tapline reads CleverTap's export files (gzip CSV or JSON, as CleverTap writes them to S3 \
        or GCS), validates every row, and appends them to one table per event. A ledger in the \
        warehouse (_tapline_loads) makes loading idempotent: run it as often as you like.",
    after_help = "Examples:\n  \
        tapline load ./exports --warehouse sqlite://clevertap.sqlite --timezone Asia/Kolkata\n  \
        tapline status --warehouse sqlite://clevertap.sqlite\n  \
        tapline query --warehouse sqlite://clevertap.sqlite \"SELECT count(*) FROM charged\"\n\n\
        Exit codes: 0 all loaded, 2 some file quarantined or failed, 1 could not start, 64 usage."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log more: -v for each file, -vv for debugging. Logs go to stderr.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load export files or folders (recursively) into the warehouse.
    #[command(after_help = "Examples:\n  \
        tapline load ./exports\n  \
        tapline load 1663664837-1663785000-Order-Placed-20220921-0-0.csv.gz --timezone Asia/Kolkata\n  \
        tapline load ./exports --warehouse sqlite:///data/clevertap.sqlite --max-reject-ratio 0.05\n  \
        tapline load s3://acme-clevertap-exports/events/ --warehouse postgres://loader@db/analytics\n\n\
        Files that are not CleverTap exports (by name) are skipped and listed. A file already \
        loaded (same path, size and modification time) is not loaded again; a changed file \
        replaces the rows of its previous version.\n\n\
        Exit codes: 0 every recognised file is loaded or already loaded; 2 at least one was \
        quarantined or failed (see `tapline status`); 1 nothing could start.")]
    Load(LoadArgs),
    /// Load only what the ledger does not have yet, and say how much was already there. Run it
    /// on a schedule over the export bucket so a lost bucket event never means a lost file.
    #[command(after_help = "Examples:\n  \
        tapline sweep s3://acme-clevertap-exports/ --warehouse postgres://loader@db/analytics\n  \
        tapline sweep ./exports --since 2022-09-01\n\n\
        Same flags and exit codes as `tapline load`; objects already loaded are counted, not read.")]
    Sweep(LoadArgs),
    /// Show the most recent loads from the ledger (_tapline_loads), and the API pulls a run
    /// left unfinished (checkpoints in _tapline_state: kind, event, day, pages done, rows).
    #[command(after_help = "Examples:\n  \
        tapline status\n  \
        tapline status --warehouse sqlite://clevertap.sqlite --limit 50\n  \
        tapline status --source s3://acme-exports/clevertap/\n\n\
        An unfinished pull (killed, timed out, CleverTap unavailable) resumes at its page when \
        the same `tapline pull` runs again, or at the next scheduled run.")]
    Status(StatusArgs),
    /// Run a read-only SQL query against the warehouse and print the result as a table.
    #[command(after_help = "Examples:\n  \
        tapline query \"SELECT substr(ts, 1, 10) AS day, count(*) FROM order_placed GROUP BY day\"\n  \
        tapline query \"SELECT * FROM _tapline_rejects LIMIT 5\"")]
    Query(QueryArgs),
    /// Infer each column's kind again from the values it holds (SQLite): for a file loaded before
    /// kinds, whose old columns are all text. Rebuilds the typed views (bi_*) and prints what
    /// changed.
    #[command(after_help = "Examples:\n  \
        tapline retype --warehouse sqlite://clevertap.sqlite\n\n\
        Reads every table once, in one transaction (loads wait for it); the raw tables are not \
        changed. Exit codes: 0 done (changed or not); 1 it could not run; 64 usage.")]
    Retype(RetypeArgs),
    /// Is each day complete? Per event and day: the export chunks seen (and any missing), the
    /// rows the warehouse holds, and CleverTap's own count (event_counts, from `tapline pull
    /// counts`). Verdicts go to _tapline_completeness.
    #[command(after_help = "Examples:\n  \
        tapline reconcile --timezone Asia/Kolkata\n  \
        tapline reconcile --from 2022-09-18 --to 2022-09-21 --tolerance 1\n\n\
        Statuses: complete (every chunk loaded, rows within the tolerance of CleverTap's count); \
        missing chunk (a gap in an export run's file indexes, or a chunk quarantined or failed: \
        named); count mismatch (both figures and the difference); no export (CleverTap counts \
        events, nothing arrived); late (the day is not over, or its export is not due yet: \
        --grace); no count (pull counts first: `tapline pull counts`; its chunks are still \
        checked).\n\n\
        Exit codes: 0 no day needs attention (complete, late or no count); 3 some day has a \
        missing chunk, a count mismatch or no export; 1 nothing could start; 64 usage.")]
    Reconcile(ReconcileArgs),
    /// Write one self-contained HTML page of completeness: events × days coloured by status
    /// (each cell titled with its figures), rows per day by source, the newest quarantined and
    /// failed files, unfinished API pulls. It fetches nothing when opened.
    #[command(after_help = "Examples:\n  \
        tapline report --out report.html --timezone Asia/Kolkata\n  \
        tapline report --out /srv/www/tapline.html --days 14\n\n\
        The same days and statuses as `tapline reconcile` (same flags), read only: verdicts are \
        not recorded and nothing is alerted (--pull-counts still lands the counts it pulls in \
        event_counts). Exit codes: 0 written; 1 nothing could start; 64 usage.")]
    Report(ReportArgs),
    /// The webhook relay: accept authenticated webhooks, deliver them to Slack and HTTP.
    #[cfg(feature = "relay")]
    Relay(relay::RelayArgs),
    /// The webhook relay (not in this build: it was built without the `relay` feature).
    #[cfg(not(feature = "relay"))]
    Relay(NotBuilt),
    /// Pull data from CleverTap's REST API into the same tables exports fill.
    #[cfg(feature = "clevertap-api")]
    Pull(pull::PullArgs),
    /// Pull from CleverTap's REST API (not in this build: it was built without the
    /// `clevertap-api` feature).
    #[cfg(not(feature = "clevertap-api"))]
    Pull(NotBuilt),
    /// Check count rules against event_counts; post breaches to Slack or the webhook relay;
    /// store results in alert_runs.
    #[command(after_help = "Examples:\n  \
        tapline alerts --rules alerts.json --day 2022-09-23\n\n\
        alerts.json:\n  \
        [{\"name\": \"charged-floor\", \"event\": \"Charged\", \"when\": \"below\", \"count\": 500},\n   \
         {\"name\": \"charged-drop\", \"event\": \"Charged\", \"when\": \"below_trailing_mean\", \"percent\": 40, \"days\": 7}]\n\n\
        Where breaches go (secrets: never arguments): TAPLINE_ALERTS_SLACK_URL, a Slack incoming \
        webhook posted once; or TAPLINE_ALERTS_RELAY_URL (a webhook relay route, e.g. \
        https://relay.example.com/hooks/alerts) with TAPLINE_ALERTS_RELAY_TOKEN (sent in \
        TAPLINE_ALERTS_RELAY_HEADER, default X-Tapline-Token): the relay's Slack destination \
        delivers with retries and dead letters. Neither: results are only stored.\n\n\
        Exit codes: 0 no breach; 3 some rule breached; 2 a breach could not be posted; \
        1 nothing could start; 64 usage.")]
    #[cfg(feature = "clevertap-api")]
    Alerts(pull::AlertsArgs),
    /// Check count rules against event_counts (not in this build: it was built without the
    /// `clevertap-api` feature).
    #[cfg(not(feature = "clevertap-api"))]
    Alerts(NotBuilt),
}

/// The arguments of a command this build leaves out (see the crate's features): taken as they
/// come, so that running it names the feature instead of failing on its flags.
#[cfg(not(all(feature = "relay", feature = "clevertap-api")))]
#[derive(Debug, Args)]
pub struct NotBuilt {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WarehouseArg {
    /// Where rows go: `sqlite://FILE` (created if missing; relative or absolute path),
    /// `postgres://USER@HOST/DB[?schema=S][&bi_schema=S_bi]`, or
    /// `bigquery://PROJECT/DATASET[?location=EU][&bi_dataset=DATASET_bi]` (an existing dataset;
    /// Application Default Credentials; `BIGQUERY_ENDPOINT` for a double). The typed views for
    /// BI tools go to `bi_*` views (SQLite) or the `bi_schema` / `bi_dataset` named.
    /// Keep passwords out of it (and out of `ps`): TAPLINE_WAREHOUSE_PASSWORD or PGPASSWORD
    /// give the password of the URL's user.
    // `hide_env_values`: --help must not print a TAPLINE_WAREHOUSE that carries a password.
    #[arg(long, short = 'w', env = ENV_WAREHOUSE, hide_env_values = true, default_value = DEFAULT_WAREHOUSE)]
    pub warehouse: String,
}

/// `--column-types`, taught by its `--help` (the format in full: docs/warehouses.md).
const COLUMN_TYPES_HELP: &str = "\
A TOML file pinning column types for the typed views (bi_<table> and bi_all_events \
on SQLite; the <schema>_bi schema on PostgreSQL; the <dataset>_bi dataset on BigQuery). \
Each section is a table as the warehouse names it, or \"*\" for every event table; each \
line a column, by its CleverTap name or its column name, and a kind: integer, decimal, \
boolean, timestamp, json or text. A table's own line wins over \"*\".

Example types.toml:
  [charged]
  \"eventProps.Amount\" = \"decimal\"
  event_props_coupon = \"text\"

  [\"*\"]
  \"profile.phone\" = \"text\"

A pinned column is cast to its kind whatever its values look like: a value that does not fit \
is NULL in the typed view, kept as it came in the raw table, and counted in `tapline status`. \
The file is the whole set: at each load's commit the stored pins become the file's (a pin \
removed from it gives the column back its inferred kind). Without --column-types the stored \
pins stay. A file that cannot be read or parsed stops the command before anything loads.";

/// The column types a command that loads may pin (see [`COLUMN_TYPES_HELP`]).
#[derive(Debug, Args)]
pub struct ColumnTypesArg {
    /// Pin column types for the typed views from a TOML file (see --help for the format).
    #[arg(long, value_name = "FILE", long_help = COLUMN_TYPES_HELP)]
    pub column_types: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Export files or folders (walked recursively), or S3 prefixes (`s3://BUCKET/PREFIX`,
    /// with the usual AWS credentials; `AWS_ENDPOINT_URL` for S3-compatible stores).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<String>,

    #[command(flatten)]
    pub warehouse: WarehouseArg,

    #[command(flatten)]
    pub column_types: ColumnTypesArg,

    /// Your CleverTap project's time zone (Settings > Project): export `ts` values are local
    /// times in it. Stored as UTC. Example: Asia/Kolkata.
    #[arg(long, env = ENV_TIMEZONE, default_value = "UTC", value_name = "IANA")]
    pub timezone: String,

    /// Quarantine a whole file when more than this share of its rows is bad (0.01 = 1 %).
    /// Bad rows of loaded files go to _tapline_rejects with the reason.
    #[arg(long, env = ENV_MAX_REJECT_RATIO, default_value_t = DEFAULT_MAX_REJECT_RATIO, value_name = "RATIO")]
    pub max_reject_ratio: f64,

    /// Quarantine a file whose decompressed text grows past this many times its compressed
    /// size (a decompression bomb: real exports are 3-5x). 0: no limit.
    #[arg(
        long,
        env = tapline::config::ENV_MAX_DECOMPRESSED_RATIO,
        default_value_t = tapline::export::limits::DEFAULT_MAX_DECOMPRESSED_RATIO,
        value_name = "N"
    )]
    pub max_decompressed_ratio: u64,

    /// Quarantine a file whose decompressed text grows past this many bytes (8 GiB). 0: no limit.
    #[arg(
        long,
        env = tapline::config::ENV_MAX_DECOMPRESSED_BYTES,
        default_value_t = tapline::export::limits::DEFAULT_MAX_DECOMPRESSED_BYTES,
        value_name = "BYTES"
    )]
    pub max_decompressed_bytes: u64,

    /// Longest column name accepted: a longer CSV header name quarantines the file, a longer
    /// flattened JSON key rejects the row.
    #[arg(
        long,
        env = tapline::config::ENV_MAX_COLUMN_NAME_BYTES,
        default_value_t = tapline::export::limits::DEFAULT_MAX_COLUMN_NAME_BYTES,
        value_name = "BYTES"
    )]
    pub max_column_name_bytes: usize,

    /// Try again files whose same version was quarantined before (after raising the ratio,
    /// say). By default a quarantined version stays quarantined.
    #[arg(long)]
    pub retry_quarantined: bool,

    /// List every file in the summary, not only those that need attention.
    #[arg(long)]
    pub list_files: bool,

    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,

    /// Backfill from a date: only exports whose data date (in the file name) is on or after it.
    /// Objects whose names carry no date are always considered.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    pub since: Option<jiff::civil::Date>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub warehouse: WarehouseArg,

    /// How many loads to show, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,

    /// The export location (a folder, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX): the Freshness
    /// block then names the oldest object `tapline sweep` would load from it, and its age.
    #[arg(long, value_name = "URI")]
    pub source: Option<String>,
}

#[derive(Debug, Args)]
pub struct RetypeArgs {
    #[command(flatten)]
    pub warehouse: WarehouseArg,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub warehouse: WarehouseArg,

    /// Your CleverTap project's time zone: days are its days, as CleverTap counts them.
    #[arg(long, env = ENV_TIMEZONE, default_value = "UTC", value_name = "IANA")]
    pub timezone: String,

    /// First day to check (with --to); default: the last --days whole days.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date, requires = "to")]
    pub from: Option<jiff::civil::Date>,

    /// Last day to check, included.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date, requires = "from")]
    pub to: Option<jiff::civil::Date>,

    /// How many whole days before today (in --timezone) to check, without --from/--to.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u16).range(1..=366), conflicts_with = "from")]
    pub days: u16,

    /// Largest difference from CleverTap's count that is still complete, in percent of the
    /// count (counts and exports are computed at different times).
    #[arg(long, default_value_t = 0.5, value_name = "PERCENT", value_parser = parse_percent)]
    pub tolerance: f64,

    /// Hours after a day ends during which its export may still be on the way (recurring
    /// exports run every 4 to 24 hours): until then a day short of rows is late, not wrong.
    #[arg(long, default_value_t = 24, value_name = "HOURS")]
    pub grace: u16,

    /// Before judging, ask CleverTap's API for the counts event_counts lacks: every day of the
    /// range that is over, for each event the exports or the warehouse know; lands them in
    /// event_counts. At most 100 (event, day) counts per run (newest days first; the next run
    /// asks the rest), under CLEVERTAP_CONCURRENCY and the API's rate limit. Needs
    /// CLEVERTAP_ACCOUNT_ID and CLEVERTAP_PASSCODE (and CLEVERTAP_REGION), as `tapline pull`.
    #[arg(long)]
    pub pull_counts: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The HTML file to write (replaced).
    #[arg(long, value_name = "FILE")]
    pub out: std::path::PathBuf,

    #[command(flatten)]
    pub days: ReconcileArgs,

    /// The local webhook relay's state directory (`tapline relay serve --state-dir`): adds a
    /// "Relay dead letters" section, the newest 20 with route, destination, attempts, last
    /// error and time (never a body or a secret).
    #[arg(long, value_name = "DIR")]
    pub relay_state: Option<std::path::PathBuf>,

    /// The relay's cloud dead letters instead: the SQS dead-letter queue's URL (the relay on
    /// AWS; the usual AWS credentials, AWS_ENDPOINT_URL) or the Pub/Sub dead-letter subscription,
    /// projects/P/subscriptions/S (the relay on Google Cloud; Application Default Credentials,
    /// PUBSUB_EMULATOR_HOST). Listing takes nothing away: every message is made visible again.
    /// Needs sqs:ReceiveMessage and sqs:ChangeMessageVisibility, or roles/pubsub.subscriber.
    #[arg(
        long,
        value_name = "QUEUE_URL|SUBSCRIPTION",
        conflicts_with = "relay_state"
    )]
    pub relay_queue: Option<String>,
}

/// `--tolerance`: a percentage from 0 to 100.
fn parse_percent(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!(
            "{text:?} is not a percentage from 0 to 100, e.g. 0.5"
        )),
    }
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The SQL (read-only: SELECT, WITH, EXPLAIN).
    pub sql: String,

    #[command(flatten)]
    pub warehouse: WarehouseArg,
}

/// `--since`, `--from`, `--to`, `--day`: a `YYYY-MM-DD` day, with an example when it is not one.
pub(crate) fn parse_date(text: &str) -> Result<jiff::civil::Date, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a date: use YYYY-MM-DD, e.g. 2022-09-01"))
}
