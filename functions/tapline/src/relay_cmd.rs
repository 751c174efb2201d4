//! `tapline relay serve|replay|dead-letters|status`: the webhook relay on a laptop or a VM, over
//! the `webhook-relay` library. Kept apart from the export commands: it shares only the exit
//! codes.

use tapline::http_server::ServerLimits;
use tapline::process::shutdown_signal;
use tapline::webhook_relay::clock::{Clock, SystemClock};
use tapline::webhook_relay::queue::pubsub::PubSubPublisher;
use tapline::webhook_relay::queue::pubsub_replay::{PubSubSubscription, replay_dead_letters};
use tapline::webhook_relay::queue::sqlite::{QUEUE_FILE, SqliteDeliveryQueue};
use tapline::webhook_relay::queue::{AcceptQueue, AttemptRecord, DeadLetterFilter, DeliveryQueue};
use tapline::webhook_relay::{Relay, RelayConfig};

use crate::AnyError;
use crate::cli::relay::{
    FilterArgs, ListArgs, RelayArgs, RelayCommand, ReplayArgs, ServeArgs, StatusArgs,
};
use crate::cli::{EXIT_NOT_ALL_LOADED, EXIT_OK};

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
