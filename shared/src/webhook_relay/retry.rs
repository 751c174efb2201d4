//! How long to wait before the next delivery attempt: a schedule of waits (Svix's by default,
//! about 27.6 h in all) or exponential backoff, with jitter, per route when a route sets its own.

use std::collections::HashMap;
use std::time::Duration;

use crate::webhook_relay::config::{DEFAULT_DELIVERY_TIMEOUT, DEFAULT_RETRY_SCHEDULE};

/// A destination's `Retry-After` is honoured up to this, so one bad header cannot park a
/// delivery for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Jitter spreads each wait over `[d × (1 − JITTER), d × (1 + JITTER)]`: enough that retries
/// after an outage do not arrive together, small enough that the default horizon stays above
/// 24 h and the longest default wait (10 h) under SQS's 12 h visibility limit.
pub const JITTER: f64 = 0.1;

/// How the waits between attempts grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backoff {
    /// The wait after the 1st, 2nd, … failed attempt; the last one repeats when the attempts
    /// outnumber it (`retry_schedule = ["5s", "5m", …]`).
    Schedule(Vec<Duration>),
    /// Waits doubling from `base` up to `max_delay` (`backoff_base_ms`, `backoff_max_secs`).
    Exponential {
        /// The wait after the first failure.
        base: Duration,
        /// The longest wait.
        max_delay: Duration,
    },
}

impl Backoff {
    /// The wait after `failures` failed attempts (1 after the first), before jitter.
    fn wait(&self, failures: u32) -> Duration {
        match self {
            Backoff::Schedule(waits) => {
                let i = (failures.max(1) as usize - 1).min(waits.len().saturating_sub(1));
                waits.get(i).copied().unwrap_or_default()
            }
            Backoff::Exponential { base, max_delay } => {
                let exponent = failures.saturating_sub(1).min(30);
                base.saturating_mul(1u32 << exponent).min(*max_delay)
            }
        }
    }
}

/// One route's retries: how many attempts, and the waits between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRetry {
    /// Attempts in all (the first one included) before a delivery is dead-lettered.
    pub max_attempts: u32,
    /// The waits between them.
    pub backoff: Backoff,
}

impl RouteRetry {
    /// The schedule `waits` (after the 1st, 2nd, … failure): `waits.len() + 1` attempts.
    pub fn schedule(waits: Vec<Duration>) -> Self {
        Self {
            max_attempts: waits.len() as u32 + 1,
            backoff: Backoff::Schedule(waits),
        }
    }

    /// From the first attempt to the last, without jitter: how long an outage the deliveries
    /// outlast before they are dead letters.
    pub fn horizon(&self) -> Duration {
        (1..self.max_attempts).map(|n| self.backoff.wait(n)).sum()
    }
}

/// Attempts, waits, jitter and the attempt timeout of every route's deliveries.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Every route's, unless it has its own in [`Self::routes`].
    pub default: RouteRetry,
    /// Routes with their own `retry_schedule`, by route name.
    pub routes: HashMap<String, RouteRetry>,
    /// Spread waits randomly by ±[`JITTER`].
    pub jitter: bool,
    /// The longest one attempt may take, whatever the destination: past it the attempt is
    /// abandoned as a retryable [`crate::webhook_relay::destinations::DeliveryError::Timeout`], so that one
    /// stuck destination cannot hold a worker (`settings.delivery_timeout_secs`).
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            default: RouteRetry::schedule(DEFAULT_RETRY_SCHEDULE.to_vec()),
            routes: HashMap::new(),
            jitter: true,
            attempt_timeout: DEFAULT_DELIVERY_TIMEOUT,
        }
    }
}

impl RetryPolicy {
    /// The retries of `route`'s deliveries.
    pub fn route(&self, route: &str) -> &RouteRetry {
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
        let mut delay = self.route(route).backoff.wait(failures);
        if self.jitter && !delay.is_zero() {
            delay = delay.mul_f64(1.0 - JITTER + 2.0 * JITTER * fastrand::f64());
        }
        match retry_after {
            Some(wait) => delay.max(wait.min(MAX_RETRY_AFTER)),
            None => delay,
        }
    }
}

/// A wait as written in a `retry_schedule`: digits and a unit, `s`, `m` or `h` (`"30s"`,
/// `"5m"`, `"10h"`). `None` for anything else.
pub fn parse_wait(text: &str) -> Option<Duration> {
    let unit = match text.chars().last()? {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        _ => return None,
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(Duration::from_secs(n.checked_mul(unit)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_retry_after_wins_when_longer() {
        let policy = RetryPolicy {
            default: RouteRetry {
                max_attempts: 5,
                backoff: Backoff::Exponential {
                    base: secs(1),
                    max_delay: secs(5),
                },
            },
            jitter: false,
            ..RetryPolicy::default()
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
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_attempts("any"), 8);
        let expected = [5, 300, 1800, 7200, 18_000, 36_000, 36_000];
        let unjittered = RetryPolicy {
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
        let mut policy = RetryPolicy {
            jitter: false,
            ..RetryPolicy::default()
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

    #[test]
    fn waits_parse_with_a_unit_only() {
        assert_eq!(parse_wait("5s"), Some(secs(5)));
        assert_eq!(parse_wait("5m"), Some(secs(300)));
        assert_eq!(parse_wait("10h"), Some(secs(36_000)));
        for bad in [
            "",
            "5",
            "s",
            "5d",
            "-5s",
            "5 s",
            "1.5h",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_wait(bad), None, "{bad:?}");
        }
    }
}
