//! Dispatch builders: `job.dispatch().await`, `queue().push(job).on_queue("q").await`, `bulk`.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use tracing::Instrument;

use super::unique::{DispatchOutput, Dispatched};
use super::{QueueError, QueueManager, queue};
use crate::driver::NewJob;
use crate::envelope::{OwnFields, encode_job, short_name};
use crate::job::{Job, unique_slot};
use crate::metrics::metrics;
use crate::names::validate_queue_name;
use crate::observability::{ProducerIds, producer_ids};

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

    /// Pushes the job to become visible at `at` (now, if `at` has passed).
    fn dispatch_at(self, at: std::time::SystemTime) -> PendingDispatch<'static, Self> {
        queue().push(self).at(at)
    }
}

impl<T: Job> Dispatch for T {}

/// Where and when a dispatch goes; resolved when awaited.
#[derive(Debug, Default, Clone)]
struct Target {
    queue: Option<String>,
    connection: Option<String>,
    delay: Duration,
    priority: Option<u8>,
}

/// The resolved target of a dispatch.
pub(crate) struct Resolved {
    pub(crate) queue: String,
    pub(crate) connection: String,
}

impl Target {
    fn queue<T: Job>(&self) -> Result<String, QueueError> {
        let queue = self
            .queue
            .clone()
            .unwrap_or_else(|| T::OPTIONS.queue.to_owned());
        validate_queue_name(&queue)?;
        Ok(queue)
    }

    fn resolve<T: Job>(&self, manager: &QueueManager) -> Result<Resolved, QueueError> {
        let queue = self.queue::<T>()?;
        let connection = match (&self.connection, T::OPTIONS.connection) {
            (Some(connection), _) => connection.clone(),
            (None, Some(connection)) => connection.to_owned(),
            (None, None) => manager.default_connection()?.to_owned(),
        };
        Ok(Resolved { queue, connection })
    }

    /// Encodes `jobs` for `queue` on `connection`, all under the dispatch's trace ids; each with
    /// the slot of its key when it is a unique job (written into its envelope too).
    fn encode<'j, T: Job>(
        &self,
        jobs: impl IntoIterator<Item = &'j T>,
        queue: &str,
        connection: &str,
        bulk: bool,
        ids: &ProducerIds,
    ) -> Result<Vec<(NewJob, Option<String>)>, QueueError> {
        if self.delay > crate::limits::MAX_DURATION {
            return Err(QueueError::DelayTooLong {
                delay: self.delay,
                max: crate::limits::MAX_DURATION,
            });
        }
        let delay = self.delay;
        let delay_secs = (!delay.is_zero()).then_some(delay.as_secs());
        jobs.into_iter()
            .map(|job| {
                metrics().enqueue_started(queue, short_name(T::NAME));
                let key = unique_slot(job);
                let payload = encode_job(
                    job,
                    queue,
                    connection,
                    delay_secs,
                    bulk,
                    ids,
                    OwnFields {
                        unique_key: key.as_deref(),
                        priority: self.priority,
                    },
                )
                .inspect_err(|error| {
                    metrics().enqueue_failed(queue, short_name(T::NAME), error_kind(error));
                })?;
                let job = NewJob {
                    queue: queue.to_owned(),
                    payload,
                    delay,
                    priority: self.priority.unwrap_or(T::OPTIONS.priority),
                };
                Ok((job, key))
            })
            .collect()
    }
}

fn error_kind(error: &crate::envelope::EnvelopeError) -> &'static str {
    match error {
        crate::envelope::EnvelopeError::TooLarge { .. } => "TooLarge",
        _ => "Encode",
    }
}

/// The `queue.enqueue` span of a dispatch.
fn enqueue_span(
    name: &'static str,
    queue: &str,
    connection: &str,
    ids: &ProducerIds,
) -> tracing::Span {
    tracing::info_span!(
        "queue.enqueue",
        otel.kind = "producer",
        messaging.system = "routemq.queue",
        messaging.destination = %queue,
        routemq.job.name = name,
        routemq.connection = %connection,
        trace_id = %ids.trace_id,
        span_id = %ids.span_id,
        parent_span_id = ids.parent_span_id.as_deref(),
    )
}

/// The trace ids of a dispatch and its `queue.enqueue` span. With the `otel` feature and an
/// OpenTelemetry layer installed, the ids are the layer's, so exported traces line up.
fn traced(name: &'static str, queue: &str, connection: &str) -> (ProducerIds, tracing::Span) {
    #[cfg_attr(not(feature = "otel"), allow(unused_mut))]
    let mut ids = producer_ids();
    let span = enqueue_span(name, queue, connection, &ids);
    #[cfg(feature = "otel")]
    if let Some((trace_id, span_id)) = crate::observability::otel::ids_of(&span) {
        if let Some((_, parent)) = crate::observability::otel::ids_of(&tracing::Span::current()) {
            ids.parent_span_id = Some(parent);
        }
        span.record("trace_id", trace_id.as_str());
        span.record("span_id", span_id.as_str());
        ids.trace_id = trace_id;
        ids.span_id = span_id;
    }
    (ids, span)
}

/// Stores encoded jobs through the manager (or its fake), counting them. `keys` holds, for each
/// job, the slot of a unique job's key (`None`: not unique); `holder` holds the keys taken.
async fn store<T: Job>(
    manager: &QueueManager,
    resolved: Resolved,
    batch: Vec<NewJob>,
    keys: Vec<Option<String>>,
    holder: &str,
    delay: Duration,
) -> Result<Vec<Dispatched>, QueueError> {
    let Resolved { queue, connection } = resolved;
    let class = short_name(T::NAME);
    let count = batch.len();
    if let Some(fake) = manager.fake() {
        return Ok(batch
            .into_iter()
            .zip(keys)
            .map(|(job, key)| {
                if key.is_some_and(|key| !fake.take_unique(key)) {
                    return Dispatched::Duplicate { existing: None };
                }
                Dispatched::Queued(fake.record(T::NAME, &queue, &connection, delay, job.payload))
            })
            .collect());
    }
    let driver_error = |source| QueueError::Driver {
        connection: connection.clone(),
        source,
    };
    let stored = async {
        let driver = manager.connection(&connection).await?;
        let unique_for = Duration::from_secs(T::OPTIONS.unique_for.unwrap_or(0));
        let (batch, taken, duplicates) =
            super::unique::take_keys(driver.as_ref(), batch, keys, holder, unique_for)
                .await
                .map_err(driver_error)?;
        match driver.push(&batch).await {
            Ok(ids) => Ok(super::unique::merge(ids, &duplicates)),
            Err(source) => {
                super::unique::give_back(driver.as_ref(), &taken, holder).await;
                Err(driver_error(source))
            }
        }
    }
    .await;
    match &stored {
        Ok(outcomes) => {
            for outcome in outcomes {
                match outcome {
                    Dispatched::Queued(_) => metrics().enqueue_succeeded(&queue, class),
                    Dispatched::Duplicate { .. } => {
                        tracing::debug!(job = T::NAME, queue = %queue, "duplicate of a unique job: not queued");
                    }
                }
            }
            tracing::debug!(job = T::NAME, queue = %queue, connection = %connection, count = outcomes.len(), "dispatched");
        }
        Err(error) => {
            for _ in 0..count {
                metrics().enqueue_failed(&queue, class, "Driver");
            }
            tracing::warn!(job = T::NAME, queue = %queue, connection = %connection, %error, "dispatch failed");
        }
    }
    stored
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

    /// Sets the job's priority within its queue (0 to 255, higher first), instead of its type's
    /// `#[job(priority = ..)]`.
    pub fn priority(mut self, priority: u8) -> Self {
        self.target.priority = Some(priority);
        self
    }

    /// Keeps the job invisible until `at` (by this host's clock; now, if `at` has passed).
    pub fn at(self, at: std::time::SystemTime) -> Self {
        let delay = at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO);
        self.delay(delay)
    }

    /// The job as it would be stored on `connection` (used by transactional dispatch).
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    pub(crate) fn encode_for(&self, connection: &str) -> Result<NewJob, QueueError> {
        let queue = self.target.queue::<T>()?;
        let mut jobs =
            self.target
                .encode([&self.job], &queue, connection, false, &producer_ids())?;
        jobs.pop()
            .map(|(job, _)| job)
            .ok_or_else(|| QueueError::Driver {
                connection: connection.to_owned(),
                source: crate::driver::DriverError::backend("push", "nothing to push"),
            })
    }

    /// The fake capturing this dispatch, if a test installed one.
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    pub(crate) fn fake(&self) -> Option<std::sync::Arc<crate::testing::FakeQueue>> {
        self.manager.fake()
    }

    async fn send(self) -> Result<T::Dispatched, QueueError> {
        let resolved = self.target.resolve::<T>(self.manager)?;
        let (ids, span) = traced(T::NAME, &resolved.queue, &resolved.connection);
        let (batch, keys) = self
            .target
            .encode(
                [&self.job],
                &resolved.queue,
                &resolved.connection,
                false,
                &ids,
            )?
            .into_iter()
            .unzip();
        let connection = resolved.connection.clone();
        let stored = store::<T>(
            self.manager,
            resolved,
            batch,
            keys,
            &ids.span_id,
            self.target.delay,
        )
        .instrument(span)
        .await?;
        let outcome = stored
            .into_iter()
            .next()
            .ok_or_else(|| QueueError::Driver {
                connection,
                source: crate::driver::DriverError::backend("push", "the driver returned no id"),
            })?;
        Ok(T::Dispatched::from_dispatched(outcome))
    }
}

impl<'m, T: Job> IntoFuture for PendingDispatch<'m, T> {
    type Output = Result<T::Dispatched, QueueError>;
    type IntoFuture = DispatchFuture<'m, T::Dispatched>;

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

    /// Sets every job's priority within its queue (0 to 255, higher first).
    pub fn priority(mut self, priority: u8) -> Self {
        self.target.priority = Some(priority);
        self
    }

    /// The jobs as they would be stored on `connection` (used by transactional dispatch).
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    pub(crate) fn encode_for(&self, connection: &str) -> Result<Vec<NewJob>, QueueError> {
        let queue = self.target.queue::<T>()?;
        let encoded = self
            .target
            .encode(&self.jobs, &queue, connection, true, &producer_ids())?;
        Ok(encoded.into_iter().map(|(job, _)| job).collect())
    }

    /// The fake capturing this dispatch, if a test installed one.
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    pub(crate) fn fake(&self) -> Option<std::sync::Arc<crate::testing::FakeQueue>> {
        self.manager.fake()
    }

    async fn send(self) -> Result<Vec<T::Dispatched>, QueueError> {
        if self.jobs.is_empty() {
            return Ok(Vec::new());
        }
        let resolved = self.target.resolve::<T>(self.manager)?;
        let (ids, span) = traced(T::NAME, &resolved.queue, &resolved.connection);
        let (batch, keys) = self
            .target
            .encode(
                &self.jobs,
                &resolved.queue,
                &resolved.connection,
                true,
                &ids,
            )?
            .into_iter()
            .unzip();
        let stored = store::<T>(
            self.manager,
            resolved,
            batch,
            keys,
            &ids.span_id,
            self.target.delay,
        )
        .instrument(span)
        .await?;
        Ok(stored
            .into_iter()
            .map(T::Dispatched::from_dispatched)
            .collect())
    }
}

impl<'m, T: Job> IntoFuture for PendingBulk<'m, T> {
    type Output = Result<Vec<T::Dispatched>, QueueError>;
    type IntoFuture = DispatchFuture<'m, Vec<T::Dispatched>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}
