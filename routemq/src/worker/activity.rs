//! What a worker did lately, for its presence record: jobs finished per minute over the last
//! hour, and per job type the runs, failures and a runtime histogram over the last 10 to 20
//! minutes. Updated once per job under a short lock; read once per beat.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Outcome;

/// Minutes of per-minute counts kept.
pub(crate) const MINUTES: usize = 60;

/// One minute, in milliseconds.
pub(crate) const MINUTE_MS: i64 = 60_000;

/// The start of the minute that `millis` (since the Unix epoch) falls in.
pub(crate) fn minute_of(millis: i64) -> i64 {
    millis / MINUTE_MS * MINUTE_MS
}

/// The start of the oldest of the last [`MINUTES`] minutes up to `millis`.
pub(crate) fn first_minute(millis: i64) -> i64 {
    minute_of(millis) - MINUTE_MS * (MINUTES as i64 - 1)
}

/// Now, in milliseconds since the Unix epoch.
fn now_millis() -> i64 {
    crate::driver::epoch_millis(std::time::SystemTime::now())
}

/// How long one runtime window lasts; a record covers the current window and the one before.
const WINDOW: Duration = Duration::from_secs(600);

/// The smallest runtime bucket's upper bound, in seconds (0.1 ms).
const SMALLEST: f64 = 1e-4;
/// Each bucket's upper bound is this many times the one before (a quantile is within 5 %).
const GROWTH: f64 = 1.1;
/// The last bucket (from about 20 hours); longer runtimes are counted in it.
const LAST_BUCKET: u16 = 215;

/// Jobs that ended in one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteCount {
    /// The minute's start, in milliseconds since the Unix epoch.
    pub minute: i64,
    /// Jobs that succeeded.
    pub succeeded: u64,
    /// Attempts that failed (retried later, or moved to the failed store).
    pub failed: u64,
}

/// One job type's recent runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeActivity {
    /// Attempts that ran.
    pub runs: u64,
    /// Attempts that failed.
    pub failures: u64,
    /// Runtimes: bucket index → attempts (bucket `i` ends at 0.1 ms × 1.1^i).
    pub runtimes: BTreeMap<u16, u64>,
}

impl TypeActivity {
    /// Adds another record's counts to this one.
    pub fn merge(&mut self, other: &TypeActivity) {
        self.runs += other.runs;
        self.failures += other.failures;
        for (bucket, count) in &other.runtimes {
            *self.runtimes.entry(*bucket).or_default() += count;
        }
    }

    /// The runtime below which a fraction `q` (0 to 1) of the runs ended, in seconds (the
    /// geometric middle of its bucket: within 5 % from 0.1 ms to 20 hours); `None` without runs.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.runtimes.values().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in &self.runtimes {
            seen += count;
            if seen >= rank {
                return Some(bucket_bound(*bucket) / GROWTH.sqrt());
            }
        }
        None
    }
}

/// The runtime bucket of `seconds`.
pub(crate) fn bucket_of(seconds: f64) -> u16 {
    if seconds.is_nan() || seconds <= SMALLEST {
        return 0;
    }
    let index = ((seconds / SMALLEST).ln() / GROWTH.ln()).ceil();
    if index >= f64::from(LAST_BUCKET) {
        LAST_BUCKET
    } else {
        index as u16
    }
}

/// The upper bound of runtime bucket `bucket`, in seconds.
pub(crate) fn bucket_bound(bucket: u16) -> f64 {
    SMALLEST * GROWTH.powi(i32::from(bucket))
}

#[derive(Debug)]
struct State {
    minutes: VecDeque<MinuteCount>,
    window_started: Instant,
    current: BTreeMap<String, TypeActivity>,
    previous: BTreeMap<String, TypeActivity>,
}

/// A worker's recent activity.
#[derive(Debug)]
pub(crate) struct Activity {
    state: Mutex<State>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                minutes: VecDeque::with_capacity(MINUTES + 1),
                window_started: Instant::now(),
                current: BTreeMap::new(),
                previous: BTreeMap::new(),
            }),
        }
    }
}

impl State {
    /// Starts a new runtime window when the current one is over (both, after a long pause).
    fn roll(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.window_started);
        if age >= WINDOW * 2 {
            self.previous.clear();
            self.current.clear();
        } else if age >= WINDOW {
            self.previous = std::mem::take(&mut self.current);
        } else {
            return;
        }
        self.window_started = now;
    }
}

impl Activity {
    /// Records how an attempt of job type `name` ended, and how long it ran (`None`: it did not).
    pub(crate) fn record(&self, name: &str, elapsed: Option<Duration>, outcome: Outcome) {
        let failed = matches!(outcome, Outcome::Retried | Outcome::Failed);
        if !failed && outcome != Outcome::Succeeded {
            return;
        }
        let minute = minute_of(now_millis());
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state
            .minutes
            .back()
            .is_none_or(|last| last.minute != minute)
        {
            state.minutes.push_back(MinuteCount {
                minute,
                ..MinuteCount::default()
            });
            while state.minutes.len() > MINUTES {
                state.minutes.pop_front();
            }
        }
        if let Some(last) = state.minutes.back_mut() {
            if failed {
                last.failed += 1;
            } else {
                last.succeeded += 1;
            }
        }
        state.roll(Instant::now());
        let Some(elapsed) = elapsed else {
            return;
        };
        let kind = state.current.entry(name.to_owned()).or_default();
        kind.runs += 1;
        kind.failures += u64::from(failed);
        *kind
            .runtimes
            .entry(bucket_of(elapsed.as_secs_f64()))
            .or_default() += 1;
    }

    /// The per-minute counts of the last hour, oldest first, and the recent runs by job type.
    pub(crate) fn snapshot(&self) -> (Vec<MinuteCount>, BTreeMap<String, TypeActivity>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.roll(Instant::now());
        let first = first_minute(now_millis());
        while state.minutes.front().is_some_and(|m| m.minute < first) {
            state.minutes.pop_front();
        }
        let mut types = state.previous.clone();
        for (name, activity) in &state.current {
            types.entry(name.clone()).or_default().merge(activity);
        }
        (state.minutes.iter().copied().collect(), types)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_within_a_bucket() {
        let mut kind = TypeActivity::default();
        for ms in 1..=100 {
            *kind
                .runtimes
                .entry(bucket_of(f64::from(ms) / 1000.0))
                .or_default() += 1;
        }
        let p50 = kind.quantile(0.5).expect("runs");
        let p95 = kind.quantile(0.95).expect("runs");
        assert!((0.0475..=0.0525).contains(&p50), "{p50}");
        assert!((0.09025..=0.09975).contains(&p95), "{p95}");
        assert_eq!(TypeActivity::default().quantile(0.5), None);
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(1e9), LAST_BUCKET);
    }

    #[test]
    fn minutes_count_successes_and_failures_by_type() {
        let activity = Activity::default();
        let ms = Some(Duration::from_millis(3));
        activity.record("a", ms, Outcome::Succeeded);
        activity.record("a", ms, Outcome::Retried);
        activity.record("b", None, Outcome::Failed);
        activity.record("b", ms, Outcome::Released);
        let (minutes, types) = activity.snapshot();
        let total: (u64, u64) = minutes
            .iter()
            .fold((0, 0), |(s, f), m| (s + m.succeeded, f + m.failed));
        assert_eq!(total, (1, 2));
        assert_eq!(types["a"].runs, 2);
        assert_eq!(types["a"].failures, 1);
        assert!(
            !types.contains_key("b"),
            "a job that did not run has no runtime"
        );
    }

    #[test]
    fn runtimes_older_than_two_windows_are_dropped() {
        let activity = Activity::default();
        activity.record("a", Some(Duration::from_millis(3)), Outcome::Succeeded);
        let later = |by: Duration| {
            let mut state = activity.state.lock().expect("lock");
            let at = state.window_started + by;
            state.roll(at);
        };
        later(WINDOW);
        assert_eq!(
            activity.snapshot().1["a"].runs,
            1,
            "still in the previous window"
        );
        later(WINDOW * 2);
        assert!(
            activity.snapshot().1.is_empty(),
            "an idle worker reports no old runs"
        );
    }
}
