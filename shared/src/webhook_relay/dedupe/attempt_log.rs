//! Every attempt of a delivery, for its dead letter, in the cloud.
//!
//! Locally the queue keeps each attempt beside the delivery. In the cloud a retry is the same
//! message handed over again (SQS visibility, a Pub/Sub redelivery), which cannot carry what
//! happened before; so the worker writes each failed attempt that will be retried as one small
//! object, `attempts/<delivery id>/<at_ms>-<attempt>.json`, in its bucket (the payload bucket on
//! AWS, the dedupe bucket on GCP), and the dead letter lists them all with the last attempt.
//!
//! Keys carry the attempt's time, so a replayed delivery's new round adds to the old one instead
//! of overwriting it. Writing is best effort: a failed write is logged and the dead letter then
//! lacks that attempt (the logs have every attempt anyway); it never holds a delivery back. The
//! bucket's lifecycle removes the records after the queues' retention.

use async_trait::async_trait;
use tracing::warn;

use crate::webhook_relay::queue::AttemptRecord;

/// Where attempt records are kept: small objects under a prefix.
#[async_trait]
pub trait AttemptLog: Send + Sync {
    /// Writes `body` as object `key` (overwriting).
    async fn put_record(&self, key: &str, body: Vec<u8>) -> Result<(), String>;
    /// The bodies of the objects under `prefix`, in key order.
    async fn records_under(&self, prefix: &str) -> Result<Vec<Vec<u8>>, String>;
}

fn prefix(delivery_id: &str) -> String {
    format!("attempts/{delivery_id}/")
}

/// The key of `record` of delivery `delivery_id`.
pub fn record_key(delivery_id: &str, record: &AttemptRecord) -> String {
    format!(
        "{}{:013}-{}.json",
        prefix(delivery_id),
        record.at_ms.max(0),
        record.attempt
    )
}

/// Logs `record` (an attempt of `delivery_id` that will be retried). Failures are logged only.
pub async fn append(log: &dyn AttemptLog, delivery_id: &str, record: &AttemptRecord) {
    let body = serde_json::to_vec(record).expect("an AttemptRecord serialises");
    if let Err(err) = log.put_record(&record_key(delivery_id, record), body).await {
        warn!(delivery = %delivery_id, attempt = record.attempt, error = %err,
              "Cannot log the attempt; its dead letter, if any, will lack it.");
    }
}

/// Every attempt of `delivery_id` as far as `log` has them, then `last`, oldest first. Without a
/// log, or when it cannot be read (logged), only `last`.
pub async fn history(
    log: Option<&dyn AttemptLog>,
    delivery_id: &str,
    last: &AttemptRecord,
) -> Vec<AttemptRecord> {
    let mut all: Vec<AttemptRecord> = match log {
        Some(log) => match log.records_under(&prefix(delivery_id)).await {
            Ok(bodies) => bodies
                .iter()
                .filter_map(|b| serde_json::from_slice(b).ok())
                .collect(),
            Err(err) => {
                warn!(delivery = %delivery_id, error = %err,
                      "Cannot read the attempt log; the dead letter holds the last attempt only.");
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    all.push(last.clone());
    all.sort_by_key(|r| (r.at_ms, r.attempt));
    all.dedup_by_key(|r| (r.at_ms, r.attempt));
    all
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Memory(Mutex<BTreeMap<String, Vec<u8>>>, Mutex<bool>);

    #[async_trait]
    impl AttemptLog for Memory {
        async fn put_record(&self, key: &str, body: Vec<u8>) -> Result<(), String> {
            if *self.1.lock().unwrap() {
                return Err("503".into());
            }
            self.0.lock().unwrap().insert(key.into(), body);
            Ok(())
        }
        async fn records_under(&self, prefix: &str) -> Result<Vec<Vec<u8>>, String> {
            if *self.1.lock().unwrap() {
                return Err("503".into());
            }
            Ok(self
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(_, v)| v.clone())
                .collect())
        }
    }

    fn record(attempt: u32, at_ms: i64, outcome: &str) -> AttemptRecord {
        AttemptRecord {
            attempt,
            at_ms,
            duration_ms: 12,
            status: Some(503),
            outcome: outcome.into(),
            error: Some("HTTP 503".into()),
        }
    }

    #[tokio::test]
    async fn the_history_is_every_logged_attempt_then_the_last_oldest_first() {
        let log = Memory::default();
        append(&log, "p1.crm", &record(2, 2_000, "retryable")).await;
        append(&log, "p1.crm", &record(1, 1_000, "retryable")).await;
        append(&log, "p2.crm", &record(1, 1_500, "retryable")).await;
        // A replayed round starts at attempt 1 again: kept beside the first round's.
        append(&log, "p1.crm", &record(1, 5_000, "retryable")).await;
        assert_eq!(
            log.0.lock().unwrap().keys().next().unwrap(),
            "attempts/p1.crm/0000000001000-1.json"
        );
        let last = record(2, 6_000, "permanent");
        let all = history(Some(&log), "p1.crm", &last).await;
        let seen: Vec<(u32, i64)> = all.iter().map(|r| (r.attempt, r.at_ms)).collect();
        assert_eq!(seen, [(1, 1_000), (2, 2_000), (1, 5_000), (2, 6_000)]);
        assert_eq!(all[3], last);

        // The last attempt logged too (a retry whose settle failed): listed once.
        append(&log, "p1.crm", &last).await;
        assert_eq!(history(Some(&log), "p1.crm", &last).await.len(), 4);
    }

    #[tokio::test]
    async fn an_unreadable_or_missing_log_still_gives_the_last_attempt() {
        let log = Memory::default();
        *log.1.lock().unwrap() = true;
        append(&log, "p1.crm", &record(1, 1_000, "retryable")).await;
        assert!(log.0.lock().unwrap().is_empty());
        let last = record(2, 2_000, "retryable");
        for log in [Some(&log as &dyn AttemptLog), None] {
            let all = history(log, "p1.crm", &last).await;
            assert_eq!(all.len(), 1);
            assert_eq!(all[0], last);
        }
    }
}
