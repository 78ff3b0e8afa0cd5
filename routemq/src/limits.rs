//! Bounds on every duration routemq stores or waits for.
//!
//! Delays (`dispatch_later`, `JobError::release`, retry delays), attempt timeouts and the worker's
//! intervals are at most [`MAX_DURATION`], ten years: far beyond any real schedule, and small
//! enough that adding it to any clock reading cannot overflow. A dispatch with a longer delay is
//! refused ([`QueueError::DelayTooLong`](crate::QueueError::DelayTooLong)); values read from a stored
//! envelope or returned by a handler are clamped to it, never a panic.

use std::time::Duration;

/// The longest delay, timeout or interval: ten years (of 365 days).
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// Seconds as a duration when they are a finite number from zero to [`MAX_DURATION`] (for values
/// given by a user, where anything else is an error rather than clamped).
pub fn checked_secs(secs: f64) -> Option<Duration> {
    (secs.is_finite() && (0.0..=MAX_DURATION.as_secs_f64()).contains(&secs))
        .then(|| Duration::from_secs_f64(secs))
}

/// `duration`, at most [`MAX_DURATION`].
pub fn clamp(duration: Duration) -> Duration {
    duration.min(MAX_DURATION)
}

/// Seconds as a duration from zero to [`MAX_DURATION`]: negative and NaN are zero, anything larger
/// (including infinity) is the maximum.
pub fn clamped_secs(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        Duration::ZERO
    } else if secs >= MAX_DURATION.as_secs_f64() {
        MAX_DURATION
    } else {
        Duration::from_secs_f64(secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_bounded_and_never_panic() {
        assert_eq!(clamped_secs(1e20), MAX_DURATION);
        assert_eq!(clamped_secs(f64::INFINITY), MAX_DURATION);
        assert_eq!(clamped_secs(f64::NAN), Duration::ZERO);
        assert_eq!(clamped_secs(-5.0), Duration::ZERO);
        assert_eq!(clamped_secs(2.5), Duration::from_millis(2500));
        assert_eq!(clamp(Duration::MAX), MAX_DURATION);
        assert_eq!(checked_secs(2.5), Some(Duration::from_millis(2500)));
        assert_eq!(checked_secs(1e20), None);
        assert_eq!(checked_secs(-1.0), None);
        assert_eq!(checked_secs(f64::NAN), None);
        let far = std::time::SystemTime::now() + MAX_DURATION;
        assert!(far > std::time::SystemTime::now());
        let _ = tokio::time::Instant::now() + MAX_DURATION;
    }
}
