//! The relay's claim store conformance suite: what every bucket that holds dedupe claims and
//! attempt records gives (conditional create, take-over on the version read, an expired claim
//! reclaimable, a missing bucket delivering), checked through the relay's own traits. Each
//! adapter's test module runs it with [`claim_store_conformance_tests!`] and a [`ClaimHarness`].

use std::time::Duration;

use async_trait::async_trait;
use tapline::webhook_relay::dedupe::attempt_log::{self, AttemptLog};
use tapline::webhook_relay::dedupe::{Claim, ClaimStore, DedupeWindow};
use tapline::webhook_relay::queue::AttemptRecord;

/// Opens claim stores for the suite.
#[async_trait]
pub trait ClaimHarness: Send + Sync {
    /// The relay's objects in one bucket: claims and attempt records.
    type Store: ClaimStore + AttemptLog;
    /// A store on a fresh, empty bucket for the case `name`.
    async fn store(&self, name: &str) -> Self::Store;
    /// A store on a bucket that does not exist.
    async fn missing(&self) -> Self::Store;
}

const MIN: i64 = 60_000;

/// A claim is created once: the second create of the key is refused and sees the first holder.
pub async fn claim_twice_second_sees_the_first(h: &impl ClaimHarness) {
    let claims = h.store("claim-twice").await;
    assert_eq!(claims.create("dedupe/r/d/k", "p1", 5).await, Ok(true));
    assert_eq!(claims.create("dedupe/r/d/k", "p2", 6).await, Ok(false));
    let holder = claims.read("dedupe/r/d/k").await.unwrap().expect("held");
    assert_eq!(
        (holder.payload_id.as_str(), holder.received_at_ms),
        ("p1", Some(5))
    );
    assert!(!holder.version.is_empty());
    assert_eq!(claims.read("dedupe/r/d/none").await, Ok(None));
}

/// A take-over names the version it read: a stale one is refused, the right one wins once.
pub async fn take_over_needs_the_version_read(h: &impl ClaimHarness) {
    let claims = h.store("claim-take-over").await;
    assert_eq!(claims.create("dedupe/r/d/k", "p1", 5).await, Ok(true));
    let holder = claims.read("dedupe/r/d/k").await.unwrap().unwrap();
    let stale = format!("{}1", holder.version.trim_matches('"'));
    assert_eq!(
        claims.replace("dedupe/r/d/k", &stale, "p3", 7).await,
        Ok(false)
    );
    assert_eq!(
        claims
            .replace("dedupe/r/d/k", &holder.version, "p3", 7)
            .await,
        Ok(true)
    );
    assert_eq!(
        claims
            .replace("dedupe/r/d/k", &holder.version, "p4", 8)
            .await,
        Ok(false),
        "the second take-over of one version loses"
    );
    let now = claims.read("dedupe/r/d/k").await.unwrap().unwrap();
    assert_eq!(
        (now.payload_id.as_str(), now.received_at_ms),
        ("p3", Some(7))
    );
    assert_ne!(now.version, holder.version);
}

/// Within the window one delivery per body and destination; after it, the claim is taken over
/// and the window restarts from the new holder.
pub async fn an_expired_claim_is_reclaimed(h: &impl ClaimHarness) {
    let window = DedupeWindow::new(h.store("claim-window").await, Duration::from_secs(600));
    let claim = |payload: &'static str, destination: &'static str, at: i64| {
        let window = &window;
        async move { window.claim("r", destination, b"{}", payload, at).await }
    };
    assert_eq!(claim("p1", "crm", 0).await, Claim::Deliver);
    assert_eq!(claim("p1", "crm", 0).await, Claim::Deliver, "redelivery");
    assert_eq!(
        claim("p2", "crm", 9 * MIN).await,
        Claim::Duplicate { first: "p1".into() }
    );
    assert_eq!(claim("p2", "slack", 9 * MIN).await, Claim::Deliver);
    assert_eq!(claim("p3", "crm", 11 * MIN).await, Claim::Deliver);
    assert_eq!(
        claim("p4", "crm", 12 * MIN).await,
        Claim::Duplicate { first: "p3".into() }
    );
}

/// A bucket that cannot be reached never blocks a delivery (it may go twice).
pub async fn a_missing_bucket_delivers(h: &impl ClaimHarness) {
    let window = DedupeWindow::new(h.missing().await, Duration::from_secs(600));
    for payload in ["p1", "p2"] {
        assert_eq!(
            window.claim("r", "d", b"{}", payload, 0).await,
            Claim::Deliver
        );
    }
}

fn record(attempt: u32, at_ms: i64) -> AttemptRecord {
    AttemptRecord {
        attempt,
        at_ms,
        duration_ms: 12,
        status: Some(503),
        outcome: "retryable".into(),
        error: Some("HTTP 503".into()),
    }
}

/// Attempt records come back per delivery, oldest first, with the last attempt once.
pub async fn attempt_records_are_listed_per_delivery(h: &impl ClaimHarness) {
    let log = h.store("attempt-log").await;
    attempt_log::append(&log, "p1.crm", &record(2, 2_000)).await;
    attempt_log::append(&log, "p1.crm", &record(1, 1_000)).await;
    attempt_log::append(&log, "p1.crmx", &record(1, 1_500)).await;
    let last = record(3, 3_000);
    let all = attempt_log::history(Some(&log), "p1.crm", &last).await;
    let seen: Vec<(u32, i64)> = all.iter().map(|r| (r.attempt, r.at_ms)).collect();
    assert_eq!(seen, [(1, 1_000), (2, 2_000), (3, 3_000)]);
    assert_eq!(all[0], record(1, 1_000), "the record as written");
    assert_eq!(
        log.records_under("attempts/none/").await,
        Ok(Vec::<Vec<u8>>::new())
    );
    assert!(log.records_under("attempts/").await.unwrap().len() == 3);
}

/// Runs every case of the suite as its own test against the harness `$harness` builds.
#[macro_export]
macro_rules! claim_store_conformance_tests {
    ($harness:expr) => {
        $crate::claim_store_conformance_tests!(@cases $harness;
            claim_twice_second_sees_the_first,
            take_over_needs_the_version_read,
            an_expired_claim_is_reclaimed,
            a_missing_bucket_delivers,
            attempt_records_are_listed_per_delivery,
        );
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $harness;
                $crate::conformance::claim_store::$case(&harness).await;
            }
        )*
    };
}
