//! Retry delays: a fixed `retry_after`, or RouteMQ's bounded exponential backoff with jitter.

use std::time::Duration;

/// Worker-wide retry defaults (`QUEUE_RETRY_BACKOFF_ENABLED`, `QUEUE_RETRY_MAX_DELAY`,
/// `QUEUE_RETRY_JITTER`); a job's own settings win where it has them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryDefaults {
    /// Turn backoff on for every job.
    pub backoff_enabled: bool,
    /// The cap in seconds when a job sets none (RouteMQ: 60).
    pub max_delay: f64,
    /// The jitter fraction when a job sets none (RouteMQ: 0).
    pub jitter: f64,
}

impl Default for RetryDefaults {
    fn default() -> Self {
        Self {
            backoff_enabled: false,
            max_delay: 60.0,
            jitter: 0.0,
        }
    }
}

/// A job's own retry settings, as its envelope carries them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct JobRetry {
    /// `retry_after` in seconds.
    pub retry_after: f64,
    /// `retry_backoff_enabled`.
    pub backoff_enabled: bool,
    /// `retry_backoff_max_delay`.
    pub max_delay: Option<f64>,
    /// `retry_backoff_jitter`.
    pub jitter: Option<f64>,
}

/// RouteMQ's `get_retry_delay`, in seconds, before rounding.
///
/// Off: `retry_after`. On: `min(max, retry_after * 2^(n-1))` with `n = max(1, attempts)` and
/// `max = max(job max_delay ?? default max_delay, retry_after)`; then with jitter `j = min(jitter, 1)`
/// the delay is drawn from `[delay * (1 - j), delay]` using `rng` in `[0, 1]`.
pub fn retry_delay_secs(job: &JobRetry, defaults: &RetryDefaults, attempts: u32, rng: f64) -> f64 {
    let base = job.retry_after.max(0.0);
    if !(job.backoff_enabled || defaults.backoff_enabled) {
        return base;
    }
    let max = job.max_delay.unwrap_or(defaults.max_delay).max(base);
    let jitter = job.jitter.unwrap_or(defaults.jitter);
    let exponent = i32::try_from(attempts.max(1) - 1)
        .unwrap_or(i32::MAX)
        .min(1023);
    let delay = (base * 2f64.powi(exponent)).min(max);
    if delay <= 0.0 || jitter <= 0.0 {
        return delay;
    }
    let fraction = jitter.min(1.0);
    let lower = delay * (1.0 - fraction);
    lower + (delay - lower) * rng.clamp(0.0, 1.0)
}

/// The delay the worker applies: [`retry_delay_secs`] with a random draw, rounded to whole
/// seconds half-to-even (Python's `round`), as RouteMQ's worker does.
pub fn retry_delay(job: &JobRetry, defaults: &RetryDefaults, attempts: u32) -> Duration {
    let secs = retry_delay_secs(job, defaults, attempts, fastrand::f64()).round_ties_even();
    crate::limits::clamped_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_routemq_test_values() {
        let defaults = RetryDefaults {
            backoff_enabled: true,
            max_delay: 10.0,
            jitter: 0.0,
        };
        let job = JobRetry {
            retry_after: 2.0,
            ..JobRetry::default()
        };
        assert_eq!(retry_delay_secs(&job, &defaults, 3, 0.0), 8.0);

        let job = JobRetry {
            retry_after: 4.0,
            backoff_enabled: true,
            max_delay: Some(6.0),
            jitter: Some(1.0),
        };
        assert_eq!(
            retry_delay_secs(&job, &RetryDefaults::default(), 2, 0.5),
            3.0
        );
    }

    #[test]
    fn fixed_delay_when_backoff_is_off_and_attempt_zero_counts_as_one() {
        let job = JobRetry {
            retry_after: 7.0,
            ..JobRetry::default()
        };
        assert_eq!(
            retry_delay_secs(&job, &RetryDefaults::default(), 5, 0.9),
            7.0
        );
        let on = RetryDefaults {
            backoff_enabled: true,
            ..RetryDefaults::default()
        };
        assert_eq!(retry_delay_secs(&job, &on, 0, 0.0), 7.0);
        assert_eq!(retry_delay_secs(&job, &on, 1_000_000, 0.0), 60.0);
    }

    #[test]
    fn partial_jitter_keeps_a_lower_bound_and_rounds_half_to_even() {
        let job = JobRetry {
            retry_after: 10.0,
            backoff_enabled: true,
            max_delay: Some(10.0),
            jitter: Some(0.5),
        };
        assert_eq!(
            retry_delay_secs(&job, &RetryDefaults::default(), 1, 0.0),
            5.0
        );
        assert_eq!(
            retry_delay_secs(&job, &RetryDefaults::default(), 1, 1.0),
            10.0
        );
        let half = JobRetry {
            retry_after: 2.5,
            ..JobRetry::default()
        };
        assert_eq!(
            retry_delay(&half, &RetryDefaults::default(), 1),
            Duration::from_secs(2)
        );
    }
}
