//! How many jobs a worker keeps reserved ahead of its free slots.
//!
//! With `--prefetch N`, N. Without it, four times the concurrency (Celery's rule), grown for
//! short jobs to hold about [`HORIZON`] of work at the rate the worker starts jobs, up to
//! [`CEILING`]. Jobs of a second or more keep the base size, so idle workers elsewhere still get
//! their share; jobs of a millisecond no longer wait on a claim every few jobs (at concurrency 1
//! on PostgreSQL, a buffer of 4 capped the drain at a few thousand jobs a second, one of 64 ran
//! several times as fast). At the rate jobs were starting when it was claimed, a prefetched job
//! waits about [`HORIZON`] for a slot, however large the buffer has grown, and its attempt counts
//! only when it starts. The rate forgets within a few hundred milliseconds, and a reservation
//! that finds the queue empty resets it: a worker that idled starts again from the base size.

use std::time::Duration;

use tokio::time::Instant;

/// The work a grown buffer holds, at the rate jobs start.
const HORIZON: Duration = Duration::from_millis(50);

/// The largest buffer the rate grows (a larger base from a high concurrency stays).
const CEILING: usize = 256;

/// The shortest span a rate is measured over.
const WINDOW: Duration = Duration::from_millis(20);

/// The smoothed rate's memory: a measurement this old weighs about a third of a fresh one (so a
/// worker that idled for a poll interval starts from its base size again).
const MEMORY: Duration = Duration::from_millis(100);

/// The prefetch buffer's size for one worker.
#[derive(Debug)]
pub(super) struct PrefetchSize {
    /// `--prefetch`, when given.
    fixed: Option<usize>,
    /// The smallest size: four times the concurrency.
    base: usize,
    /// Jobs started per second, smoothed.
    rate: f64,
    /// Jobs started since `since`.
    started: u64,
    since: Instant,
}

impl PrefetchSize {
    /// `fixed` when given (`--prefetch`), else adaptive from four times `concurrency`.
    pub(super) fn new(fixed: Option<usize>, concurrency: usize) -> Self {
        Self {
            fixed,
            base: concurrency.saturating_mul(4),
            rate: 0.0,
            started: 0,
            since: Instant::now(),
        }
    }

    /// Counts jobs that started.
    pub(super) fn started(&mut self, jobs: usize) {
        self.started += jobs as u64;
    }

    /// A reservation found nothing: the queue is empty, and the next jobs may be of any length.
    pub(super) fn found_nothing(&mut self) {
        self.rate = 0.0;
        self.started = 0;
        self.since = Instant::now();
    }

    /// The size now.
    pub(super) fn now(&mut self) -> usize {
        if let Some(fixed) = self.fixed {
            return fixed;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.since);
        if elapsed >= WINDOW {
            let sample = self.started as f64 / elapsed.as_secs_f64();
            let weight = 1.0 - (-elapsed.as_secs_f64() / MEMORY.as_secs_f64()).exp();
            self.rate = weight * sample + (1.0 - weight) * self.rate;
            self.started = 0;
            self.since = now;
        }
        let grown = (self.rate * HORIZON.as_secs_f64()) as usize;
        grown.clamp(self.base, self.base.max(CEILING))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts `per_window` jobs in each of `windows` windows, and returns the size after.
    fn after(size: &mut PrefetchSize, per_window: usize, windows: u32) -> usize {
        for _ in 0..windows {
            size.started(per_window);
            size.since -= WINDOW;
            size.now();
        }
        size.now()
    }

    #[test]
    fn a_given_size_is_kept_whatever_the_rate() {
        let mut size = PrefetchSize::new(Some(3), 1);
        assert_eq!(after(&mut size, 1000, 10), 3);
        let mut none = PrefetchSize::new(Some(0), 8);
        assert_eq!(after(&mut none, 1000, 10), 0);
    }

    #[test]
    fn slow_jobs_keep_four_times_the_concurrency() {
        let mut size = PrefetchSize::new(None, 8);
        assert_eq!(size.now(), 32);
        // 8 slots of 100 ms jobs: 80 jobs a second, 4 in 50 ms.
        assert_eq!(after(&mut size, 2, 50), 32);
    }

    #[test]
    fn short_jobs_grow_the_buffer_to_the_horizon_and_the_ceiling() {
        let mut size = PrefetchSize::new(None, 1);
        assert_eq!(size.now(), 4);
        // 2,000 jobs a second (40 per 20 ms window): about 100 in 50 ms.
        let grown = after(&mut size, 40, 40);
        assert!((90..=100).contains(&grown), "{grown}");
        // 20,000 a second would be 1,000: the ceiling.
        assert_eq!(after(&mut size, 400, 40), CEILING);
        // Work stops: the buffer shrinks back.
        assert_eq!(after(&mut size, 0, 60), 4);
    }

    #[test]
    fn an_idle_spell_or_an_empty_queue_brings_the_base_size_back() {
        let mut size = PrefetchSize::new(None, 1);
        assert_eq!(after(&mut size, 400, 40), CEILING);
        // One turn after a 3 s poll interval with nothing started.
        size.since -= Duration::from_secs(3);
        assert_eq!(size.now(), 4);
        assert_eq!(after(&mut size, 400, 40), CEILING);
        size.found_nothing();
        assert_eq!(size.now(), 4);
    }

    #[test]
    fn a_high_concurrency_keeps_its_larger_base() {
        let mut size = PrefetchSize::new(None, 100);
        assert_eq!(after(&mut size, 400, 40), 400);
    }
}
