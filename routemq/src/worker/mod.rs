//! The worker: reserves jobs, runs them with a timeout and a heartbeat, and settles each one.
//!
//! One [`Worker`] serves one or more queues of one connection, running up to
//! [`WorkerOptions::concurrency`] jobs at once. Per job: decode through the registry → run
//! `handle` under the job's timeout while a heartbeat renews the lease → acknowledge on success; on
//! failure, release with the retry delay while tries remain, otherwise call `failed()` once and move
//! the job to the failed store. A reaper returns leases that stopped beating (a worker died) to
//! their queue. See [`Shutdown`] for stopping.
//!
//! ```
//! use std::sync::Arc;
//! use routemq::prelude::*;
//! use routemq::driver::memory::MemoryDriver;
//!
//! #[job(queue = "greetings")]
//! struct Greet { name: String }
//!
//! impl Job for Greet {
//!     async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
//!         println!("hello, {}", self.name);
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = routemq::QueueManager::new(routemq::Settings::default());
//! manager.register("memory", Arc::new(MemoryDriver::new()));
//! manager.push(Greet { name: "Ada".into() }).on_connection("memory").await?;
//!
//! let options = WorkerOptions { queues: vec!["greetings".into()], stop_when_empty: true, ..WorkerOptions::default() };
//! let report = Worker::new(manager.connection("memory").await?, "memory", options).run().await?;
//! assert_eq!(report.succeeded, 1);
//! # Ok(()) }
//! ```

mod background;
mod runner;
mod shutdown;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use shutdown::Shutdown;

use crate::config::Settings;
use crate::driver::{Lease, QueueDriver};
use crate::names::{InvalidQueueName, validate_queue_name};
use crate::registry::{Registry, RegistryError};
use crate::retry::RetryDefaults;

/// How a worker runs. `Default` gives RouteMQ's defaults and serves the `default` queue.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerOptions {
    /// Queues to serve, in priority order (earlier queues are emptied first).
    pub queues: Vec<String>,
    /// Jobs run at once (default 8).
    pub concurrency: usize,
    /// How long an idle worker waits before polling again when the driver cannot wake it (default 3 s).
    pub sleep: Duration,
    /// Stop after this many jobs have been handled (any outcome).
    pub max_jobs: Option<u64>,
    /// Stop reserving after this long.
    pub max_time: Option<Duration>,
    /// Stop once no job is ready, delayed or reserved (by any worker) on the served queues.
    pub stop_when_empty: bool,
    /// Overrides every job's `max_tries` (`--max-tries`).
    pub max_tries: Option<u32>,
    /// The timeout for jobs whose envelope has none (`--timeout`, default 60 s).
    pub timeout: Duration,
    /// A lease not renewed for this long is taken back by the reaper (default 300 s).
    pub visibility_timeout: Duration,
    /// How often running jobs' leases are renewed (default 10 s).
    pub heartbeat_interval: Duration,
    /// How often the reaper runs (default 30 s; zero turns it off).
    pub reaper_interval: Duration,
    /// How long running jobs may finish after a drain starts (default 300 s).
    pub shutdown_grace: Duration,
    /// Worker-wide backoff defaults.
    pub retry: RetryDefaults,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self::from_settings(&Settings::default())
    }
}

impl WorkerOptions {
    /// Defaults with the reliability settings taken from `settings`.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            queues: vec!["default".to_owned()],
            concurrency: 8,
            sleep: Duration::from_secs(3),
            max_jobs: None,
            max_time: None,
            stop_when_empty: false,
            max_tries: None,
            timeout: Duration::from_secs(60),
            visibility_timeout: settings.visibility_timeout,
            heartbeat_interval: settings.heartbeat_interval,
            reaper_interval: settings.reaper_interval,
            shutdown_grace: settings.shutdown_grace,
            retry: settings.retry,
        }
    }
}

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WorkerReport {
    /// Jobs handled, whatever the outcome.
    pub processed: u64,
    /// Jobs acknowledged.
    pub succeeded: u64,
    /// Failed attempts released to run again.
    pub retried: u64,
    /// Jobs moved to the failed store.
    pub failed: u64,
    /// Running jobs released back to their queue at shutdown.
    pub released: u64,
}

/// A worker that cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The registry is invalid (duplicate job names).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A served queue name is invalid.
    #[error(transparent)]
    InvalidQueueName(#[from] InvalidQueueName),
    /// No queue to serve.
    #[error("a worker needs at least one queue to serve")]
    NoQueues,
    /// Concurrency must be at least 1.
    #[error("worker concurrency must be at least 1")]
    ZeroConcurrency,
}

/// How one job ended, as the worker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeeded,
    Retried,
    Failed,
    Released,
    /// The lease was lost or a driver call failed; the reaper will hand the job out again.
    Abandoned,
}

#[derive(Debug, Default)]
struct Counters {
    processed: AtomicU64,
    succeeded: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    released: AtomicU64,
}

/// State shared by the loop, the job tasks and the background tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) driver: Arc<dyn QueueDriver>,
    pub(crate) connection: String,
    pub(crate) registry: &'static Registry,
    pub(crate) options: WorkerOptions,
    pub(crate) shutdown: Shutdown,
    pub(crate) running: Mutex<HashMap<u64, Lease>>,
    pub(crate) acks: background::AckSender,
    counters: Counters,
}

impl Shared {
    pub(crate) fn running(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Lease>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn count(&self, outcome: Outcome) {
        self.counters.processed.fetch_add(1, Ordering::Relaxed);
        let counter = match outcome {
            Outcome::Succeeded => &self.counters.succeeded,
            Outcome::Retried => &self.counters.retried,
            Outcome::Failed => &self.counters.failed,
            Outcome::Released => &self.counters.released,
            Outcome::Abandoned => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn report(&self) -> WorkerReport {
        let c = &self.counters;
        WorkerReport {
            processed: c.processed.load(Ordering::Relaxed),
            succeeded: c.succeeded.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            released: c.released.load(Ordering::Relaxed),
        }
    }
}

/// Most jobs reserved in one driver call.
const MAX_BATCH: usize = 100;

/// A queue worker. Build it with [`Worker::new`], stop it with [`Worker::shutdown_handle`].
#[derive(Debug)]
pub struct Worker {
    driver: Arc<dyn QueueDriver>,
    connection: String,
    options: WorkerOptions,
    shutdown: Shutdown,
}

impl Worker {
    /// A worker for `driver`, recorded as `connection` in contexts and failed jobs.
    pub fn new(
        driver: Arc<dyn QueueDriver>,
        connection: impl Into<String>,
        options: WorkerOptions,
    ) -> Self {
        Self {
            driver,
            connection: connection.into(),
            options,
            shutdown: Shutdown::new(),
        }
    }

    /// A handle to stop the worker (drain or now).
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Uses `shutdown` as the worker's stop handle (for example one shared by several workers).
    #[must_use]
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Runs until a limit is reached, the queues are empty (with `stop_when_empty`) or a shutdown.
    pub async fn run(self) -> Result<WorkerReport, WorkerError> {
        let registry = Registry::global()?;
        if self.options.queues.is_empty() {
            return Err(WorkerError::NoQueues);
        }
        if self.options.concurrency == 0 {
            return Err(WorkerError::ZeroConcurrency);
        }
        for queue in &self.options.queues {
            validate_queue_name(queue)?;
        }
        tracing::info!(
            connection = %self.connection,
            queues = %self.options.queues.join(","),
            concurrency = self.options.concurrency,
            jobs = %registry.names().join(","),
            "queue worker started"
        );
        let (acks, acker) = background::spawn_acker(Arc::clone(&self.driver));
        let shared = Arc::new(Shared {
            driver: self.driver,
            connection: self.connection,
            registry,
            options: self.options,
            shutdown: self.shutdown,
            running: Mutex::new(HashMap::new()),
            acks,
            counters: Counters::default(),
        });
        let background = background::spawn_lease_keepers(&shared);
        let mut tasks = JoinSet::new();
        reserve_loop(&shared, &mut tasks).await;
        finish(&shared, &mut tasks).await;
        background.stop().await;
        let report = shared.report();
        drop(shared);
        acker.flush().await;
        tracing::info!(
            processed = report.processed,
            succeeded = report.succeeded,
            retried = report.retried,
            failed = report.failed,
            released = report.released,
            "queue worker stopped"
        );
        Ok(report)
    }
}

/// Reserves and starts jobs until a limit, an empty queue (with `stop_when_empty`) or a drain.
async fn reserve_loop(shared: &Arc<Shared>, tasks: &mut JoinSet<Outcome>) {
    let options = &shared.options;
    let started = Instant::now();
    let deadline = options.max_time.map(|t| started + t);
    let mut wake = shared.driver.wake_signal();
    let mut reserved_total: u64 = 0;
    let mut next_key: u64 = 0;
    let mut failures: u32 = 0;
    loop {
        if shared.shutdown.is_draining() {
            break;
        }
        if options.max_jobs.is_some_and(|max| reserved_total >= max) {
            tracing::info!("worker stopping: --max-jobs reached");
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            tracing::info!("worker stopping: --max-time reached");
            break;
        }
        let free = options.concurrency.saturating_sub(tasks.len());
        let mut idle = false;
        if free > 0 {
            if let Some(wake) = wake.as_mut() {
                wake.borrow_and_update();
            }
            let remaining = options
                .max_jobs
                .map_or(u64::MAX, |max| max - reserved_total);
            let want = free
                .min(MAX_BATCH)
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            match shared.driver.reserve(&options.queues, want).await {
                Ok(jobs) => {
                    if failures > 0 {
                        tracing::info!(connection = %shared.connection, "connection recovered");
                    }
                    failures = 0;
                    idle = jobs.is_empty();
                    for job in jobs {
                        reserved_total += 1;
                        next_key += 1;
                        shared.running().insert(next_key, job.lease.clone());
                        tasks.spawn(runner::run(Arc::clone(shared), job, next_key));
                    }
                }
                Err(error) => {
                    failures += 1;
                    let pause = background::backoff(failures);
                    tracing::warn!(connection = %shared.connection, %error, retry_in = ?pause, "reserve failed");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = shared.shutdown.drained() => {}
                    }
                    continue;
                }
            }
            if idle && tasks.is_empty() && options.stop_when_empty {
                if shared.acks.pending() > 0 {
                    // Our own acknowledgements are still on their way: they count as reserved.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                if let Ok(true) = queues_drained(shared).await {
                    tracing::info!("worker stopping: queues are empty");
                    break;
                }
            }
            if !idle && tasks.len() < options.concurrency {
                continue;
            }
        }
        let idle_wait = if idle {
            idle_wait(shared).await
        } else {
            Duration::from_secs(3600)
        };
        tokio::select! {
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => record(shared, joined),
            () = background::changed(wake.as_mut()), if idle => {}
            () = tokio::time::sleep(idle_wait), if idle => {}
            () = shared.shutdown.drained() => {}
            () = sleep_until(deadline) => {}
        }
    }
}

/// Whether no job is ready, delayed or reserved (by any worker) on the served queues. A job
/// leased by a worker that died counts: the reaper will hand it out again.
async fn queues_drained(shared: &Shared) -> Result<bool, crate::driver::DriverError> {
    for queue in &shared.options.queues {
        let stats = shared.driver.stats(queue).await?;
        if stats.ready + stats.delayed + stats.reserved > 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// How long an idle worker sleeps: the poll interval, or less when a delayed job is due sooner.
async fn idle_wait(shared: &Shared) -> Duration {
    let sleep = shared.options.sleep;
    match shared.driver.next_due(&shared.options.queues).await {
        Ok(Some(due)) => due.min(sleep) + Duration::from_millis(1),
        _ => sleep,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn record(shared: &Shared, joined: Result<Outcome, tokio::task::JoinError>) {
    match joined {
        Ok(outcome) => shared.count(outcome),
        // `runner::run` catches panics in user code; this is a bug in routemq itself.
        Err(error) => tracing::error!(%error, "job task ended unexpectedly"),
    }
}

/// Waits for running jobs; once a drain starts they get the grace period, then are released.
async fn finish(shared: &Shared, tasks: &mut JoinSet<Outcome>) {
    let mut grace_ends: Option<Instant> = None;
    while !tasks.is_empty() {
        if grace_ends.is_none() && shared.shutdown.is_draining() {
            tracing::info!(running = tasks.len(), grace = ?shared.options.shutdown_grace, "draining running jobs");
            grace_ends = Some(Instant::now() + shared.options.shutdown_grace);
        }
        tokio::select! {
            Some(joined) = tasks.join_next() => record(shared, joined),
            () = shared.shutdown.drained(), if grace_ends.is_none() => {}
            () = sleep_until(grace_ends) => {
                tracing::warn!(running = tasks.len(), "shutdown grace expired: releasing running jobs");
                shared.shutdown.now();
                grace_ends = Some(Instant::now() + Duration::from_secs(3600));
            }
        }
    }
}
