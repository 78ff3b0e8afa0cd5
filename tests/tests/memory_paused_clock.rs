//! Retry timing on the memory driver under tokio's paused clock: exact delays, no real waiting.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use routemq::driver::QueueDriver;
use routemq::driver::memory::MemoryDriver;
use routemq::prelude::*;
use routemq::{Settings, WorkerReport};
use tokio::time::Instant;

static BACKOFF_RUNS: Mutex<Vec<Instant>> = Mutex::new(Vec::new());
static RELEASE_RUNS: Mutex<Vec<Instant>> = Mutex::new(Vec::new());

fn stamp(runs: &Mutex<Vec<Instant>>) -> usize {
    let mut runs = runs.lock().unwrap_or_else(PoisonError::into_inner);
    runs.push(Instant::now());
    runs.len()
}

fn gaps(runs: &Mutex<Vec<Instant>>) -> Vec<Duration> {
    let runs = runs.lock().unwrap_or_else(PoisonError::into_inner);
    runs.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Fails every time, with exponential backoff from 10 s capped at 30 s.
#[derive(Debug)]
#[job(
    name = "paused.Backoff",
    max_tries = 4,
    retry_after = 10,
    backoff = "exponential",
    max_delay = 30
)]
struct Backoff;

impl Job for Backoff {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        stamp(&BACKOFF_RUNS);
        Err(JobError::msg("always"))
    }
}

/// Asks to be released for 90 s, then succeeds.
#[derive(Debug)]
#[job(name = "paused.Release", max_tries = 2)]
struct Release;

impl Job for Release {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        if stamp(&RELEASE_RUNS) == 1 {
            Err(JobError::release(Duration::from_secs(90)))
        } else {
            Ok(())
        }
    }
}

async fn run_one<T: Job>(job: T, queue: &str) -> WorkerReport {
    let driver: Arc<dyn QueueDriver> = Arc::new(MemoryDriver::new());
    let manager = QueueManager::new(Settings::default());
    manager.register("memory", Arc::clone(&driver));
    manager
        .push(job)
        .on_connection("memory")
        .on_queue(queue)
        .await
        .expect("dispatch");
    let options = WorkerOptions {
        queues: vec![queue.to_owned()],
        stop_when_empty: true,
        ..WorkerOptions::default()
    };
    Worker::new(driver, "memory", options)
        .run()
        .await
        .expect("runs")
}

fn assert_close(actual: &[Duration], expected: &[u64]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?}");
    for (gap, secs) in actual.iter().zip(expected) {
        let want = Duration::from_secs(*secs);
        assert!(
            *gap >= want && *gap < want + Duration::from_millis(100),
            "gap {gap:?}, expected {want:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_waits_10_20_then_the_cap() {
    let report = run_one(Backoff, "paused-backoff").await;
    assert_eq!((report.retried, report.failed), (3, 1));
    assert_close(&gaps(&BACKOFF_RUNS), &[10, 20, 30]);
}

#[tokio::test(start_paused = true)]
async fn release_waits_exactly_the_requested_delay() {
    let report = run_one(Release, "paused-release").await;
    assert_eq!((report.retried, report.succeeded), (1, 1));
    assert_close(&gaps(&RELEASE_RUNS), &[90]);
}
