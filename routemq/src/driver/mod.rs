//! Queue drivers: where jobs are stored, and the one trait the rest of routemq talks to.
//!
//! Every driver has the same semantics, checked by the conformance suite in `tests/`:
//! FIFO by id within a queue; delayed jobs invisible until due; a reservation is a lease that a
//! heartbeat ([`QueueDriver::extend`]) keeps alive and the reaper ([`QueueDriver::reap`]) takes back
//! when it is older than the visibility timeout; `attempts` counts started runs (a reservation
//! counts at once, a prefetched one when [`QueueDriver::start`] starts it); every operation on a
//! lease names the exact reservation ([`Lease`]), so a worker whose lease was reaped and handed to
//! someone else cannot acknowledge or fail the other worker's run.

#[cfg(feature = "_sql")]
mod bands_sql;
mod batch_rows;
#[cfg(feature = "_sql")]
mod batches_sql;
pub mod memory;
#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub mod mysql;
#[cfg(feature = "mysql")]
mod mysql_claims;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "postgres")]
mod postgres_claims;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
pub mod rewrite;
#[cfg(feature = "_sql")]
mod rewrite_sql;
pub mod slots;
#[cfg(feature = "_sql")]
mod slots_sql;
#[cfg(feature = "_sql")]
mod sql;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;
#[cfg(feature = "_sql")]
mod tables_sql;
mod wake;
#[cfg(feature = "_sql")]
mod workers_sql;

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Serialize;

pub(crate) use batch_rows::millis_ago;
pub use batch_rows::{BatchPrune, BatchRow, BatchWrite, epoch_millis, from_epoch_millis};
pub use rewrite::{Edit, Editor, Rewritten};
pub use slots::Slot;
pub use wake::WakeSignal;

use crate::job::BoxError;

/// A job to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// The queue to push to (already validated).
    pub queue: String,
    /// The encoded envelope.
    pub payload: String,
    /// How long the job stays invisible (zero: ready now).
    pub delay: Duration,
    /// Its priority within the queue (0 to 255, higher first; 0 is RouteMQ's only one). A driver
    /// that ignores it serves the queue in FIFO order.
    pub priority: u8,
}

impl NewJob {
    /// A job at the priority its envelope carries (0 when it carries none or cannot be read).
    pub fn new(queue: impl Into<String>, payload: impl Into<String>, delay: Duration) -> Self {
        let payload = payload.into();
        Self {
            queue: queue.into(),
            priority: crate::envelope::priority_of(&payload),
            payload,
            delay,
        }
    }
}

/// One reservation of one job: what ack, release, fail and extend act on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The job's id.
    pub id: String,
    /// The queue it was reserved from.
    pub queue: String,
    /// The attempt number this reservation started (counts from 1); for a prefetched lease not
    /// started yet, the attempts counted before it.
    pub attempts: u32,
    /// Driver-specific token that identifies the reservation (may be empty).
    pub token: String,
}

impl Lease {
    /// This reservation as a built-in driver's prefetched lease: its token marked.
    pub(crate) fn marked(self) -> Self {
        Self {
            token: format!("{PREFETCHED}{}", self.token),
            ..self
        }
    }

    /// A built-in driver's prefetched lease once started as attempt `attempts`: its token unmarked.
    pub(crate) fn started(&self, attempts: u32) -> Self {
        Self {
            attempts,
            token: self
                .token
                .strip_prefix(PREFETCHED)
                .unwrap_or(&self.token)
                .to_owned(),
            ..self.clone()
        }
    }
}

/// A job a worker holds a lease on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedJob {
    /// The reservation.
    pub lease: Lease,
    /// The encoded envelope, exactly as stored.
    pub payload: String,
    /// Set by [`QueueDriver::prefetch`] when the job's attempt is not counted yet; `None` when it
    /// is (a reservation, or a driver whose `prefetch` reserves).
    pub prefetched: Option<Prefetched>,
}

/// What a worker needs to start a prefetched job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefetched {
    /// The lease the job has once started: what [`QueueDriver::start`] returns for it while the
    /// reservation is held.
    pub started: Lease,
    /// How many times this job was prefetched before and taken back without a recorded start (its
    /// worker died first). A worker starts such a job only once the start is stored, so that a job
    /// that kills its worker before its start lands still uses up its tries.
    pub stalls: u32,
}

impl ReservedJob {
    /// A job whose reservation counted its attempt.
    pub fn counted(lease: Lease, payload: String) -> Self {
        Self {
            lease,
            payload,
            prefetched: None,
        }
    }

    /// A built-in driver's prefetched job: `lease` is the prefetched lease (its token marked, the
    /// attempts counted so far); its run will be the next attempt.
    pub(crate) fn prefetched(lease: Lease, payload: String, stalls: u32) -> Self {
        let started = lease.started(lease.attempts.saturating_add(1));
        Self {
            lease,
            payload,
            prefetched: Some(Prefetched { started, stalls }),
        }
    }
}

/// What to record in the failed store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The connection name recorded with the job.
    pub connection: String,
    /// `"{ErrorKind}: {message}"`, RouteMQ's form.
    pub exception: String,
}

/// A job in the failed store (RouteMQ's failed-job record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedJob {
    /// The failed job's id (a row id, or `failed:{queue}:{n}` on Redis).
    pub id: String,
    /// The connection it failed on.
    pub connection: String,
    /// The queue it failed on.
    pub queue: String,
    /// The envelope, as it was stored when it failed.
    pub payload: String,
    /// The error: `"{Kind}: {message}"`.
    pub exception: String,
    /// When it failed, ISO 8601 UTC.
    #[serde(serialize_with = "serialize_time")]
    pub failed_at: SystemTime,
}

fn serialize_time<S: serde::Serializer>(at: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&crate::time::iso_utc(*at))
}

/// A worker's presence record as a driver stores it: written by each running worker every few
/// seconds (see [`WorkerInfo`](crate::worker::WorkerInfo)), read by the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRow {
    /// The worker's id (`host:pid:random`).
    pub id: String,
    /// When it last beat, in milliseconds since the Unix epoch.
    pub beat_at: i64,
    /// Its [`WorkerInfo`](crate::worker::WorkerInfo), as JSON.
    pub doc: String,
}

/// Per-queue counts (RouteMQ's `stats`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueStats {
    /// The queue.
    pub queue: String,
    /// Jobs visible now.
    pub ready: u64,
    /// Jobs leased by a worker.
    pub reserved: u64,
    /// Jobs not yet due.
    pub delayed: u64,
    /// Jobs in the failed store for this queue.
    pub failed: u64,
    /// Age in seconds of the oldest ready job (0 when none).
    pub oldest_ready_age_seconds: f64,
}

/// What a reaper pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reaped {
    /// Expired leases put back to ready (tries left).
    pub requeued: u64,
    /// Expired leases moved to the failed store (tries used up).
    pub failed: u64,
    /// The jobs this pass moved to the failed store, as they were stored, so that the worker can
    /// run their `failed()` hook (once: only the pass that moved a job lists it).
    #[serde(skip)]
    pub expired: Vec<ReservedJob>,
}

impl Reaped {
    /// Adds another pass's counts and jobs to these.
    #[cfg(any(feature = "mysql", feature = "sqlite"))]
    pub(crate) fn add(&mut self, pass: Reaped) {
        self.requeued += pass.requeued;
        self.failed += pass.failed;
        self.expired.extend(pass.expired);
    }
}

/// What [`QueueDriver::remove`] found under a job id.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Removal {
    /// The job was queued or delayed, and is deleted.
    Removed {
        /// The queue it was on.
        queue: String,
        /// Its envelope, as it was stored.
        payload: String,
    },
    /// The job is leased by a worker (running, or prefetched): left where it is.
    Leased {
        /// The queue it was reserved from.
        queue: String,
    },
    /// No job with that id is stored (it finished, failed, or never existed).
    NotFound,
}

/// Driver failures: the broker is unreachable, or an operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// Could not connect (the URL is shown without its password).
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// Where we tried to connect, password removed.
        target: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// The backend rejected or lost an operation.
    #[error("{operation} failed: {source}")]
    Backend {
        /// What was being done.
        operation: &'static str,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// The environment configures this connection with a value it cannot use.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A failed-job id that this driver cannot have written.
    #[error("invalid failed-job id `{0}`")]
    InvalidId(String),
    /// The driver does not implement an operation (a custom driver without slots).
    #[error("the {driver} driver does not support {operation}")]
    Unsupported {
        /// The driver's kind.
        driver: &'static str,
        /// What it cannot do.
        operation: &'static str,
    },
}

impl DriverError {
    /// A backend error for `operation`.
    pub fn backend(operation: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            operation,
            source: source.into(),
        }
    }
}

/// The token of a built-in driver's prefetched lease starts with this (SQL and memory leases use it
/// alone; Redis adds its sequence number).
pub(crate) const PREFETCHED: &str = "p";

/// The default answer of the batch operations.
fn unsupported_batches(driver: &'static str) -> DriverError {
    DriverError::Unsupported {
        driver,
        operation: "batches",
    }
}

/// Whether a built-in driver's lease is a prefetched one, whose attempt is not counted yet.
pub(crate) fn is_prefetched(lease: &Lease) -> bool {
    lease.token.starts_with(PREFETCHED)
}

/// The message RouteMQ records when a lease expires with no tries left.
pub fn reservation_expired_message(visibility_timeout: Duration) -> String {
    format!(
        "ReservationExpired: Job reservation expired after {}s visibility timeout",
        visibility_timeout.as_secs()
    )
}

/// Whether a reservation (an expired lease being reaped) has used up its tries: the envelope's
/// `max_tries` (3 when it cannot be read), or the worker's override.
pub(crate) fn out_of_tries(payload: &str, attempts: u32, max_tries_override: Option<u32>) -> bool {
    let max_tries = max_tries_override.unwrap_or_else(|| {
        crate::envelope::Envelope::decode(payload).map_or(3, |e| e.effective_max_tries())
    });
    attempts >= max_tries
}

/// `queue` alone, or every queue of `driver` when it is `None` (the operations on "one queue or
/// all").
pub(crate) async fn queue_or_all<D: QueueDriver + ?Sized>(
    driver: &D,
    queue: Option<&str>,
) -> Result<Vec<String>, DriverError> {
    match queue {
        Some(queue) => Ok(vec![queue.to_owned()]),
        None => driver.queues().await,
    }
}

/// The storage behind a connection. Object-safe; drivers are shared as `Arc<dyn QueueDriver>`.
///
/// Implement it to add a custom broker, then register it with
/// [`QueueManager::register`](crate::QueueManager::register). Run the conformance suite from the
/// repository's `tests/` crate against it before relying on it.
#[async_trait]
pub trait QueueDriver: Send + Sync + fmt::Debug {
    /// The kind of driver (`memory`, `sqlite`, `redis`, ...), for logs.
    fn kind(&self) -> &'static str;

    /// Creates tables or other schema if missing. Idempotent.
    async fn migrate(&self) -> Result<(), DriverError> {
        Ok(())
    }

    /// Stores jobs, in one round trip where the backend allows; returns their ids in order.
    async fn push(&self, jobs: &[NewJob]) -> Result<Vec<String>, DriverError>;

    /// Leases up to `max` ready jobs from `queues` (earlier queues first; within each, higher
    /// [`NewJob::priority`] first, then FIFO), incrementing each job's `attempts`.
    async fn reserve(&self, queues: &[String], max: usize)
    -> Result<Vec<ReservedJob>, DriverError>;

    /// Leases up to `max` ready jobs like [`reserve`](Self::reserve), for a worker's prefetch
    /// buffer: the reservation counts no attempt until [`start`](Self::start) says the job is about
    /// to run, and each prefetched job carries the lease it will have once started, and its stall
    /// count. A prefetched lease that expires (its worker died) goes back to
    /// its queue with its attempts as they were and one more stall; a refunding
    /// [`release`](Self::release) of it (a worker stopping) leaves both as they were.
    ///
    /// The default reserves, so the attempt counts at once (`prefetched` is `None`); the built-in
    /// drivers override it.
    async fn prefetch(
        &self,
        queues: &[String],
        max: usize,
    ) -> Result<Vec<ReservedJob>, DriverError> {
        self.reserve(queues, max).await
    }

    /// Counts the attempt of prefetched jobs about to run and clears their stall count (their
    /// leases live on through the heartbeat). Returns, for each lease in order, the lease of the
    /// started run (the one to acknowledge, release or fail from now on:
    /// [`Prefetched::started`]), or `None` when the reservation is no longer held (it expired and
    /// was taken back) or is not a prefetched one.
    ///
    /// The default returns the leases as they are, matching the default [`prefetch`](Self::prefetch).
    async fn start(&self, leases: &[Lease]) -> Result<Vec<Option<Lease>>, DriverError> {
        Ok(leases.iter().cloned().map(Some).collect())
    }

    /// [`ack`](Self::ack) of `finished` and [`start`](Self::start) of `starting`, in one round trip
    /// where the backend allows (the worker batches both; the two never name the same job). The
    /// default calls one, then the other.
    async fn ack_and_start(
        &self,
        finished: &[Lease],
        starting: &[Lease],
    ) -> Result<Vec<Option<Lease>>, DriverError> {
        if !finished.is_empty() {
            self.ack(finished).await?;
        }
        self.start(starting).await
    }

    /// Deletes finished jobs. Leases that are no longer held are skipped.
    async fn ack(&self, leases: &[Lease]) -> Result<(), DriverError>;

    /// Puts a job back, visible after `delay`. With `refund_attempt` the reservation does not
    /// count as an attempt (shutdown). Returns whether the lease was still held.
    async fn release(
        &self,
        lease: &Lease,
        delay: Duration,
        refund_attempt: bool,
    ) -> Result<bool, DriverError>;

    /// Moves a job to the failed store. Returns whether the lease was still held.
    async fn fail(&self, lease: &Lease, failure: &Failure) -> Result<bool, DriverError>;

    /// Renews leases (the heartbeat). Returns how many were still held.
    async fn extend(&self, leases: &[Lease]) -> Result<usize, DriverError>;

    /// Takes back leases not renewed for `visibility_timeout`: to ready with their attempts
    /// kept, or to the failed store (recorded under `connection`, the worker's connection name)
    /// when the envelope's `max_tries` (or `max_tries_override`) is used up.
    async fn reap(
        &self,
        queues: &[String],
        visibility_timeout: Duration,
        max_tries_override: Option<u32>,
        connection: &str,
    ) -> Result<Reaped, DriverError>;

    /// Ready plus delayed jobs (RouteMQ's `size`; reserved ones are not counted).
    async fn size(&self, queue: &str) -> Result<u64, DriverError>;

    /// Counts for one queue.
    async fn stats(&self, queue: &str) -> Result<QueueStats, DriverError>;

    /// Every queue that has jobs or failed jobs.
    async fn queues(&self) -> Result<Vec<String>, DriverError>;

    /// How long until the next delayed job in `queues` is due (`None`: none, or unknown).
    async fn next_due(&self, _queues: &[String]) -> Result<Option<Duration>, DriverError> {
        Ok(None)
    }

    /// A counter that changes when jobs may have become ready, for idle workers to wait on
    /// instead of polling. `None`: the worker polls every `sleep` interval.
    fn wake_signal(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Failed jobs, oldest first, for one queue or all.
    async fn failed_list(&self, queue: Option<&str>) -> Result<Vec<FailedJob>, DriverError>;

    /// One failed job.
    async fn failed_get(&self, id: &str) -> Result<Option<FailedJob>, DriverError>;

    /// Pushes a failed job back to its queue (attempts start again) and removes it from the
    /// failed store, atomically. Returns the new job id, or `None` if there is no such failed job.
    async fn failed_retry(&self, id: &str) -> Result<Option<String>, DriverError>;

    /// Deletes a failed job. Returns whether it existed.
    async fn failed_forget(&self, id: &str) -> Result<bool, DriverError>;

    /// Deletes every failed job of a queue (or all). Returns how many.
    async fn failed_flush(&self, queue: Option<&str>) -> Result<u64, DriverError>;

    /// Deletes failed jobs older than `older_than`, of one queue or all. Returns how many.
    async fn failed_prune(
        &self,
        queue: Option<&str>,
        older_than: Duration,
    ) -> Result<u64, DriverError>;

    /// Keeps the `keep` newest failed jobs of a queue (or of each queue) and deletes the older
    /// ones. Returns how many went. The default lists and forgets them one by one; the built-in
    /// SQL and Redis drivers trim in one statement per queue.
    async fn failed_trim(&self, queue: Option<&str>, keep: u64) -> Result<u64, DriverError> {
        let queues = queue_or_all(self, queue).await?;
        let mut trimmed = 0;
        for queue in queues {
            // Oldest first: everything before the last `keep` goes.
            let failed = self.failed_list(Some(&queue)).await?;
            let excess = failed
                .len()
                .saturating_sub(usize::try_from(keep).unwrap_or(usize::MAX));
            for job in &failed[..excess] {
                if self.failed_forget(&job.id).await? {
                    trimmed += 1;
                }
            }
        }
        Ok(trimmed)
    }

    /// Takes one of `limit` slots named `name` for `holder` until `ttl` passes or it is released
    /// (see [`slots`]): atomic across every process on this connection. A holder that holds a
    /// slot already keeps it, its expiry renewed. A `ttl` of zero is a probe: it says whether a
    /// slot is free and takes nothing.
    ///
    /// The default answers [`DriverError::Unsupported`]: a custom driver without slots cannot
    /// run jobs that use limits, locks, unique dispatch or paused queues.
    async fn acquire_slot(
        &self,
        _name: &str,
        _holder: &str,
        _limit: u32,
        _ttl: Duration,
    ) -> Result<Slot, DriverError> {
        Err(DriverError::Unsupported {
            driver: self.kind(),
            operation: "slots",
        })
    }

    /// Gives back `holder`'s slot of `name` (a no-op when it holds none); `None` empties the name.
    async fn release_slot(&self, _name: &str, _holder: Option<&str>) -> Result<(), DriverError> {
        Err(DriverError::Unsupported {
            driver: self.kind(),
            operation: "slots",
        })
    }

    /// Extends `holder`'s unexpired slot of `name` to `ttl` from now. Returns whether it held one.
    async fn renew_slot(
        &self,
        _name: &str,
        _holder: &str,
        _ttl: Duration,
    ) -> Result<bool, DriverError> {
        Err(DriverError::Unsupported {
            driver: self.kind(),
            operation: "slots",
        })
    }

    /// Deletes expired slot holders (and whatever bookkeeping a name with none left keeps), so
    /// that names used once (a rate window per customer, a unique key) do not pile up. Workers
    /// call it on every reaper pass. Returns how many holders it deleted; the default does nothing.
    async fn sweep_slots(&self) -> Result<u64, DriverError> {
        Ok(0)
    }

    /// The unexpired holders of slot `name` and how long each still holds it, in no particular
    /// order (schedules keep their last run this way). Holders longer than 191 bytes come back
    /// as SQL stores them (shortened, with a hash).
    ///
    /// The default answers [`DriverError::Unsupported`].
    async fn slot_holders(&self, _name: &str) -> Result<Vec<(String, Duration)>, DriverError> {
        Err(DriverError::Unsupported {
            driver: self.kind(),
            operation: "slots",
        })
    }

    /// Which of `names` have an unexpired slot holder, in order: one round trip on the built-in
    /// drivers (workers ask it each second about their running jobs' cancellations). The default
    /// probes each name.
    async fn held_slots(&self, names: &[String]) -> Result<Vec<bool>, DriverError> {
        let mut held = Vec::with_capacity(names.len());
        for name in names {
            let probe = self.acquire_slot(name, "probe", 1, Duration::ZERO).await?;
            held.push(!probe.taken);
        }
        Ok(held)
    }

    /// Deletes the queued or delayed job `id`, from whichever queue holds it; a leased job is
    /// left alone and reported as [`Removal::Leased`]. Used by
    /// [`queue::cancel`](crate::queue::cancel).
    ///
    /// The default answers [`DriverError::Unsupported`].
    async fn remove(&self, _id: &str) -> Result<Removal, DriverError> {
        Err(DriverError::Unsupported {
            driver: self.kind(),
            operation: "removing a job by id",
        })
    }

    /// Stores a new batch (see [`batch`](mod@crate::batch)). The built-in drivers store batches
    /// beside the jobs; the default answers [`DriverError::Unsupported`].
    async fn batch_create(&self, _batch: &BatchRow) -> Result<(), DriverError> {
        Err(unsupported_batches(self.kind()))
    }

    /// The batch `id`, and the outcome stored for `job` in it (when asked), read together.
    async fn batch_read(
        &self,
        _id: &str,
        _job: Option<&str>,
    ) -> Result<Option<(BatchRow, Option<String>)>, DriverError> {
        Err(unsupported_batches(self.kind()))
    }

    /// Writes a batch's document, finish time and a job's outcome in one atomic step, if the
    /// batch is still at the version the writer read. Returns whether it was.
    async fn batch_write(&self, _write: &BatchWrite<'_>) -> Result<bool, DriverError> {
        Err(unsupported_batches(self.kind()))
    }

    /// The newest `limit` batches, newest first.
    async fn batch_list(&self, _limit: usize) -> Result<Vec<BatchRow>, DriverError> {
        Err(unsupported_batches(self.kind()))
    }

    /// Deletes the batches `prune` selects, with their jobs' outcomes. Returns how many.
    async fn batch_prune(&self, _prune: BatchPrune) -> Result<u64, DriverError> {
        Err(unsupported_batches(self.kind()))
    }

    /// Rewrites stored payloads with `edit` (see [`rewrite`]): queued and delayed jobs and
    /// failed records, each with a compare-and-set, so that a job leased meanwhile keeps its
    /// payload. Leased jobs are read and counted, never written. Used by
    /// [`crypto::reencrypt`](crate::crypto::reencrypt).
    ///
    /// The default answers [`DriverError::Unsupported`].
    async fn rewrite_payloads(&self, _edit: Editor<'_>) -> Result<Rewritten, DriverError> {
        Err(DriverError::Unsupported {
            driver: self.kind(),
            operation: "rewriting stored payloads",
        })
    }

    /// Stores a worker's presence record, replacing its previous one. `Ok(false)`: this driver
    /// keeps no presence records (the default; the dashboard then lists no workers).
    async fn worker_beat(&self, _row: &WorkerRow) -> Result<bool, DriverError> {
        Ok(false)
    }

    /// The presence records that beat at or after `since` (milliseconds since the Unix epoch),
    /// ordered by id; a read only (a read-only user or a replica serves it). `None`: this driver
    /// keeps none.
    async fn worker_rows(&self, _since: i64) -> Result<Option<Vec<WorkerRow>>, DriverError> {
        Ok(None)
    }

    /// Deletes the presence records that last beat before `before` (milliseconds since the Unix
    /// epoch); returns how many.
    async fn worker_prune(&self, _before: i64) -> Result<u64, DriverError> {
        Ok(0)
    }

    /// The newest `limit` failed jobs of a queue (or of every queue), newest first. The default
    /// reads [`failed_list`](Self::failed_list) whole; the bundled drivers read only these.
    async fn failed_recent(
        &self,
        queue: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FailedJob>, DriverError> {
        let mut jobs = self.failed_list(queue).await?;
        // Stable, from newest to oldest as stored: jobs failed at the same time stay in order.
        jobs.reverse();
        jobs.sort_by_key(|job| std::cmp::Reverse(job.failed_at));
        jobs.truncate(limit);
        Ok(jobs)
    }

    /// Retries every failed job of a queue (or all). Returns how many.
    async fn failed_retry_all(&self, queue: Option<&str>) -> Result<u64, DriverError> {
        let mut retried = 0;
        for job in self.failed_list(queue).await? {
            if self.failed_retry(&job.id).await?.is_some() {
                retried += 1;
            }
        }
        Ok(retried)
    }
}
