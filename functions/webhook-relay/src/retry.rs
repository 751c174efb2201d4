//! How long to wait before the next delivery attempt.

use std::time::Duration;

use crate::config::{DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_MAX, DEFAULT_MAX_ATTEMPTS};

/// A destination's `Retry-After` is honoured up to this, so one bad header cannot park a
/// delivery for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Exponential backoff with jitter, and a cap on attempts.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all (the first one included) before a delivery is dead-lettered.
    pub max_attempts: u32,
    /// The wait after the first failure; doubled after each further failure.
    pub base: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
    /// Spread waits randomly over `[d/2, d]` so that retries after an outage do not arrive
    /// together.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base: DEFAULT_BACKOFF_BASE,
            max_delay: DEFAULT_BACKOFF_MAX,
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The wait after `attempts` failed attempts (1 after the first). A destination's
    /// `Retry-After` wins over the computed backoff when it is longer.
    pub fn delay(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        let exponent = attempts.saturating_sub(1).min(30);
        let mut delay = self
            .base
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        if self.jitter && !delay.is_zero() {
            let half = delay / 2;
            delay = half + half.mul_f64(fastrand::f64());
        }
        match retry_after {
            Some(wait) => delay.max(wait.min(MAX_RETRY_AFTER)),
            None => delay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_stays_in_range() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
            jitter: false,
        };
        let waits: Vec<u64> = (1..=5).map(|n| policy.delay(n, None).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        let jittered = RetryPolicy {
            jitter: true,
            ..policy
        };
        for _ in 0..100 {
            let d = jittered.delay(2, None);
            assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(2));
        }
    }
}
