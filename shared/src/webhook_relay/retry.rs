//! The relay's retries: [`crate::retry::RetryPolicy`] per route (Svix's schedule by default,
//! about 27.6 h in all), jitter on or off for every route, and the attempt timeout.

use std::collections::HashMap;
use std::time::Duration;

/// One route's retries: how many attempts, and the waits between them.
pub use crate::retry::RetryPolicy as RouteRetry;
pub use crate::retry::{Backoff, JITTER, MAX_RETRY_AFTER, parse_wait};
use crate::retry::{Jitter, RetryPolicy};

/// Default retry schedule, Svix's: after an immediate first attempt, waits of 5 s, 5 min, 30 min,
/// 2 h, 5 h, 10 h and 10 h (8 attempts, about 27.6 h), so that deliveries outlast a day-long
/// outage of a destination before they become dead letters.
pub const DEFAULT_RETRY_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(300),
    Duration::from_secs(1800),
    Duration::from_secs(7200),
    Duration::from_secs(18_000),
    Duration::from_secs(36_000),
    Duration::from_secs(36_000),
];
/// Default time one delivery attempt may take (connect, send, read the answer).
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts, waits, jitter and the attempt timeout of every route's deliveries.
#[derive(Debug, Clone)]
pub struct DeliveryRetry {
    /// Every route's, unless it has its own in [`Self::routes`].
    pub default: RetryPolicy,
    /// Routes with their own `retry_schedule`, by route name.
    pub routes: HashMap<String, RetryPolicy>,
    /// Spread waits randomly (by each route policy's jitter, ±[`JITTER`] for schedules).
    pub jitter: bool,
    /// The longest one attempt may take, whatever the destination: past it the attempt is
    /// abandoned as a retryable [`crate::webhook_relay::destinations::DeliveryError::Timeout`],
    /// so that one stuck destination cannot hold a worker (`settings.delivery_timeout_secs`).
    pub attempt_timeout: Duration,
}

impl Default for DeliveryRetry {
    fn default() -> Self {
        Self {
            default: RetryPolicy::schedule(DEFAULT_RETRY_SCHEDULE.to_vec()),
            routes: HashMap::new(),
            jitter: true,
            attempt_timeout: DEFAULT_DELIVERY_TIMEOUT,
        }
    }
}

impl DeliveryRetry {
    /// The retries of `route`'s deliveries.
    pub fn route(&self, route: &str) -> &RetryPolicy {
        self.routes.get(route).unwrap_or(&self.default)
    }

    /// Attempts in all for `route`'s deliveries.
    pub fn max_attempts(&self, route: &str) -> u32 {
        self.route(route).max_attempts
    }

    /// The most attempts any route has: what a cloud queue's redelivery cap must allow.
    pub fn most_attempts(&self) -> u32 {
        self.routes
            .values()
            .map(|r| r.max_attempts)
            .fold(self.default.max_attempts, u32::max)
    }

    /// The wait after `failures` failed attempts (1 after the first) of a `route` delivery,
    /// jittered. A destination's `Retry-After` wins over it when longer.
    pub fn delay(&self, route: &str, failures: u32, retry_after: Option<Duration>) -> Duration {
        let policy = self.route(route);
        let jitter = if self.jitter {
            policy.jitter
        } else {
            Jitter::NONE
        };
        policy.delay_with(jitter, failures, retry_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_retry_after_wins_when_longer() {
        let policy = DeliveryRetry {
            default: RouteRetry {
                max_attempts: 5,
                backoff: Backoff::Exponential {
                    base: secs(1),
                    max_delay: secs(5),
                },
                jitter: Jitter::spread(JITTER),
            },
            jitter: false,
            ..DeliveryRetry::default()
        };
        let waits: Vec<u64> = (1..=5)
            .map(|n| policy.delay("r", n, None).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        assert_eq!(policy.delay("r", 1, Some(secs(30))), secs(30));
        assert_eq!(policy.delay("r", 1, Some(secs(86_400))), MAX_RETRY_AFTER);
    }

    #[test]
    fn the_default_schedule_is_svix_s_and_outlasts_a_day_even_with_jitter() {
        let policy = DeliveryRetry::default();
        assert_eq!(policy.max_attempts("any"), 8);
        let expected = [5, 300, 1800, 7200, 18_000, 36_000, 36_000];
        let unjittered = DeliveryRetry {
            jitter: false,
            ..policy.clone()
        };
        let waits: Vec<u64> = (1..8)
            .map(|n| unjittered.delay("r", n, None).as_secs())
            .collect();
        assert_eq!(waits, expected);
        assert_eq!(policy.default.horizon(), secs(99_305), "27 h 35 min 5 s");
        for _ in 0..200 {
            let mut horizon = Duration::ZERO;
            for (n, wait) in (1..8).zip(expected) {
                let d = policy.delay("r", n, None);
                assert!(
                    d >= secs(wait).mul_f64(0.9) && d <= secs(wait).mul_f64(1.1),
                    "wait {n}: {d:?}"
                );
                assert!(d < secs(43_200), "under SQS's 12 h visibility limit");
                horizon += d;
            }
            assert!(horizon >= secs(24 * 3600), "{horizon:?}");
        }
    }

    #[test]
    fn a_route_s_own_schedule_sets_its_attempts_and_waits_and_the_last_wait_repeats() {
        let mut policy = DeliveryRetry {
            jitter: false,
            ..DeliveryRetry::default()
        };
        policy
            .routes
            .insert("fast".into(), RouteRetry::schedule(vec![secs(1), secs(2)]));
        assert_eq!(policy.max_attempts("fast"), 3);
        assert_eq!(policy.max_attempts("other"), 8);
        assert_eq!(policy.most_attempts(), 8);
        assert_eq!(policy.delay("fast", 2, None), secs(2));
        assert_eq!(policy.delay("fast", 9, None), secs(2));
        assert_eq!(policy.delay("other", 1, None), secs(5));
    }
}
