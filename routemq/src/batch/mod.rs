//! Batches: many jobs dispatched together, with progress you can read and callbacks that run
//! exactly once when they finish.
//!
//! ```no_run
//! use routemq::prelude::*;
//!
//! #[job(queue = "imports")]
//! struct ImportRow { row: u64 }
//! #[job(queue = "emails")]
//! struct ImportDone { ok: bool }
//!
//! # macro_rules! noop { ($($t:ty),*) => {$(impl Job for $t { async fn handle(&mut self, _: &JobContext) -> Result<(), JobError> { Ok(()) } })*} }
//! # noop!(ImportRow, ImportDone);
//! # async fn example() -> Result<(), routemq::QueueError> {
//! let batch = routemq::batch((0..1000).map(|row| ImportRow { row }))
//!     .name("import 2026-11-30")
//!     .then(ImportDone { ok: true })      // every job succeeded
//!     .catch(ImportDone { ok: false })    // the first job failed for good
//!     .allow_failures(false)              // (the default) a failure cancels the rest
//!     .dispatch()
//!     .await?;
//! let info = batch.info().await?.expect("stored");
//! println!("{}: {}% done, {} failed", info.id, info.progress(), info.failed);
//! # Ok(()) }
//! ```
//!
//! The batch lives on its jobs' connection (they must share one), as a record whose counts
//! move as jobs end: each job's worker records its outcome (succeeded, failed for good, or
//! cancelled) before acknowledging it. Every change is a compare-and-set on the record's version
//! in the store, and the job's outcome is written in the same atomic step, so a job counts once
//! even when it runs twice (its worker died before acknowledging it), and of two jobs that
//! finish at the same moment on two hosts exactly one sees the batch complete and stores its
//! callbacks:
//!
//! - `catch`: when the first job fails for good; unless `allow_failures(true)`, the batch is
//!   cancelled then.
//! - `then`: when every job has succeeded (a failed job retried from the failed store that then
//!   succeeds counts as succeeded).
//! - `finally`: when every job has an outcome.
//!
//! Jobs of a cancelled batch (`queue-batch-cancel`, [`Batch::cancel`], or a failure) that have
//! not started are skipped: they end as cancelled, without running. A job cancelled by id
//! (`queue-cancel`) counts as cancelled too. A worker that dies between storing a callback and
//! noting it stored makes the next run of its job store that callback again (at least once, as
//! for jobs themselves); otherwise callbacks run exactly once.
//!
//! Records are kept until pruned: `queue-prune-batches --hours N`, or
//! `QUEUE_BATCH_RETENTION_HOURS` for workers to prune on their own.

mod info;
pub(crate) mod state;
pub(crate) mod store;

pub use info::{BatchInfo, CallbackInfo};
pub use state::CallbackKind;

use crate::driver::{BatchPrune, DriverError, NewJob, QueueDriver};
use crate::envelope::{BatchRef, ChainLink, Envelope};
use crate::job::Job;
use crate::queue::{Link, QueueError, QueueManager, job_with_chain, queue};
use state::{BatchDoc, Callback, CallbackState};

/// A batch on the global [`queue()`] manager.
pub fn batch<T: Job>(jobs: impl IntoIterator<Item = T>) -> PendingBatch<'static> {
    queue().batch(jobs)
}

impl QueueManager {
    /// Starts a batch of `jobs` (more, of any type, with [`PendingBatch::add_job`]).
    pub fn batch<T: Job>(&self, jobs: impl IntoIterator<Item = T>) -> PendingBatch<'_> {
        PendingBatch {
            manager: self,
            jobs: jobs.into_iter().map(Link::new).collect(),
            then: None,
            catch: None,
            finally: None,
            name: None,
            allow_failures: false,
            queue: None,
            connection: None,
        }
    }

    /// Batch `id` on the default connection.
    pub async fn find_batch(&self, id: &str) -> Result<Option<BatchInfo>, QueueError> {
        let connection = self.default_connection()?.to_owned();
        Batch::new(id, connection).info_on(self).await
    }
}

/// A batch being built; [`dispatch`](Self::dispatch) stores it and its jobs.
#[must_use = "a batch does nothing until it is dispatched"]
pub struct PendingBatch<'m> {
    manager: &'m QueueManager,
    jobs: Vec<Link>,
    then: Option<Link>,
    catch: Option<Link>,
    finally: Option<Link>,
    name: Option<String>,
    allow_failures: bool,
    queue: Option<String>,
    connection: Option<String>,
}

impl std::fmt::Debug for PendingBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingBatch")
            .field("jobs", &self.jobs.len())
            .field("name", &self.name)
            .field("allow_failures", &self.allow_failures)
            .finish_non_exhaustive()
    }
}

impl<'m> PendingBatch<'m> {
    /// Adds a job (of any type) to the batch.
    pub fn add_job<T: Job>(mut self, job: T) -> Self {
        self.jobs.push(Link::new(job));
        self
    }

    /// Names the batch (shown by `queue-batches`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The job to run once every job of the batch has succeeded.
    pub fn then<T: Job>(mut self, job: T) -> Self {
        self.then = Some(Link::new(job));
        self
    }

    /// The job to run once, when the first job of the batch fails for good.
    pub fn catch<T: Job>(mut self, job: T) -> Self {
        self.catch = Some(Link::new(job));
        self
    }

    /// The job to run once every job of the batch has an outcome, whatever it is.
    pub fn finally<T: Job>(mut self, job: T) -> Self {
        self.finally = Some(Link::new(job));
        self
    }

    /// Whether a failed job leaves the others running (default `false`: the first failure
    /// cancels the batch, and its jobs not started yet are skipped).
    pub fn allow_failures(mut self, allow: bool) -> Self {
        self.allow_failures = allow;
        self
    }

    /// Sends every job of the batch, and its callbacks, to `queue` (instead of their types').
    pub fn on_queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Stores the batch, its jobs and its callbacks on `connection` instead of their types'
    /// connection.
    pub fn on_connection(mut self, connection: impl Into<String>) -> Self {
        self.connection = Some(connection.into());
        self
    }

    /// Stores the batch, then its jobs. Returns a handle to read its progress or cancel it.
    pub async fn dispatch(self) -> Result<Batch, QueueError> {
        let manager = self.manager;
        let mut names = Vec::with_capacity(self.jobs.len());
        let mut links = Vec::with_capacity(self.jobs.len());
        for mut link in self.jobs {
            if self.queue.is_some() {
                link.queue.clone_from(&self.queue);
            }
            names.push(link.name);
            let mut encoded = link.encode(manager)?;
            if let Some(connection) = &self.connection {
                encoded.connection.clone_from(connection);
            }
            links.push(encoded);
        }
        let connection = match (&self.connection, links.first()) {
            (Some(connection), _) => connection.clone(),
            (None, Some(first)) => first.connection.clone(),
            (None, None) => manager.default_connection()?.to_owned(),
        };
        if let Some(other) = links.iter().find(|l| l.connection != connection) {
            return Err(QueueError::BatchConnections {
                first: connection,
                other: other.connection.clone(),
            });
        }
        let (queue, target) = (self.queue.clone(), self.connection.clone());
        let callback = |link: Option<Link>| -> Result<Option<Callback>, QueueError> {
            let Some(mut link) = link else {
                return Ok(None);
            };
            if queue.is_some() {
                link.queue.clone_from(&queue);
            }
            let mut link = link.encode(manager)?;
            if let Some(connection) = &target {
                link.connection.clone_from(connection);
            }
            Ok(Some(Callback {
                link,
                state: CallbackState::Waiting,
            }))
        };
        let mut doc = BatchDoc {
            name: self.name,
            connection: connection.clone(),
            total: links.len() as u64,
            succeeded: 0,
            failed: 0,
            cancelled: 0,
            allow_failures: self.allow_failures,
            cancelled_at: None,
            then: callback(self.then)?,
            catch: callback(self.catch)?,
            finally: callback(self.finally)?,
        };
        let id = crate::observability::random_hex(16);
        let jobs = links
            .iter()
            .zip(0..)
            .map(|(link, n)| batch_job(link, &id, n))
            .collect::<Result<Vec<_>, _>>()?;
        let mut batch = Batch {
            id: id.clone(),
            connection: connection.clone(),
            job_ids: Vec::new(),
        };
        if let Some(fake) = manager.fake() {
            for (job, name) in jobs.into_iter().zip(names) {
                let job_id = fake.record(name, &job.queue, &connection, job.delay, job.payload);
                batch.job_ids.push(job_id);
            }
            return Ok(batch);
        }
        let driver = manager.connection(&connection).await?;
        let driver_error = |source| QueueError::Driver {
            connection: connection.clone(),
            source,
        };
        let empty = jobs.is_empty();
        if empty {
            doc.finish_empty();
        }
        store::create(driver.as_ref(), &id, &doc, empty)
            .await
            .map_err(driver_error)?;
        if empty {
            store::finish_empty(driver.as_ref(), &id, &doc).await?;
            return Ok(batch);
        }
        match driver.push(&jobs).await {
            Ok(ids) => batch.job_ids = ids,
            Err(source) => {
                // Some jobs may be stored (a push split in several calls): they are skipped.
                if let Err(error) = store::cancel(driver.as_ref(), &id).await {
                    tracing::warn!(batch = %id, %error, "could not cancel a batch whose jobs were not all stored");
                }
                return Err(driver_error(source));
            }
        }
        tracing::debug!(batch = %id, jobs = links.len(), %connection, "batch dispatched");
        Ok(batch)
    }
}

/// Job `n` of batch `id` as stored: its envelope says so.
fn batch_job(link: &ChainLink, id: &str, n: u64) -> Result<NewJob, QueueError> {
    let envelope = Envelope::decode(&link.payload)?.with_batch(Some(BatchRef {
        id: id.to_owned(),
        job: n,
    }));
    job_with_chain(&link.queue, envelope, None)
}

/// A dispatched batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    id: String,
    connection: String,
    job_ids: Vec<String>,
}

impl Batch {
    /// The batch `id` on `connection`.
    pub fn new(id: impl Into<String>, connection: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            connection: connection.into(),
            job_ids: Vec::new(),
        }
    }

    /// The ids its jobs got when they were dispatched, in order (empty for a handle made with
    /// [`Batch::new`]).
    pub fn job_ids(&self) -> &[String] {
        &self.job_ids
    }

    /// The batch id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The connection it is stored on.
    pub fn connection(&self) -> &str {
        &self.connection
    }

    /// Its progress now (`None` once pruned), read through the global [`queue()`] manager.
    pub async fn info(&self) -> Result<Option<BatchInfo>, QueueError> {
        self.info_on(queue()).await
    }

    /// Its progress now, read through `manager`'s connection.
    pub async fn info_on(&self, manager: &QueueManager) -> Result<Option<BatchInfo>, QueueError> {
        let driver = manager.connection(&self.connection).await?;
        find(driver.as_ref(), &self.id)
            .await
            .map_err(|source| self.error(source))
    }

    /// Cancels the batch, through the global [`queue()`] manager: its jobs not started yet are
    /// skipped. Returns `false` when it was cancelled already, or is gone.
    pub async fn cancel(&self) -> Result<bool, QueueError> {
        self.cancel_on(queue()).await
    }

    /// [`cancel`](Self::cancel) through `manager`'s connection.
    pub async fn cancel_on(&self, manager: &QueueManager) -> Result<bool, QueueError> {
        let driver = manager.connection(&self.connection).await?;
        Ok(cancel(driver.as_ref(), &self.id)
            .await
            .map_err(|source| self.error(source))?
            .unwrap_or(false))
    }

    fn error(&self, source: DriverError) -> QueueError {
        QueueError::Driver {
            connection: self.connection.clone(),
            source,
        }
    }
}

/// Batch `id` on `driver`'s connection.
pub async fn find(driver: &dyn QueueDriver, id: &str) -> Result<Option<BatchInfo>, DriverError> {
    Ok(store::find(driver, id).await?.as_ref().map(BatchInfo::of))
}

/// The newest `limit` batches on `driver`'s connection, newest first.
pub async fn list(driver: &dyn QueueDriver, limit: usize) -> Result<Vec<BatchInfo>, DriverError> {
    Ok(store::list(driver, limit)
        .await?
        .iter()
        .map(BatchInfo::of)
        .collect())
}

/// Cancels batch `id`: `None` when there is no such batch, `Some(false)` when it was cancelled
/// already.
pub async fn cancel(driver: &dyn QueueDriver, id: &str) -> Result<Option<bool>, DriverError> {
    store::cancel(driver, id).await
}

/// Deletes finished batches older than `prune.finished_before` (and unfinished ones created
/// before `prune.unfinished_before`, when set), with their jobs' outcomes. Returns how many.
pub async fn prune(driver: &dyn QueueDriver, prune: BatchPrune) -> Result<u64, DriverError> {
    driver.batch_prune(prune).await
}

/// Records a job's outcome in its batch, when it has one, and stores the callbacks that makes
/// due. Errors are the caller's to handle.
pub(crate) async fn record(
    driver: &dyn QueueDriver,
    envelope: &Envelope,
    outcome: state::Outcome,
) -> Result<(), QueueError> {
    match envelope.batch() {
        Some(batch) => store::record(driver, &batch.id, &batch.job.to_string(), outcome).await,
        None => Ok(()),
    }
}
