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

pub(crate) mod activity;
mod background;
mod batch;
mod cancels;
mod chain;
mod hooks;
mod prefetch_size;
pub mod presence;
mod queue_limits;
mod reserver;
mod runner;
mod shutdown;
mod unique_key;
mod weights;
mod writes;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use activity::{MinuteCount, TypeActivity};
#[cfg_attr(
    not(any(feature = "http", feature = "schedule")),
    allow(unused_imports)
)]
pub(crate) use background::{backoff, retrying};
pub use hooks::{Hook, JobEvent, Lifecycle};
pub use presence::WorkerInfo;
#[cfg_attr(not(feature = "cli"), allow(unused_imports))]
pub(crate) use queue_limits::parse_assignment;
pub use queue_limits::{InvalidRate, Rate};
pub use shutdown::Shutdown;
#[cfg_attr(not(feature = "cli"), allow(unused_imports))]
pub(crate) use weights::parse_weighted;

use crate::config::Settings;
use crate::data::AppData;
use crate::driver::{Lease, QueueDriver};
use crate::middleware::Middleware;
use crate::names::{InvalidQueueName, validate_queue_name};
use crate::registry::{Registry, RegistryError};
use crate::retry::RetryDefaults;

/// How long a handler whose timeout passed (its cancellation token has fired) may take to return
/// before its task is aborted. A handler that does not yield (a CPU loop, a blocking call) cannot be
/// aborted: it keeps its slot and its lease, renewed by the heartbeat, until it returns, so its job
/// never runs twice at once; it is then settled as timed out.
pub const CANCEL_GRACE: Duration = Duration::from_secs(1);

/// How long an immediate stop (a second signal, or the end of the shutdown grace) waits for running
/// handlers before it releases their jobs and returns (a second later at most), even if a handler
/// never yields.
pub const STOP_WAIT: Duration = Duration::from_secs(5);

/// How a worker runs. `Default` gives RouteMQ's defaults and serves the `default` queue.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerOptions {
    /// Queues to serve, in priority order (earlier queues are emptied first).
    pub queues: Vec<String>,
    /// Weights for `queues`, in the same order (`--queue high:5,default:2,low:1`): queues are
    /// then served in proportion instead of in strict order. Empty: strict order.
    pub weights: Vec<u32>,
    /// Jobs run at once (default 8).
    pub concurrency: usize,
    /// Jobs reserved ahead of free slots, so that a busy worker fetches in batches (`None`: four
    /// times `concurrency`, Celery's rule, grown for short jobs to hold about 50 ms of work at the
    /// rate jobs start, up to 256). Their leases are kept alive like running jobs', and their
    /// attempt counts only when they start ([`QueueDriver::prefetch`]); set `Some(0)` for jobs so
    /// slow that another worker should take them instead.
    pub prefetch: Option<usize>,
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
    /// At most this many jobs of a queue run at once, across every worker of the connection
    /// (`--limit emails=5`).
    pub queue_limits: BTreeMap<String, u32>,
    /// At most this many jobs of a queue start per period, across every worker of the
    /// connection (`--rate emails=100/60s`).
    pub queue_rates: BTreeMap<String, Rate>,
    /// Failed jobs of the served queues older than this are deleted on each reaper pass
    /// (`QUEUE_FAILED_RETENTION_HOURS`).
    pub failed_retention: Option<Duration>,
    /// At most this many failed jobs are kept per served queue, the newest, trimmed on each
    /// reaper pass (`QUEUE_FAILED_MAX`).
    pub failed_max: Option<u64>,
    /// Batches on the connection finished longer ago than this are deleted on each reaper pass
    /// (`QUEUE_BATCH_RETENTION_HOURS`).
    pub batch_retention: Option<Duration>,
    /// How often the worker records itself in the store for the dashboard ([`presence`];
    /// default 5 s, zero turns it off).
    pub presence_interval: Duration,
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
            weights: Vec::new(),
            concurrency: 8,
            prefetch: None,
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
            failed_retention: settings.failed_retention,
            failed_max: settings.failed_max,
            batch_retention: settings.batch_retention,
            queue_limits: BTreeMap::new(),
            queue_rates: BTreeMap::new(),
            presence_interval: Duration::from_secs(5),
        }
    }
}

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WorkerReport {
    /// Jobs handled, whatever the outcome (postponed ones are counted in `postponed` only).
    pub processed: u64,
    /// Jobs acknowledged.
    pub succeeded: u64,
    /// Failed attempts released to run again.
    pub retried: u64,
    /// Jobs moved to the failed store.
    pub failed: u64,
    /// Running jobs released back to their queue at shutdown.
    pub released: u64,
    /// Running jobs stopped by a cancellation (`queue-cancel`), acknowledged without running on.
    pub cancelled: u64,
    /// Jobs put back by a postponement (`JobError::postpone`, a rate limit or a lock), their
    /// attempt refunded.
    pub postponed: u64,
    /// Job tasks that panicked outside the job's own code (a bug in routemq or a driver); their
    /// leases were dropped from the heartbeat, so the reaper hands their jobs out again.
    pub panicked: u64,
}

/// With encrypted job types linked in, the keys must parse (a typo would fail every encrypted
/// job); without any key the worker starts, and warns that those jobs will fail.
fn check_keys(registry: &Registry) -> Result<(), WorkerError> {
    let encrypted: Vec<&str> = registry
        .registrations()
        .into_iter()
        .filter(|r| r.options().encrypted)
        .map(|r| r.name())
        .collect();
    if encrypted.is_empty() {
        return Ok(());
    }
    let jobs = encrypted.join(", ");
    match crate::crypto::keyring() {
        Ok(keyring) if keyring.is_empty() => {
            tracing::warn!(jobs = %jobs, "encrypted job types are linked in but ROUTEMQ_KEY is not set: their jobs will fail as DecryptionFailed");
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(source) => Err(WorkerError::Keys { jobs, source }),
    }
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
    /// Encrypted job types are linked in, and the keys in the environment do not parse.
    #[error("encrypted job types are linked in ({jobs}), but {source}")]
    Keys {
        /// The encrypted job types.
        jobs: String,
        /// What is wrong with the keys.
        #[source]
        source: crate::crypto::CryptoError,
    },
    /// Concurrency must be at least 1.
    #[error("worker concurrency must be at least 1")]
    ZeroConcurrency,
    /// `weights` does not give one weight per queue.
    #[error("{weights} queue weights for {queues} queues: give one per queue, or none")]
    Weights {
        /// How many queues.
        queues: usize,
        /// How many weights.
        weights: usize,
    },
    /// A queue limit or rate is zero (its jobs could never run).
    #[error("the {kind} of queue `{queue}` must be at least 1")]
    ZeroLimit {
        /// `limit` or `rate`.
        kind: &'static str,
        /// The queue.
        queue: String,
    },
    /// A duration option is out of range.
    #[error("worker option `{option}` must be {expected}, not {value:?}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// Its value.
        value: Duration,
        /// What it must be.
        expected: &'static str,
    },
}

impl WorkerOptions {
    /// Checks the options: at least one valid queue, a concurrency of at least 1, and intervals
    /// that a timer can run ([`Worker::run`] calls it before anything starts).
    pub fn validate(&self) -> Result<(), WorkerError> {
        if self.queues.is_empty() {
            return Err(WorkerError::NoQueues);
        }
        if self.concurrency == 0 {
            return Err(WorkerError::ZeroConcurrency);
        }
        if !self.weights.is_empty() && self.weights.len() != self.queues.len() {
            return Err(WorkerError::Weights {
                queues: self.queues.len(),
                weights: self.weights.len(),
            });
        }
        for queue in &self.queues {
            validate_queue_name(queue)?;
        }
        let limits = self.queue_limits.iter().map(|(q, n)| ("limit", q, *n));
        let rates = self.queue_rates.iter().map(|(q, r)| ("rate", q, r.limit));
        for (kind, queue, limit) in limits.chain(rates) {
            validate_queue_name(queue)?;
            if limit == 0 {
                return Err(WorkerError::ZeroLimit {
                    kind,
                    queue: queue.clone(),
                });
            }
        }
        let max = crate::limits::MAX_DURATION;
        let checks = [
            ("heartbeat_interval", self.heartbeat_interval, false),
            ("visibility_timeout", self.visibility_timeout, false),
            ("timeout", self.timeout, false),
            ("reaper_interval", self.reaper_interval, true),
            ("sleep", self.sleep, true),
            ("shutdown_grace", self.shutdown_grace, true),
            ("presence_interval", self.presence_interval, true),
        ];
        for (option, value, zero_allowed) in checks {
            if value > max || (value.is_zero() && !zero_allowed) {
                return Err(WorkerError::InvalidOption {
                    option,
                    value,
                    expected: if zero_allowed {
                        "at most ten years"
                    } else {
                        "greater than zero and at most ten years"
                    },
                });
            }
        }
        Ok(())
    }
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
    /// Put back for later without using an attempt.
    Postponed,
    /// Stopped by a cancellation and acknowledged.
    Cancelled,
    /// A prefetched job that did not start (its lease was taken back first): not counted.
    NotStarted,
}

#[derive(Debug, Default)]
struct Counters {
    processed: AtomicU64,
    succeeded: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    released: AtomicU64,
    cancelled: AtomicU64,
    postponed: AtomicU64,
    panicked: AtomicU64,
}

/// The leases the heartbeat renews (running and prefetched jobs), by a key of the worker's own.
pub(crate) type Running = Arc<Mutex<HashMap<u64, Lease>>>;

/// Locks the heartbeat set (a panic while it was held cannot leave it half-updated).
pub(crate) fn lock(running: &Running) -> std::sync::MutexGuard<'_, HashMap<u64, Lease>> {
    running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// State shared by the loop, the job tasks and the background tasks.
pub(crate) struct Shared {
    pub(crate) driver: Arc<dyn QueueDriver>,
    pub(crate) connection: String,
    pub(crate) registry: &'static Registry,
    pub(crate) options: WorkerOptions,
    pub(crate) shutdown: Shutdown,
    pub(crate) running: Running,
    pub(crate) writes: writes::Writes,
    pub(crate) extensions: Extensions,
    /// The queue-level limits' middleware, by queue (run before the worker's own).
    pub(crate) queue_middleware: HashMap<String, Vec<Arc<dyn Middleware>>>,
    /// Paused and full queues, for the reserver.
    pub(crate) gate: Arc<queue_limits::QueueGate>,
    /// The running jobs' cancellation requests.
    pub(crate) cancels: cancels::Cancels,
    /// What the worker did lately, for its presence record.
    pub(crate) activity: activity::Activity,
    counters: Counters,
}

impl Shared {
    pub(crate) fn running(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Lease>> {
        lock(&self.running)
    }

    /// The middleware a job of `queue` runs in: the queue's limits, then the worker's own.
    pub(crate) fn middleware_for(&self, queue: &str) -> Vec<Arc<dyn Middleware>> {
        let mut chain = self
            .queue_middleware
            .get(queue)
            .cloned()
            .unwrap_or_default();
        chain.extend(self.extensions.middleware.iter().cloned());
        chain
    }

    fn count(&self, outcome: Outcome) {
        let c = &self.counters;
        let counter = match outcome {
            Outcome::NotStarted => return,
            // Not handled yet: it comes back. Counted apart, not as processed.
            Outcome::Postponed => {
                c.postponed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Outcome::Abandoned => None,
            Outcome::Succeeded => Some(&c.succeeded),
            Outcome::Retried => Some(&c.retried),
            Outcome::Failed => Some(&c.failed),
            Outcome::Released => Some(&c.released),
            Outcome::Cancelled => Some(&c.cancelled),
        };
        c.processed.fetch_add(1, Ordering::Relaxed);
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn report(&self) -> WorkerReport {
        let c = &self.counters;
        WorkerReport {
            processed: c.processed.load(Ordering::Relaxed),
            succeeded: c.succeeded.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            released: c.released.load(Ordering::Relaxed),
            cancelled: c.cancelled.load(Ordering::Relaxed),
            postponed: c.postponed.load(Ordering::Relaxed),
            panicked: c.panicked.load(Ordering::Relaxed),
        }
    }
}

/// What an application adds to a worker: shared data, middleware and lifecycle hooks.
#[derive(Clone, Default)]
pub(crate) struct Extensions {
    pub(crate) data: AppData,
    pub(crate) middleware: Vec<Arc<dyn Middleware>>,
    pub(crate) hooks: hooks::Hooks,
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extensions")
            .field("data", &self.data)
            .field("middleware", &self.middleware.len())
            .field("hooks", &self.hooks)
            .finish()
    }
}

impl Extensions {
    pub(crate) fn add_hook(
        &mut self,
        when: Lifecycle,
        hook: impl Fn(&JobEvent<'_>) + Send + Sync + 'static,
    ) {
        self.hooks.add(when, Arc::new(hook));
    }
}

/// A queue worker. Build it with [`Worker::new`], stop it with [`Worker::shutdown_handle`].
#[derive(Debug)]
pub struct Worker {
    driver: Arc<dyn QueueDriver>,
    connection: String,
    options: WorkerOptions,
    shutdown: Shutdown,
    extensions: Extensions,
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
            extensions: Extensions::default(),
        }
    }

    /// Registers a shared value that handlers get with [`JobContext::data`] (a database pool, an
    /// HTTP client); one per type, a later value of the same type replaces the earlier one.
    ///
    /// [`JobContext::data`]: crate::JobContext::data
    #[must_use]
    pub fn data<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions.data.insert(value);
        self
    }

    /// Adds a middleware that wraps every job this worker runs, after those added before it and
    /// before the job's own ([`middleware`](crate::middleware) has the order).
    #[must_use]
    pub fn middleware(mut self, middleware: impl Middleware) -> Self {
        self.extensions.middleware.push(Arc::new(middleware));
        self
    }

    /// Adds a lifecycle hook: `hook` runs at `when` for every job (see [`Lifecycle`]).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use routemq::prelude::*;
    /// use routemq::worker::Lifecycle;
    /// # let worker = Worker::new(Arc::new(routemq::driver::memory::MemoryDriver::new()), "memory", WorkerOptions::default());
    /// let worker = worker.on(Lifecycle::FinalFailure, |event| {
    ///     eprintln!("{} {} gave up: {:?}", event.ctx.job_name(), event.ctx.job_id(), event.error);
    /// });
    /// ```
    #[must_use]
    pub fn on(
        mut self,
        when: Lifecycle,
        hook: impl Fn(&JobEvent<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.extensions.add_hook(when, hook);
        self
    }

    /// Adds data, middleware and hooks collected elsewhere (the CLI's `App`).
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) fn with_extensions(mut self, extensions: Extensions) -> Self {
        self.extensions.data.extend(extensions.data);
        self.extensions.middleware.extend(extensions.middleware);
        self.extensions.hooks.extend(extensions.hooks);
        self
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
        self.options.validate()?;
        check_keys(registry)?;
        tracing::info!(
            connection = %self.connection,
            queues = %self.options.queues.join(","),
            concurrency = self.options.concurrency,
            jobs = %registry.names().join(","),
            "queue worker started"
        );
        let running = Running::default();
        let (writes, writer) = writes::spawn_writer(Arc::clone(&self.driver), Arc::clone(&running));
        let queue_middleware =
            queue_limits::middleware(&self.options.queue_limits, &self.options.queue_rates);
        let gate = Arc::new(queue_limits::QueueGate::new(
            self.options.queue_limits.clone(),
        ));
        let shared = Arc::new(Shared {
            queue_middleware,
            gate,
            driver: self.driver,
            connection: self.connection,
            registry,
            options: self.options,
            shutdown: self.shutdown,
            running,
            writes,
            extensions: self.extensions,
            cancels: cancels::Cancels::default(),
            activity: activity::Activity::default(),
            counters: Counters::default(),
        });
        let background = background::spawn_lease_keepers(&shared);
        let mut tasks = JoinSet::new();
        let unstarted = reserver::reserve_loop(&shared, &mut tasks).await;
        reserver::release_unstarted(&shared, unstarted).await;
        finish(&shared, &mut tasks).await;
        background.stop().await;
        let report = shared.report();
        drop(shared);
        writer.flush().await;
        tracing::info!(
            processed = report.processed,
            succeeded = report.succeeded,
            retried = report.retried,
            failed = report.failed,
            released = report.released,
            cancelled = report.cancelled,
            postponed = report.postponed,
            panicked = report.panicked,
            "queue worker stopped"
        );
        Ok(report)
    }
}

/// Sleeps until `deadline`, or forever without one.
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

pub(crate) fn record(shared: &Shared, joined: Result<Outcome, tokio::task::JoinError>) {
    match joined {
        Ok(outcome) => shared.count(outcome),
        // `runner::run` catches panics in user code; this is a bug in routemq itself.
        Err(error) => {
            shared.counters.panicked.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%error, "job task ended unexpectedly; the reaper will return its job");
        }
    }
}

/// Waits for running jobs; once a drain starts they get the grace period, then are released.
/// After an immediate stop, handlers get [`STOP_WAIT`] to end; jobs still running then (a handler
/// that never yields) are released from here and their tasks left behind, so shutdown always ends.
async fn finish(shared: &Shared, tasks: &mut JoinSet<Outcome>) {
    let mut grace_ends: Option<Instant> = None;
    let mut stop_ends: Option<Instant> = None;
    while !tasks.is_empty() {
        if grace_ends.is_none() && shared.shutdown.is_draining() {
            tracing::info!(running = tasks.len(), grace = ?shared.options.shutdown_grace, "draining running jobs");
            grace_ends = Some(Instant::now() + shared.options.shutdown_grace);
        }
        tokio::select! {
            Some(joined) = tasks.join_next() => record(shared, joined),
            () = shared.shutdown.drained(), if grace_ends.is_none() => {}
            () = sleep_until(grace_ends), if stop_ends.is_none() => {
                tracing::warn!(running = tasks.len(), "shutdown grace expired: releasing running jobs");
                shared.shutdown.now();
            }
            () = shared.shutdown.stopped_now(), if stop_ends.is_none() => {
                // A second more than the handlers get, for their jobs to be released.
                stop_ends = Some(Instant::now() + STOP_WAIT + Duration::from_secs(1));
            }
            () = sleep_until(stop_ends) => {
                release_stuck(shared, tasks).await;
                return;
            }
        }
    }
}

/// Releases the jobs of handlers that did not end after an immediate stop (their attempt refunded)
/// and detaches their tasks.
async fn release_stuck(shared: &Shared, tasks: &mut JoinSet<Outcome>) {
    while let Some(joined) = tasks.try_join_next() {
        record(shared, joined);
    }
    let stuck: Vec<(u64, Lease)> = shared.running().drain().collect();
    tracing::error!(
        jobs = stuck.len(),
        "handlers did not stop; releasing their jobs and leaving them behind"
    );
    for (_, lease) in stuck {
        match shared.driver.release(&lease, Duration::ZERO, true).await {
            Ok(true) => shared.count(Outcome::Released),
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(job_id = %lease.id, %error, "could not release a stuck job; the reaper will return it")
            }
        }
    }
    tasks.detach_all();
}
