//! One retry policy for every client that retries (the CleverTap API client, BigQuery, Secret
//! Manager, the relay's deliveries): an attempt budget, waits that grow (a schedule, or
//! exponential backoff up to a cap), jitter, and a server's `Retry-After` honoured up to a cap.

use std::time::Duration;

/// A server's `Retry-After` is honoured up to this, so one bad header cannot park a retry for
/// days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

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
    pub fn wait(&self, failures: u32) -> Duration {
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

/// Jitter: each wait `d` becomes a random wait in `[d × low, d × high]`, so that clients that
/// failed together do not come back together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Jitter {
    /// The shortest factor.
    pub low: f64,
    /// The longest factor.
    pub high: f64,
}

impl Jitter {
    /// No jitter: the wait as computed.
    pub const NONE: Jitter = Jitter {
        low: 1.0,
        high: 1.0,
    };
    /// "Equal jitter": half the wait fixed, half random (`[d/2, d]`); never longer than the cap.
    pub const EQUAL: Jitter = Jitter {
        low: 0.5,
        high: 1.0,
    };

    /// `±fraction` around the wait (`[d × (1 − f), d × (1 + f)]`).
    pub const fn spread(fraction: f64) -> Jitter {
        Jitter {
            low: 1.0 - fraction,
            high: 1.0 + fraction,
        }
    }

    /// Up to `fraction` more than the wait (`[d, d × (1 + f)]`).
    pub const fn up_to(fraction: f64) -> Jitter {
        Jitter {
            low: 1.0,
            high: 1.0 + fraction,
        }
    }

    /// `wait`, jittered.
    pub fn apply(&self, wait: Duration) -> Duration {
        if wait.is_zero() || self.low == self.high {
            return wait.mul_f64(self.low);
        }
        wait.mul_f64(self.low + (self.high - self.low) * fastrand::f64())
    }
}

/// How many attempts to make, and how long to wait between them.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all (the first one included) before giving up.
    pub max_attempts: u32,
    /// The waits between them.
    pub backoff: Backoff,
    /// How the waits are spread.
    pub jitter: Jitter,
}

/// The relay's jitter: enough that retries after an outage do not arrive together, small
/// enough that its default horizon stays above 24 h and its longest default wait (10 h) under
/// SQS's 12 h visibility limit.
pub const JITTER: f64 = 0.1;

impl RetryPolicy {
    /// The schedule `waits` (after the 1st, 2nd, … failure): `waits.len() + 1` attempts,
    /// jittered by ±[`JITTER`].
    pub fn schedule(waits: Vec<Duration>) -> Self {
        Self {
            max_attempts: waits.len() as u32 + 1,
            backoff: Backoff::Schedule(waits),
            jitter: Jitter::spread(JITTER),
        }
    }

    /// `max_attempts` attempts, waits doubling from `base` up to `max_delay`, with `jitter`.
    pub const fn exponential(
        max_attempts: u32,
        base: Duration,
        max_delay: Duration,
        jitter: Jitter,
    ) -> Self {
        Self {
            max_attempts,
            backoff: Backoff::Exponential { base, max_delay },
            jitter,
        }
    }

    /// Whether attempt number `attempt` (1 for the first), having failed, may be followed by
    /// another.
    pub fn may_retry(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// The wait after `failures` failed attempts (1 after the first), jittered. A server's
    /// `Retry-After` wins over it when longer, up to [`MAX_RETRY_AFTER`].
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        self.delay_with(self.jitter, failures, retry_after)
    }

    /// [`Self::delay`] with another jitter (none, for deterministic tests and schedules).
    pub fn delay_with(
        &self,
        jitter: Jitter,
        failures: u32,
        retry_after: Option<Duration>,
    ) -> Duration {
        let delay = jitter.apply(self.backoff.wait(failures));
        match retry_after {
            Some(wait) => delay.max(wait.min(MAX_RETRY_AFTER)),
            None => delay,
        }
    }

    /// From the first attempt to the last, without jitter: how long an outage the retries
    /// outlast before giving up.
    pub fn horizon(&self) -> Duration {
        (1..self.max_attempts).map(|n| self.backoff.wait(n)).sum()
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

    #[test]
    fn exponential_waits_double_to_their_cap_within_the_budget_and_retry_after_is_capped() {
        let secs = Duration::from_secs;
        let policy = RetryPolicy::exponential(5, secs(1), secs(5), Jitter::NONE);
        let waits: Vec<u64> = (1..=5).map(|n| policy.delay(n, None).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        assert_eq!(policy.delay(1, Some(secs(30))), secs(30));
        assert_eq!(policy.delay(1, Some(secs(86_400))), MAX_RETRY_AFTER);
        assert!(policy.may_retry(4) && !policy.may_retry(5));
    }

    #[test]
    fn jitter_stays_within_its_factors() {
        let wait = Duration::from_millis(1000);
        for _ in 0..200 {
            let equal = Jitter::EQUAL.apply(wait);
            assert!(equal >= wait / 2 && equal <= wait, "{equal:?}");
            let spread = Jitter::spread(0.1).apply(wait);
            assert!(spread >= wait.mul_f64(0.9) && spread <= wait.mul_f64(1.1));
            let up = Jitter::up_to(0.5).apply(wait);
            assert!(up >= wait && up <= wait.mul_f64(1.5), "{up:?}");
        }
        assert_eq!(Jitter::NONE.apply(wait), wait);
        assert_eq!(Jitter::EQUAL.apply(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_schedule_repeats_its_last_wait_and_sums_to_its_horizon() {
        let secs = Duration::from_secs;
        let policy = RetryPolicy::schedule(vec![secs(1), secs(2)]);
        assert_eq!(policy.max_attempts, 3);
        assert_eq!(policy.delay_with(Jitter::NONE, 2, None), secs(2));
        assert_eq!(policy.delay_with(Jitter::NONE, 9, None), secs(2));
        assert_eq!(policy.horizon(), secs(3));
    }

    #[test]
    fn waits_parse_with_a_unit_only() {
        let secs = Duration::from_secs;
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
