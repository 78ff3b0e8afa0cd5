//! The soak run (`reliability --soak 30m`, not in CI): a producer at a steady rate and two
//! workers for the whole duration, one of them killed with `kill -9` and replaced every
//! [`KILL_EVERY`]; the other lives throughout and its resident memory is sampled. At the end the
//! ledger, the failed store and the queue must agree, and the long-lived worker's memory must not
//! have grown beyond [`GROWTH_LIMIT`] of its level once warmed up.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::scenarios::{Owned, Run, stop_all};
use super::{Row, Target};

/// Jobs dispatched per second.
const RATE: u64 = 200;

/// How often the killed worker is killed.
const KILL_EVERY: Duration = Duration::from_secs(30);

/// How often memory is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// The largest growth of resident memory allowed from the first sample after warm-up to the end.
const GROWTH_LIMIT: f64 = 1.5;

/// Resident memory of a process, in KiB (`VmRSS` of `/proc/PID/status`).
fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The memory of the long-lived worker: first sample after warm-up, peak, last.
#[derive(Debug, Default, Clone, Copy)]
pub struct Memory {
    /// KiB at the first sample after a minute (or a tenth of the run, if shorter).
    pub start: u64,
    /// The highest sample, KiB.
    pub peak: u64,
    /// The last sample, KiB.
    pub end: u64,
    /// The dispatch rate reached, jobs per second.
    pub rate: f64,
}

/// One soak run on `target`; the row, and the worker's memory.
pub async fn soak(target: &Target, duration: Duration) -> (Row, Memory) {
    let mut row = Row::new(target.driver.clone(), "soak");
    let mut memory = Memory::default();
    let result = soak_run(target, duration, &mut row, &mut memory).await;
    row.record(result);
    (row, memory)
}

async fn soak_run(
    target: &Target,
    duration: Duration,
    row: &mut Row,
    memory: &mut Memory,
) -> Result<(), String> {
    let run = Arc::new(Run::new(target, "soak").await?);
    let mut workers = vec![
        run.worker(Duration::from_secs(1))?,
        run.worker(Duration::from_secs(1))?,
    ];
    let steady = workers[0].pid();
    let started = Instant::now();
    let producer = {
        let run = Arc::clone(&run);
        Owned::spawn(async move {
            let mut dispatched = BTreeSet::new();
            let mut meant_to_fail = BTreeSet::new();
            let mut refused = 0u64;
            let mut ticker = tokio::time::interval(Duration::from_millis(1_000 / RATE));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0;
            while started.elapsed() < duration {
                ticker.tick().await;
                let fail = n % 500 == 499;
                let pushed = run
                    .manager
                    .push(run.job(n, 5, fail))
                    .on_queue(run.queue.clone())
                    .await;
                if pushed.is_ok() {
                    dispatched.insert(n);
                    if fail {
                        meant_to_fail.insert(n);
                    }
                } else {
                    refused += 1;
                }
                n += 1;
            }
            (dispatched, meant_to_fail, refused)
        })
    };
    let warm_up = (duration / 10).min(Duration::from_secs(60));
    let mut killed = BTreeSet::new();
    let mut last_kill = Instant::now();
    while started.elapsed() < duration {
        tokio::time::sleep(SAMPLE_EVERY.min(duration)).await;
        if let Some(kib) = resident_kib(steady) {
            if started.elapsed() >= warm_up && memory.start == 0 {
                memory.start = kib;
            }
            memory.peak = memory.peak.max(kib);
            memory.end = kib;
        }
        if last_kill.elapsed() >= KILL_EVERY {
            killed.insert(workers[1].pid());
            workers[1].signal("KILL");
            workers[1].wait(Duration::from_secs(5));
            workers[1] = run.worker(Duration::from_secs(1))?;
            row.faults += 1;
            last_kill = Instant::now();
        }
    }
    let (dispatched, meant_to_fail, refused) = producer.join().await?;
    memory.rate = dispatched.len() as f64 / started.elapsed().as_secs_f64();
    if refused > dispatched.len() as u64 / 100 {
        row.problems
            .push(format!("{refused} dispatches failed, more than 1 in 100"));
    }
    if !workers[0].running() {
        row.problems.push("the long-lived worker exited".to_owned());
    }
    if memory.start == 0 {
        row.problems
            .push("the worker's memory was never sampled after warm-up".to_owned());
    }
    let drained = run.drained(Duration::from_secs(300)).await;
    stop_all(&mut workers).await;
    drained?;
    row.dispatched = dispatched.len() as u64;
    run.account(row, &dispatched, &meant_to_fail, &killed).await;
    row.unexplained("duplicates not explained by a kill");
    if memory.start > 0 && memory.end as f64 > memory.start as f64 * GROWTH_LIMIT {
        row.problems.push(format!(
            "the worker's memory grew from {} KiB to {} KiB",
            memory.start, memory.end
        ));
    }
    Ok(())
}

/// Parses `30m`, `90s`, `2h` or plain seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit) = match text.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3_600.0,
        _ => return None,
    };
    (number.is_finite() && number > 0.0).then(|| Duration::from_secs_f64(number * scale))
}
