//! Time, injectable: the relay waits for backoffs through a [`Clock`], so tests drive retries
//! with a [`ManualClock`] instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

/// Wall-clock time in Unix milliseconds, and a way to wait for a moment.
#[async_trait]
pub trait Clock: Send + Sync {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Returns at or after `at_ms` (immediately when it is in the past).
    async fn sleep_until(&self, at_ms: i64);
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        jiff::Timestamp::now().as_millisecond()
    }

    async fn sleep_until(&self, at_ms: i64) {
        let wait = at_ms.saturating_sub(self.now_ms());
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
    }
}

/// A clock that only moves when told to, or when someone sleeps on it (the sleep jumps to the
/// wake-up time at once). For tests of backoff, `Retry-After` and dedupe windows.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `start_ms`.
    pub fn new(start_ms: i64) -> Self {
        Self {
            now: AtomicI64::new(start_ms),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    async fn sleep_until(&self, at_ms: i64) {
        self.now.fetch_max(at_ms, Ordering::SeqCst);
    }
}
