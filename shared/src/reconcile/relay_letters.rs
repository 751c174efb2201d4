//! The relay's dead letters as the completeness page lists them, from wherever the relay keeps
//! them: the local relay's state directory (`tapline relay serve`), the SQS dead-letter queue
//! (the relay on AWS) or the Pub/Sub dead-letter subscription (the relay on Google Cloud).
//!
//! Reading a queue takes nothing away (see
//! [`crate::webhook_relay::queue::sqs_dead_letters`] and
//! [`crate::webhook_relay::queue::pubsub_replay::list_dead_letters`]). Only the newest
//! [`MAX_DEAD_LETTERS`] are kept while reading, each without its body, so the listing's memory
//! does not grow with the backlog. Never a body, a destination's URL or a secret: route,
//! destination, attempts, the last error as the relay recorded it, and when it died.

/// Most relay dead letters listed (the newest).
pub const MAX_DEAD_LETTERS: usize = 20;

/// One relay dead letter as the page lists it: where it was going and why it gave up; never
/// its body, nor a destination's URL or secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayDeadLetter {
    /// The route it came in on.
    pub route: String,
    /// The destination's name within the route.
    pub destination: String,
    /// Attempts made, every round.
    pub attempts: usize,
    /// The last attempt's outcome and error (`permanent: HTTP 400: …`), as the queue recorded
    /// them.
    pub last_error: String,
    /// When it was given up (UTC ISO-8601).
    pub dead_at: String,
}

/// The relay's dead letters for the page: the newest [`MAX_DEAD_LETTERS`] of `total`, and where
/// they were read (this module).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RelayLetters {
    /// Where they were read: "the local relay's queue", "the SQS dead-letter queue NAME", ….
    pub from: String,
    /// The command that delivers them again.
    pub replay: String,
    /// How many dead letters there are.
    pub total: usize,
    /// The newest, newest first.
    pub newest: Vec<RelayDeadLetter>,
    /// Why they could not be listed, when they could not (the rest of the page still stands).
    pub unreadable: Option<String>,
}

impl RelayLetters {
    /// The section when `from` could not be read: says so, with `reason`.
    pub fn unreadable(from: String, reason: String) -> Self {
        Self {
            from,
            unreadable: Some(reason),
            ..Self::default()
        }
    }
}

/// A relay's cloud dead letters: where `tapline report --relay-queue` and the puller's
/// `TAPLINE_REPORT_RELAY_QUEUE` read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayQueue {
    /// The SQS dead-letter queue, by its URL (`PREFIX-relay-delivery-dlq` in `infra/aws`).
    Sqs(String),
    /// The Pub/Sub dead-letter pull subscription, `projects/P/subscriptions/S`
    /// (`PREFIX-relay-dead-letters` in `infra/gcp`).
    PubSub(String),
}

/// Longest queue URL or subscription name taken.
const MAX_QUEUE_NAME: usize = 512;

impl RelayQueue {
    /// `https://sqs.REGION.amazonaws.com/ACCOUNT/NAME` (any `http(s)://` URL: an endpoint such
    /// as a local SQS) or `projects/P/subscriptions/S`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let shown = || {
            let cut: String = text.chars().take(80).collect();
            format!("{:?}", crate::printable::escaped(&cut))
        };
        if text.len() > MAX_QUEUE_NAME || text.chars().any(char::is_control) {
            return Err(format!(
                "{} is neither an SQS queue URL nor a Pub/Sub subscription: too long or with \
                 control characters",
                shown()
            ));
        }
        if let Some(rest) = text.strip_prefix("projects/") {
            let parts: Vec<&str> = rest.split('/').collect();
            if parts.len() == 3
                && parts[1] == "subscriptions"
                && !parts[0].is_empty()
                && !parts[2].is_empty()
            {
                return Ok(RelayQueue::PubSub(text.to_string()));
            }
        }
        if (text.starts_with("https://") || text.starts_with("http://"))
            && text
                .split_once("://")
                .is_some_and(|(_, rest)| rest.trim_end_matches('/').split('/').count() >= 3)
        {
            return Ok(RelayQueue::Sqs(text.to_string()));
        }
        Err(format!(
            "{} is neither an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME) nor a \
             Pub/Sub subscription (projects/P/subscriptions/S)",
            shown()
        ))
    }

    /// Whether this build can read it: an error naming the missing feature otherwise (checked
    /// at start, so that a setting no run could use stops the function at once).
    pub fn supported(&self) -> Result<(), RelayLettersError> {
        let feature = match self {
            RelayQueue::Sqs(_) if !cfg!(feature = "relay-sqs") => "relay-sqs",
            RelayQueue::PubSub(_) if !cfg!(feature = "relay-pubsub") => "relay-pubsub",
            _ => return Ok(()),
        };
        Err(RelayLettersError::Unsupported {
            queue: self.describe(),
            feature,
        })
    }

    /// The queue as the page names it.
    pub fn describe(&self) -> String {
        match self {
            RelayQueue::Sqs(url) => format!(
                "the SQS dead-letter queue {}",
                url.rsplit('/').find(|p| !p.is_empty()).unwrap_or(url)
            ),
            RelayQueue::PubSub(name) => format!("the Pub/Sub subscription {name}"),
        }
    }

    /// How to deliver them again, as the page says.
    pub fn replay_hint(&self) -> String {
        match self {
            RelayQueue::Sqs(_) => {
                "aws sqs start-message-move-task --source-arn DEAD_LETTER_QUEUE_ARN".into()
            }
            RelayQueue::PubSub(name) => {
                format!("tapline relay replay --from-pubsub {name} --to-topic DELIVERY_TOPIC")
            }
        }
    }
}

/// The newest `keep` dead letters of those offered, and how many were offered.
#[derive(Debug)]
pub struct Newest {
    keep: usize,
    /// (dead at, delivery id, letter), in no order until [`Self::finish`].
    letters: Vec<(i64, String, RelayDeadLetter)>,
    total: usize,
}

impl Newest {
    /// Keeps at most `keep`.
    pub fn new(keep: usize) -> Self {
        Self {
            keep,
            letters: Vec::new(),
            total: 0,
        }
    }

    /// Offers one letter, given up at `dead_at_ms`.
    pub fn push(&mut self, dead_at_ms: i64, id: String, letter: RelayDeadLetter) {
        self.total += 1;
        self.letters.push((dead_at_ms, id, letter));
        if self.letters.len() >= 2 * self.keep.max(1) {
            self.trim();
        }
    }

    fn trim(&mut self) {
        self.letters.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
        self.letters.truncate(self.keep);
    }

    /// The newest first, named by where they came from.
    pub fn finish(mut self, from: String, replay: String) -> RelayLetters {
        self.trim();
        RelayLetters {
            from,
            replay,
            total: self.total,
            newest: self.letters.into_iter().map(|(_, _, l)| l).collect(),
            unreadable: None,
        }
    }
}

/// The last attempt's outcome as the page shows it: the recorded error names the HTTP status
/// already; the status alone otherwise.
pub fn last_error(outcome: &str, status: Option<u16>, error: Option<&str>) -> String {
    match (error, status) {
        (Some(error), _) => format!("{outcome}: {error}"),
        (None, Some(status)) => format!("{outcome}: HTTP {status}"),
        (None, None) => outcome.to_string(),
    }
}

#[cfg(feature = "relay")]
fn letter(
    route: String,
    destination: String,
    attempts: usize,
    last_error: String,
    dead_at_ms: i64,
) -> RelayDeadLetter {
    RelayDeadLetter {
        route,
        destination,
        attempts,
        last_error,
        dead_at: jiff::Timestamp::from_millisecond(dead_at_ms)
            .unwrap_or_default()
            .to_string(),
    }
}

/// The local relay's dead letters (`tapline relay serve --state-dir`), newest first: `total`
/// of them, of which `letters` (at least the newest [`MAX_DEAD_LETTERS`]; see
/// [`crate::webhook_relay::queue::sqlite::SqliteDeliveryQueue::newest_dead_letters`]).
#[cfg(feature = "relay")]
pub fn from_local(
    total: u64,
    letters: Vec<crate::webhook_relay::queue::DeadLetter>,
) -> RelayLetters {
    let mut newest = Newest::new(MAX_DEAD_LETTERS);
    let offered = letters.len();
    for l in letters {
        let last = l.attempts.last().map_or_else(String::new, |a| {
            last_error(&a.outcome, a.status, a.error.as_deref())
        });
        let entry = letter(
            l.delivery.route,
            l.delivery.destination,
            l.attempts.len(),
            last,
            l.dead_at_ms,
        );
        newest.push(l.dead_at_ms, l.delivery.id, entry);
    }
    let mut letters = newest.finish(
        "the local relay's queue".into(),
        "tapline relay replay --state-dir DIR".into(),
    );
    letters.total = usize::try_from(total).unwrap_or(usize::MAX).max(offered);
    letters
}

/// One delivery from the SQS dead-letter queue: dead-lettered by the worker (its `dead`
/// record), or moved there by the queue's redrive policy (none: the worker never settled it).
#[cfg(feature = "relay-sqs")]
fn from_sqs_message(
    message: crate::webhook_relay::queue::sqs::DeliveryMessage,
) -> (i64, String, RelayDeadLetter) {
    let (attempts, last, dead_at) = match &message.dead {
        Some(dead) => (
            message.attempts.len().max(dead.attempt as usize),
            last_error(&dead.outcome, dead.status, dead.error.as_deref()),
            dead.at_ms,
        ),
        None => (
            message.attempts.len(),
            "moved by the queue's redrive policy: the worker never settled it (a crash or a \
             timeout)"
                .to_string(),
            message.received_at_ms,
        ),
    };
    let entry = letter(message.route, message.destination, attempts, last, dead_at);
    (dead_at, message.id, entry)
}

/// One letter from the Pub/Sub dead-letter subscription.
#[cfg(feature = "relay-pubsub")]
fn from_pubsub_letter(
    l: crate::webhook_relay::queue::pubsub_replay::CloudDeadLetter,
) -> (i64, String, RelayDeadLetter) {
    let dead_at = l
        .dead_at_ms
        .or_else(|| l.attempts.last().map(|a| a.at_ms))
        .or(l.received_at_ms)
        .unwrap_or_default();
    let last = l.attempts.last().map_or_else(String::new, |a| {
        last_error(&a.outcome, a.status, a.error.as_deref())
    });
    let entry = letter(l.route, l.destination, l.attempts.len(), last, dead_at);
    (dead_at, l.delivery_id, entry)
}

/// Why a relay queue's dead letters could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum RelayLettersError {
    /// The queue refused or could not be reached.
    #[error("cannot list the dead letters of {queue}: {reason}")]
    Queue {
        /// The queue, as [`RelayQueue::describe`] names it.
        queue: String,
        /// What it said.
        reason: String,
        /// Whether the next run may succeed without anyone changing anything.
        retryable: bool,
    },
    /// Its client could not be set up (credentials, the emulator's address).
    #[error("cannot reach {queue}: {reason}")]
    Setup {
        /// The queue.
        queue: String,
        /// Why.
        reason: String,
    },
    /// This build cannot read such a queue.
    #[error("cannot list the dead letters of {queue}: this build has no {feature} feature")]
    Unsupported {
        /// The queue.
        queue: String,
        /// The missing cargo feature.
        feature: &'static str,
    },
}

impl RelayLettersError {
    /// Whether the next run may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            RelayLettersError::Queue { retryable, .. } => *retryable,
            RelayLettersError::Setup { .. } | RelayLettersError::Unsupported { .. } => false,
        }
    }
}

/// Reads `queue` once (taking nothing away) with the usual credentials (`AWS_*` and
/// `AWS_ENDPOINT_URL`; Application Default Credentials or `PUBSUB_EMULATOR_HOST`) and keeps the
/// newest [`MAX_DEAD_LETTERS`].
pub async fn from_queue(queue: &RelayQueue) -> Result<RelayLetters, RelayLettersError> {
    queue.supported()?;
    #[cfg_attr(
        not(any(feature = "relay-sqs", feature = "relay-pubsub")),
        allow(unused_mut)
    )]
    let mut newest = Newest::new(MAX_DEAD_LETTERS);
    #[cfg(any(feature = "relay-sqs", feature = "relay-pubsub"))]
    let queue_error = |e: crate::webhook_relay::queue::QueueError| RelayLettersError::Queue {
        queue: queue.describe(),
        retryable: e.is_retryable(),
        reason: crate::error::error_chain(&e),
    };
    match queue {
        #[cfg(feature = "relay-sqs")]
        RelayQueue::Sqs(url) => {
            let client = crate::webhook_relay::queue::sqs::client_from_env().await;
            crate::webhook_relay::queue::sqs_dead_letters::list_sqs_dead_letters(
                &client,
                url,
                |message| {
                    let (at, id, entry) = from_sqs_message(message);
                    newest.push(at, id, entry);
                },
            )
            .await
            .map_err(queue_error)?;
        }
        // Refused by `supported` above.
        #[cfg(not(feature = "relay-sqs"))]
        RelayQueue::Sqs(_) => {}
        #[cfg(feature = "relay-pubsub")]
        RelayQueue::PubSub(name) => {
            use crate::webhook_relay::queue::pubsub_replay::{
                PubSubSubscription, list_dead_letters,
            };
            let subscription = PubSubSubscription::from_env(name.as_str()).map_err(|e| {
                RelayLettersError::Setup {
                    queue: queue.describe(),
                    reason: crate::error::error_chain(e.as_ref()),
                }
            })?;
            list_dead_letters(&subscription, |l| {
                let (at, id, entry) = from_pubsub_letter(l);
                newest.push(at, id, entry);
            })
            .await
            .map_err(queue_error)?;
        }
        #[cfg(not(feature = "relay-pubsub"))]
        RelayQueue::PubSub(_) => {}
    }
    Ok(newest.finish(queue.describe(), queue.replay_hint()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_are_told_apart_and_bad_names_refused() {
        assert_eq!(
            RelayQueue::parse(
                "https://sqs.eu-west-1.amazonaws.com/123456789012/tl-relay-dead-letters"
            ),
            Ok(RelayQueue::Sqs(
                "https://sqs.eu-west-1.amazonaws.com/123456789012/tl-relay-dead-letters".into()
            ))
        );
        assert_eq!(
            RelayQueue::parse(" projects/acme/subscriptions/tl-relay-dead-letters "),
            Ok(RelayQueue::PubSub(
                "projects/acme/subscriptions/tl-relay-dead-letters".into()
            ))
        );
        for bad in [
            "projects/acme/topics/t",
            "projects//subscriptions/s",
            "https://sqs.eu-west-1.amazonaws.com/",
            "s3://bucket/key",
            "./relay-state",
        ] {
            let err = RelayQueue::parse(bad).unwrap_err();
            assert!(err.contains("is neither an SQS queue URL"), "{bad}: {err}");
        }
        let err = RelayQueue::parse("https://sqs/1/\u{1b}[31m").unwrap_err();
        assert!(!err.contains('\u{1b}'), "{err}");
        assert_eq!(
            RelayQueue::Sqs("https://sqs.eu-west-1.amazonaws.com/1/tl-dlq".into()).describe(),
            "the SQS dead-letter queue tl-dlq"
        );
    }

    #[test]
    fn only_the_newest_are_kept_whatever_the_order() {
        let mut newest = Newest::new(3);
        for i in [5_i64, 1, 9, 7, 3, 8, 2, 6, 4, 0] {
            let entry = RelayDeadLetter {
                route: "r".into(),
                destination: format!("{i}"),
                attempts: 1,
                last_error: String::new(),
                dead_at: String::new(),
            };
            newest.push(i, format!("d{i}"), entry);
        }
        let letters = newest.finish("x".into(), "y".into());
        assert_eq!(letters.total, 10);
        let kept: Vec<&str> = letters
            .newest
            .iter()
            .map(|l| l.destination.as_str())
            .collect();
        assert_eq!(kept, ["9", "8", "7"]);
    }
}
