//! Dispatch builders: `job.dispatch().await`, `queue().push(job).on_queue("q").await`, `bulk`.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use super::{QueueError, QueueManager, queue};
use crate::driver::NewJob;
use crate::envelope::encode_job;
use crate::job::Job;
use crate::names::validate_queue_name;

type DispatchFuture<'m, T> = Pin<Box<dyn Future<Output = Result<T, QueueError>> + Send + 'm>>;

/// `dispatch()` and `dispatch_later()` on every job, through the global [`queue()`].
pub trait Dispatch: Job + Sized {
    /// Pushes the job to its queue. Returns the job id when awaited.
    ///
    /// ```no_run
    /// # use routemq::prelude::*;
    /// # #[job] struct Ping;
    /// # impl Job for Ping { async fn handle(&mut self, _: &JobContext) -> Result<(), JobError> { Ok(()) } }
    /// # async fn run() -> Result<(), routemq::QueueError> {
    /// let id = Ping.dispatch().await?;
    /// Ping.dispatch().on_queue("urgent").on_connection("redis").await?;
    /// # Ok(()) }
    /// ```
    fn dispatch(self) -> PendingDispatch<'static, Self> {
        queue().push(self)
    }

    /// Pushes the job to become visible after `delay`.
    fn dispatch_later(self, delay: Duration) -> PendingDispatch<'static, Self> {
        queue().push(self).delay(delay)
    }
}

impl<T: Job> Dispatch for T {}

/// Where and when a dispatch goes; resolved when awaited.
#[derive(Debug, Default, Clone)]
struct Target {
    queue: Option<String>,
    connection: Option<String>,
    delay: Duration,
}

/// The resolved target of a dispatch.
pub(crate) struct Resolved {
    pub(crate) queue: String,
    pub(crate) connection: String,
}

impl Target {
    fn resolve<T: Job>(&self, manager: &QueueManager) -> Result<Resolved, QueueError> {
        let queue = self
            .queue
            .clone()
            .unwrap_or_else(|| T::OPTIONS.queue.to_owned());
        validate_queue_name(&queue)?;
        let connection = match (&self.connection, T::OPTIONS.connection) {
            (Some(connection), _) => connection.clone(),
            (None, Some(connection)) => connection.to_owned(),
            (None, None) => manager.default_connection()?.to_owned(),
        };
        Ok(Resolved { queue, connection })
    }
}

/// A single dispatch being built. Await it to push the job; the output is the new job id.
#[must_use = "a dispatch does nothing until it is awaited"]
#[derive(Debug)]
pub struct PendingDispatch<'m, T: Job> {
    manager: &'m QueueManager,
    job: T,
    target: Target,
}

impl<'m, T: Job> PendingDispatch<'m, T> {
    pub(crate) fn new(manager: &'m QueueManager, job: T) -> Self {
        Self {
            manager,
            job,
            target: Target::default(),
        }
    }

    /// Pushes to `queue` instead of the job's default queue.
    pub fn on_queue(mut self, queue: impl Into<String>) -> Self {
        self.target.queue = Some(queue.into());
        self
    }

    /// Pushes through `connection` instead of the job's or the default connection.
    pub fn on_connection(mut self, connection: impl Into<String>) -> Self {
        self.target.connection = Some(connection.into());
        self
    }

    /// Keeps the job invisible for `delay`.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.target.delay = delay;
        self
    }

    /// The job as it would be stored on `connection` (used by transactional dispatch).
    pub(crate) fn encode_for(&self, connection: &str) -> Result<NewJob, QueueError> {
        let queue = self
            .target
            .queue
            .clone()
            .unwrap_or_else(|| T::OPTIONS.queue.to_owned());
        validate_queue_name(&queue)?;
        let delay = self.target.delay;
        let delay_secs = (!delay.is_zero()).then_some(delay.as_secs());
        let payload = encode_job(&self.job, &queue, connection, delay_secs, false)?;
        Ok(NewJob {
            queue,
            payload,
            delay,
        })
    }

    async fn send(self) -> Result<String, QueueError> {
        let Resolved { queue, connection } = self.target.resolve::<T>(self.manager)?;
        let delay = self.target.delay;
        let delay_secs = (!delay.is_zero()).then_some(delay.as_secs());
        let payload = encode_job(&self.job, &queue, &connection, delay_secs, false)?;
        if let Some(fake) = self.manager.fake() {
            return Ok(fake.record(T::NAME, &queue, &connection, delay, payload));
        }
        let driver = self.manager.connection(&connection).await?;
        let ids = driver
            .push(&[NewJob {
                queue: queue.clone(),
                payload,
                delay,
            }])
            .await
            .map_err(|source| QueueError::Driver {
                connection: connection.clone(),
                source,
            })?;
        tracing::debug!(job = T::NAME, queue = %queue, connection = %connection, "dispatched");
        ids.into_iter().next().ok_or_else(|| QueueError::Driver {
            connection,
            source: crate::driver::DriverError::backend("push", "the driver returned no id"),
        })
    }
}

impl<'m, T: Job> IntoFuture for PendingDispatch<'m, T> {
    type Output = Result<String, QueueError>;
    type IntoFuture = DispatchFuture<'m, String>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// A bulk dispatch: every job in one driver call (one statement, one pipeline).
#[must_use = "a dispatch does nothing until it is awaited"]
#[derive(Debug)]
pub struct PendingBulk<'m, T: Job> {
    manager: &'m QueueManager,
    jobs: Vec<T>,
    target: Target,
}

impl<'m, T: Job> PendingBulk<'m, T> {
    pub(crate) fn new(manager: &'m QueueManager, jobs: Vec<T>) -> Self {
        Self {
            manager,
            jobs,
            target: Target::default(),
        }
    }

    /// Pushes to `queue` instead of the job type's default queue.
    pub fn on_queue(mut self, queue: impl Into<String>) -> Self {
        self.target.queue = Some(queue.into());
        self
    }

    /// Pushes through `connection`.
    pub fn on_connection(mut self, connection: impl Into<String>) -> Self {
        self.target.connection = Some(connection.into());
        self
    }

    /// Keeps every job invisible for `delay`.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.target.delay = delay;
        self
    }

    /// The jobs as they would be stored on `connection` (used by transactional dispatch).
    pub(crate) fn encode_for(&self, connection: &str) -> Result<Vec<NewJob>, QueueError> {
        let queue = self
            .target
            .queue
            .clone()
            .unwrap_or_else(|| T::OPTIONS.queue.to_owned());
        validate_queue_name(&queue)?;
        let delay = self.target.delay;
        let delay_secs = (!delay.is_zero()).then_some(delay.as_secs());
        self.jobs
            .iter()
            .map(|job| {
                let payload = encode_job(job, &queue, connection, delay_secs, true)?;
                Ok(NewJob {
                    queue: queue.clone(),
                    payload,
                    delay,
                })
            })
            .collect()
    }

    async fn send(self) -> Result<Vec<String>, QueueError> {
        if self.jobs.is_empty() {
            return Ok(Vec::new());
        }
        let Resolved { queue, connection } = self.target.resolve::<T>(self.manager)?;
        let delay = self.target.delay;
        let delay_secs = (!delay.is_zero()).then_some(delay.as_secs());
        let mut batch = Vec::with_capacity(self.jobs.len());
        for job in &self.jobs {
            let payload = encode_job(job, &queue, &connection, delay_secs, true)?;
            batch.push(NewJob {
                queue: queue.clone(),
                payload,
                delay,
            });
        }
        if let Some(fake) = self.manager.fake() {
            return Ok(batch
                .into_iter()
                .map(|job| fake.record(T::NAME, &queue, &connection, delay, job.payload))
                .collect());
        }
        let driver = self.manager.connection(&connection).await?;
        let ids = driver
            .push(&batch)
            .await
            .map_err(|source| QueueError::Driver {
                connection: connection.clone(),
                source,
            })?;
        tracing::debug!(job = T::NAME, queue = %queue, connection = %connection, count = ids.len(), "bulk dispatched");
        Ok(ids)
    }
}

impl<'m, T: Job> IntoFuture for PendingBulk<'m, T> {
    type Output = Result<Vec<String>, QueueError>;
    type IntoFuture = DispatchFuture<'m, Vec<String>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}
