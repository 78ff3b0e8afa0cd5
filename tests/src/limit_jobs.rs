//! Jobs and ledger checks for the proof that limits hold across worker processes: each job writes
//! its start and end with a timestamp to a file shared by every process.

use std::io::Write;
use std::time::{Duration, SystemTime};

use routemq::middleware::{ConcurrencyLimited, Middleware, RateLimited, WithoutOverlapping};
use routemq::prelude::*;

/// Which limit a [`Limited`] job runs under.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Control {
    /// None of its own (queue-level limits, if the worker sets them).
    Free,
    /// `WithoutOverlapping::new(name)`.
    Overlap(String),
    /// `ConcurrencyLimited::new(name, limit)`.
    Concurrency(String, u32),
    /// `RateLimited::new(name, limit, period)`.
    Rate(String, u32, u64),
    /// `WithoutOverlapping::new(name).expire_after(2 s)`, and its first attempt kills its worker.
    LockThenDie(String),
}

/// Writes `"{event} {n} {pid} {attempt} {micros since the epoch}"` lines to `path`.
#[derive(Debug, Clone)]
#[job(name = "e2e.Limited", max_tries = 3, timeout = 60)]
pub struct Limited {
    /// The ledger file.
    pub path: String,
    /// Its number.
    pub n: u64,
    /// How long it runs.
    pub sleep_ms: u64,
    /// The limit it runs under.
    pub control: Control,
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn append(path: &str, event: &str, n: u64, attempt: u32) -> std::io::Result<()> {
    let line = format!(
        "{event} {n} {} {attempt} {}\n",
        std::process::id(),
        now_micros()
    );
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(line.as_bytes())
}

impl Job for Limited {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        append(&self.path, "start", self.n, ctx.attempts())?;
        if matches!(self.control, Control::LockThenDie(_)) && ctx.attempts() == 1 {
            std::process::abort();
        }
        tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
        append(&self.path, "done", self.n, ctx.attempts())?;
        Ok(())
    }

    fn middleware(&self) -> Vec<Box<dyn Middleware>> {
        let retry = Duration::from_millis(50);
        match &self.control {
            Control::Free => Vec::new(),
            Control::Overlap(name) => {
                vec![Box::new(
                    WithoutOverlapping::new(name.clone()).release_after(retry),
                )]
            }
            Control::Concurrency(name, limit) => {
                vec![Box::new(
                    ConcurrencyLimited::new(name.clone(), *limit).release_after(retry),
                )]
            }
            Control::Rate(name, limit, period_ms) => vec![Box::new(RateLimited::new(
                name.clone(),
                *limit,
                Duration::from_millis(*period_ms),
            ))],
            Control::LockThenDie(name) => vec![Box::new(
                WithoutOverlapping::new(name.clone())
                    .expire_after(Duration::from_secs(2))
                    .release_after(retry),
            )],
        }
    }
}

/// One ledger line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// `true` for a start, `false` for an end.
    pub start: bool,
    /// The job's number.
    pub n: u64,
    /// The worker process.
    pub pid: u32,
    /// The attempt.
    pub attempt: u32,
    /// When, in microseconds since the epoch.
    pub at: u64,
}

/// Reads a ledger file (missing: empty).
pub fn read_stamps(path: &std::path::Path) -> Vec<Stamp> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            Some(Stamp {
                start: *parts.first()? == "start",
                n: parts.get(1)?.parse().ok()?,
                pid: parts.get(2)?.parse().ok()?,
                attempt: parts.get(3)?.parse().ok()?,
                at: parts.get(4)?.parse().ok()?,
            })
        })
        .collect()
}

/// The most jobs that were running at the same moment.
pub fn max_concurrency(stamps: &[Stamp]) -> usize {
    let mut events: Vec<(u64, i32)> = stamps
        .iter()
        .map(|s| (s.at, if s.start { 1 } else { -1 }))
        .collect();
    // At equal times, ends first: a job that ended when another started did not overlap it.
    events.sort_by_key(|&(at, delta)| (at, delta));
    let (mut now, mut max) = (0i32, 0i32);
    for (_, delta) in events {
        now += delta;
        max = max.max(now);
    }
    usize::try_from(max).unwrap_or(0)
}

/// The most starts within any window of `period`.
pub fn max_starts_per_window(stamps: &[Stamp], period: Duration) -> usize {
    let mut starts: Vec<u64> = stamps.iter().filter(|s| s.start).map(|s| s.at).collect();
    starts.sort_unstable();
    let window = u64::try_from(period.as_micros()).unwrap_or(u64::MAX);
    let mut max = 0;
    let mut first = 0;
    for last in 0..starts.len() {
        while starts[last] - starts[first] >= window {
            first += 1;
        }
        max = max.max(last - first + 1);
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(start: bool, at: u64) -> Stamp {
        Stamp {
            start,
            n: 0,
            pid: 0,
            attempt: 1,
            at,
        }
    }

    #[test]
    fn overlap_and_windows_are_measured() {
        let stamps = [
            stamp(true, 0),
            stamp(true, 5),
            stamp(false, 10),
            stamp(true, 10),
            stamp(false, 20),
            stamp(false, 30),
        ];
        assert_eq!(max_concurrency(&stamps), 2);
        assert_eq!(max_starts_per_window(&stamps, Duration::from_micros(10)), 2);
        assert_eq!(max_starts_per_window(&stamps, Duration::from_micros(11)), 3);
    }
}
