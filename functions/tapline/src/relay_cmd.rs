//! `tapline relay serve|replay|dead-letters|status`: the webhook relay on a laptop or a VM, over
//! the `webhook-relay` library. Kept apart from the export commands: it shares only the exit
//! codes.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use tapline::webhook_relay::clock::{Clock, SystemClock};
use tapline::webhook_relay::queue::pubsub::PubSubPublisher;
use tapline::webhook_relay::queue::pubsub_replay::{PubSubSubscription, replay_dead_letters};
use tapline::webhook_relay::queue::sqlite::{QUEUE_FILE, SqliteDeliveryQueue};
use tapline::webhook_relay::queue::{AcceptQueue, AttemptRecord, DeadLetterFilter, DeliveryQueue};
use tapline::webhook_relay::relay::{ServerLimits, shutdown_signal};
use tapline::webhook_relay::{Relay, RelayConfig};

use crate::cli::{EXIT_NOT_ALL_LOADED, EXIT_OK};

type AnyError = Box<dyn std::error::Error + Send + Sync>;

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

impl FilterArgs {
    fn filter(&self) -> DeadLetterFilter {
        DeadLetterFilter {
            route: self.route.clone(),
            since_ms: self.since,
        }
    }
}

/// Runs one `tapline relay` subcommand; returns the exit code.
pub async fn run(args: RelayArgs) -> Result<u8, AnyError> {
    match args.command {
        RelayCommand::Serve(args) => serve(args).await,
        RelayCommand::Replay(args) => replay(args).await,
        RelayCommand::DeadLetters(args) => dead_letters(args).await,
        RelayCommand::Status(args) => status(args).await,
    }
}

async fn status(args: StatusArgs) -> Result<u8, AnyError> {
    let file = args.state_dir.join(QUEUE_FILE);
    if !file.is_file() {
        return Err(format!(
            "no relay queue at {}: give --state-dir (or TAPLINE_RELAY_STATE_DIR) the directory \
             `tapline relay serve` uses",
            file.display()
        )
        .into());
    }
    let queue = SqliteDeliveryQueue::open(&args.state_dir)?;
    let now = SystemClock.now_ms();
    let mut health = queue.health(now).await?.unwrap_or_default();
    // The limits live in the server's configuration, which this command does not read: whether
    // accepts are refused is `/healthz`'s to say.
    health.refusing = None;
    let counts = queue.counts().await?;
    if args.json {
        let mut value = serde_json::to_value(&health)?;
        if let Some(object) = value.as_object_mut() {
            object.remove("refusing");
            object.insert("delivered".into(), counts.delivered.into());
            object.insert("payloads".into(), counts.payloads.into());
        }
        println!("{value}");
        return Ok(EXIT_OK);
    }
    let or_dash = |v: Option<u64>, unit: &str| v.map_or("-".to_string(), |v| format!("{v}{unit}"));
    println!("queue           {}", file.display());
    println!("pending         {}", health.pending);
    println!("  held          {}", health.held);
    println!("dead            {}", health.dead);
    println!("delivered       {}", counts.delivered);
    println!(
        "oldest pending  {}",
        or_dash(health.oldest_pending_age_secs, " s")
    );
    println!("backlog         {} bytes", health.backlog_bytes);
    println!(
        "free disk       {}",
        or_dash(health.free_disk_bytes, " bytes")
    );
    Ok(EXIT_OK)
}

async fn serve(args: ServeArgs) -> Result<u8, AnyError> {
    let config = RelayConfig::load(&args.state.config)?;
    let relay = Relay::local(&config, &args.state.state_dir)?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    // Printed on stdout so that scripts (and tests) using port 0 learn the address.
    println!(
        "tapline relay listening on http://{}",
        listener.local_addr()?
    );
    let limits = ServerLimits::from_env()?;
    tapline::webhook_relay::serve(relay, listener, limits, shutdown_signal()).await?;
    Ok(EXIT_OK)
}

async fn replay(args: ReplayArgs) -> Result<u8, AnyError> {
    if let (Some(subscription), Some(topic)) = (&args.from_pubsub, &args.to_topic) {
        let subscription = PubSubSubscription::from_env(subscription.as_str())?;
        let topic = PubSubPublisher::from_env(topic.as_str())?;
        let pass = replay_dead_letters(&subscription, Some(&topic), &args.filter.filter()).await?;
        println!(
            "{} dead letter(s) published back to {} ({} left by the filter, {} not relay deliveries)",
            pass.matched.len(),
            topic.topic(),
            pass.filtered_out,
            pass.not_relay
        );
        return Ok(EXIT_OK);
    }
    let config = RelayConfig::load(&args.state.config)?;
    let relay = Relay::local(&config, &args.state.state_dir)?;
    let requeued = relay
        .queue
        .requeue_dead(&args.filter.filter(), SystemClock.now_ms())
        .await?;
    println!("{requeued} dead letter(s) queued again");
    if args.queue_only {
        return Ok(EXIT_OK);
    }
    let stats = relay.worker.run_until_idle().await?;
    println!(
        "{} delivered, {} dead again ({} attempts)",
        stats.delivered, stats.dead, stats.attempts
    );
    Ok(if stats.dead > 0 {
        EXIT_NOT_ALL_LOADED
    } else {
        EXIT_OK
    })
}

async fn dead_letters(args: ListArgs) -> Result<u8, AnyError> {
    if let Some(subscription) = &args.from_pubsub {
        let subscription = PubSubSubscription::from_env(subscription.as_str())?;
        let pass = replay_dead_letters(&subscription, None, &args.filter.filter()).await?;
        for letter in &pass.matched {
            print_letter(
                &letter.delivery_id,
                &letter.route,
                &letter.destination,
                letter.received_at_ms,
                letter.bytes,
                &letter.attempts,
            );
        }
        println!(
            "{} dead letter(s) ({} left by the filter, {} not relay deliveries)",
            pass.matched.len(),
            pass.filtered_out,
            pass.not_relay
        );
        return Ok(EXIT_OK);
    }
    let config = RelayConfig::load(&args.state.config)?;
    let relay = Relay::local(&config, &args.state.state_dir)?;
    let letters = relay.queue.dead_letters(&args.filter.filter()).await?;
    for letter in &letters {
        let d = &letter.delivery;
        print_letter(
            &d.id,
            &d.route,
            &d.destination,
            Some(d.received_at_ms),
            d.body.len(),
            &letter.attempts,
        );
    }
    println!("{} dead letter(s)", letters.len());
    Ok(EXIT_OK)
}

/// One dead letter and every attempt's outcome.
fn print_letter(
    id: &str,
    route: &str,
    destination: &str,
    received_at_ms: Option<i64>,
    bytes: usize,
    attempts: &[AttemptRecord],
) {
    let time = |ms: i64| jiff::Timestamp::from_millisecond(ms).unwrap_or_default();
    println!(
        "{id}  route={route} destination={destination} received={} bytes={bytes}",
        received_at_ms
            .map(|ms| time(ms).to_string())
            .unwrap_or_default()
    );
    for a in attempts {
        println!(
            "    attempt {} at {}: {} {}{}",
            a.attempt,
            time(a.at_ms),
            a.outcome,
            a.status.map(|s| format!("HTTP {s} ")).unwrap_or_default(),
            a.error.as_deref().unwrap_or("")
        );
    }
}
