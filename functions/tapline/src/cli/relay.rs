//! `tapline relay …`: flags and help text.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};

/// Environment variable naming the relay configuration file.
const ENV_RELAY_CONFIG: &str = "TAPLINE_RELAY_CONFIG";
/// Environment variable naming the relay's state directory (queue and dead letters).
const ENV_RELAY_STATE_DIR: &str = "TAPLINE_RELAY_STATE_DIR";

#[derive(Debug, Args)]
pub struct RelayArgs {
    #[command(subcommand)]
    pub command: RelayCommand,
}

#[derive(Debug, Subcommand)]
pub enum RelayCommand {
    /// Accept webhooks on POST /hooks/ROUTE and deliver them (Slack, HTTP) from a durable queue.
    #[command(after_help = "Examples:\n  \
        ALERTS_TOKEN=… SLACK_ALERTS_URL=https://hooks.slack.com/services/… \\\n    \
        tapline relay serve --config relay.toml --listen 127.0.0.1:8080 --state-dir ./relay-state\n\n\
        A webhook is answered 200 once it is stored under --state-dir; delivery follows, with \
        retries. SIGTERM or Ctrl-C stops accepting, finishes in-flight work (at most \
        TAPLINE_HTTP_SHUTDOWN_GRACE_SECS, 8 s) and keeps what is pending for the next start. \
        Timeouts and the connection cap: TAPLINE_HTTP_*. See functions/webhook-relay/README.md for \
        the file format and the limits.")]
    Serve(ServeArgs),
    /// Deliver dead letters again (fresh attempts), then deliver what is pending until idle.
    #[command(after_help = "Examples:\n  \
        tapline relay replay --config relay.toml --state-dir ./relay-state\n  \
        tapline relay replay --route alerts --since 2026-11-28T09:00:00Z\n  \
        tapline relay replay --queue-only    # a running `relay serve` on the same state dir delivers\n\n\
        On Google Cloud (the relay on Cloud Run), publish the dead letters back to the delivery \
        topic, where the push worker delivers them in a new round:\n  \
        tapline relay replay --from-pubsub projects/P/subscriptions/PREFIX-relay-dead-letters \\\n    \
        --to-topic projects/P/topics/PREFIX-relay-delivery --route alerts --since 2026-11-28\n\n\
        On AWS, SQS moves dead letters back itself: aws sqs start-message-move-task --source-arn <dlq arn>.\n\n\
        Exit codes: 0 everything delivered (or published back), 2 some delivery is dead again, \
        1 could not start, 64 usage.")]
    Replay(ReplayArgs),
    /// List dead letters with every attempt's outcome.
    #[command(after_help = "Examples:\n  \
        tapline relay dead-letters --state-dir ./relay-state --route alerts\n  \
        tapline relay dead-letters --from-pubsub projects/P/subscriptions/PREFIX-relay-dead-letters\n\n\
        Listing takes nothing away: on Pub/Sub every message is released again at once.")]
    DeadLetters(ListArgs),
    /// Show the local queue: pending, held, dead, the oldest pending payload's age, its size.
    #[command(after_help = "Examples:\n  \
        tapline relay status --state-dir ./relay-state\n  \
        tapline relay status --state-dir ./relay-state --json | jq .oldest_pending_age_secs\n\n\
        Reads the state dir of a `relay serve` (running or not) directly; needs no configuration \
        or secrets. The fields:\n  \
        pending   deliveries not yet delivered nor dead (due, in flight or held)\n  \
        held      of those, not due yet: a retry's backoff, a paused destination, an attempt in flight\n  \
        dead      dead letters (`relay dead-letters` lists them, `relay replay` retries them; \
        pruned dead_letter_retention_days after they died, 30 by default)\n  \
        oldest    age of the oldest payload still pending: a growing age means a destination is down\n  \
        backlog   bytes counted against settings.max_queue_mib: bodies of payloads with a delivery \
        pending or dead, plus 1 KiB each\n  \
        free disk bytes free on the state dir's file system (accepts stop below \
        settings.min_free_disk_percent / min_free_disk_mib)\n\n\
        `GET /healthz` on a running server shows the same under `queue`, with `refusing` saying \
        why accepts get 503 when they do. Exit codes: 0 shown, 1 no queue there.")]
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The state directory of `tapline relay serve` (the queue must exist there).
    #[arg(long, env = ENV_RELAY_STATE_DIR, default_value = ".tapline-relay", value_name = "DIR")]
    pub state_dir: PathBuf,

    /// Print one JSON object (the fields of `/healthz`'s `queue`, and `delivered`, `payloads`)
    /// instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StateArgs {
    /// The relay configuration (TOML: routes, auth, destinations; secrets by env var name).
    #[arg(long, env = ENV_RELAY_CONFIG, default_value = "relay.toml", value_name = "FILE")]
    pub config: PathBuf,

    /// Where the queue and the dead letters are kept (created if missing).
    #[arg(long, env = ENV_RELAY_STATE_DIR, default_value = ".tapline-relay", value_name = "DIR")]
    pub state_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub state: StateArgs,

    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: SocketAddr,
}

#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only this route.
    #[arg(long, value_name = "ROUTE")]
    pub route: Option<String>,

    /// Only payloads received at or after this time (RFC 3339, or YYYY-MM-DD for midnight UTC).
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<i64>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only make the dead letters pending again; leave delivery to a running `relay serve`.
    #[arg(long, conflicts_with = "from_pubsub")]
    pub queue_only: bool,
    /// Replay from this Pub/Sub dead-letter subscription (the relay on Cloud Run) instead of the
    /// local state dir; needs --to-topic.
    #[arg(long, value_name = "SUBSCRIPTION", requires = "to_topic")]
    pub from_pubsub: Option<String>,
    /// The delivery topic to publish replayed letters to (`projects/P/topics/T`).
    #[arg(long, value_name = "TOPIC", requires = "from_pubsub")]
    pub to_topic: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// List the dead letters of this Pub/Sub subscription (the relay on Cloud Run) instead of
    /// the local state dir.
    #[arg(long, value_name = "SUBSCRIPTION")]
    pub from_pubsub: Option<String>,
}

/// `--since`: an RFC 3339 time or a day (midnight UTC), as milliseconds since the epoch.
fn parse_since(text: &str) -> Result<i64, String> {
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    text.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned_datetime(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp().as_millisecond())
        .ok_or_else(|| {
            format!("{text:?} is not a time: use RFC 3339 (2026-11-28T09:00:00Z) or YYYY-MM-DD")
        })
}
