//! The [`Job`] trait, its static options, the context a job runs with, and how a job fails.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use crate::data::AppData;
use crate::driver::QueueDriver;

/// A boxed error that can cross threads.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The static configuration of a job type, written by `#[job(...)]`.
///
/// Implemented by the `#[job]` attribute; there is no need to implement it by hand.
pub trait JobMeta {
    /// What awaiting a dispatch gives: the job id (`String`), or for a unique job
    /// (`#[job(unique_for = ..)]`) a [`Dispatched`](crate::queue::Dispatched), which may say the
    /// job was a duplicate.
    type Dispatched: crate::queue::DispatchOutput;
    /// The wire tag stored in the envelope's `class` field.
    const NAME: &'static str;
    /// Tries, timeout, retry delay, queue and connection.
    const OPTIONS: JobOptions;
}

/// Per-type job settings, with RouteMQ's defaults (see [`JobOptions::DEFAULT`]).
///
/// These values are written into every envelope the type dispatches; a worker runs a job with the
/// values from its envelope, so a job dispatched by RouteMQ (Python) keeps the settings its producer
/// chose.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobOptions {
    /// How many times the job may run before it goes to the failed store (≥ 1).
    pub max_tries: u32,
    /// Seconds one attempt may run before it is cancelled and counted as failed (> 0).
    pub timeout: u64,
    /// Seconds to wait before a failed attempt runs again (the base delay when backoff is on).
    pub retry_after: u64,
    /// The queue the job is pushed to unless the dispatch says otherwise.
    pub queue: &'static str,
    /// The connection the job is pushed to; `None` means the configured default.
    pub connection: Option<&'static str>,
    /// Exponential backoff (`retry_after * 2^(attempt-1)`, capped by `max_delay`).
    pub backoff: bool,
    /// The backoff cap in seconds; `None` takes the worker's `QUEUE_RETRY_MAX_DELAY`.
    pub max_delay: Option<f64>,
    /// The backoff jitter fraction; `None` takes the worker's `QUEUE_RETRY_JITTER`.
    pub jitter: Option<f64>,
    /// A unique job: while one with the same key is queued (or running, see `unique_until`), a
    /// second dispatch is a duplicate and is not queued. The key is held at most this many seconds.
    pub unique_for: Option<u64>,
    /// How long a unique job holds its key.
    pub unique_until: UniqueUntil,
    /// Fail for good at this many exceptions (errors, timeouts, panics), even when tries remain:
    /// releases and postponements do not count (Laravel's `maxExceptions`).
    pub max_exceptions: Option<u32>,
    /// Seconds after the dispatch after which no more tries are made (Laravel's `retryUntil`):
    /// a failure past it is final, and a retry that comes due past it fails without running.
    pub retry_until: Option<u64>,
    /// The job's priority within its queue, 0 (the default) to 255: a ready job of a higher
    /// priority is reserved before every ready job of a lower one, FIFO among equals.
    pub priority: u8,
    /// The job's data is stored sealed (see [`crypto`](crate::crypto)): dispatching needs
    /// `ROUTEMQ_KEY`, and a unique job's key is stored as an HMAC of it.
    pub encrypted: bool,
}

/// When a unique job gives its key back (Laravel's `ShouldBeUnique` and
/// `ShouldBeUniqueUntilProcessing`). Either way, at most `unique_for` after the dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UniqueUntil {
    /// When the job has run: it succeeded, or failed for good (not between retries).
    #[default]
    Finish,
    /// When the job starts running: an identical job may be queued while it runs.
    Start,
}

impl JobOptions {
    /// RouteMQ's defaults: 3 tries, 60 s timeout, no retry delay, queue `default`, fixed delays.
    pub const DEFAULT: JobOptions = JobOptions {
        max_tries: 3,
        timeout: 60,
        retry_after: 0,
        queue: "default",
        connection: None,
        backoff: false,
        max_delay: None,
        jitter: None,
        unique_for: None,
        unique_until: UniqueUntil::Finish,
        max_exceptions: None,
        retry_until: None,
        priority: 0,
        encrypted: false,
    };
}

impl Default for JobOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A background job: a `#[job]` struct whose `handle` does the work.
///
/// ```
/// use routemq::prelude::*;
///
/// #[job(max_tries = 3, timeout = 60, retry_after = 10, queue = "emails")]
/// pub struct SendWelcomeEmail {
///     pub to: String,
/// }
///
/// impl Job for SendWelcomeEmail {
///     async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
///         if self.to.is_empty() {
///             return Err(JobError::permanent("no recipient"));
///         }
///         println!("attempt {} of job {}: mailing {}", ctx.attempts(), ctx.job_id(), self.to);
///         Ok(())
///     }
/// }
/// ```
///
/// Return `Err` to try again later (up to `max_tries`); a panic or a timeout counts as a failed
/// attempt too. When the last try fails, [`Job::failed`] runs once and the job moves to the failed
/// store.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is marked #[job] but does not implement `routemq::Job`",
    label = "this type needs an `impl Job`",
    note = "add `impl routemq::Job for {Self} {{ async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {{ .. }} }}`"
)]
pub trait Job: JobMeta + Serialize + DeserializeOwned + Send + 'static {
    /// Does the work. `Ok` acknowledges the job; `Err` fails this attempt.
    fn handle(&mut self, ctx: &JobContext) -> impl Future<Output = Result<(), JobError>> + Send;

    /// Called exactly once when the job has failed for good (tries used up, or a permanent error).
    /// Never called for an attempt that will be retried. The default logs the error.
    fn failed(&mut self, ctx: &JobContext, error: &JobError) -> impl Future<Output = ()> + Send {
        tracing::error!(
            job = Self::NAME,
            job_id = %ctx.job_id(),
            attempts = ctx.attempts(),
            "job {} failed permanently: {error}",
            Self::NAME
        );
        std::future::ready(())
    }

    /// Middleware that wraps this job's `handle`, outermost first, run after the worker's own
    /// (see [`middleware`](crate::middleware)). Built per attempt, so keys can come from the
    /// job's fields. The default is none.
    fn middleware(&self) -> Vec<Box<dyn crate::middleware::Middleware>> {
        Vec::new()
    }

    /// The key that makes a unique job (`#[job(unique_for = ..)]`) a duplicate of another of its
    /// type. The default, `None`, uses the job's whole serialized data (keep `HashMap` fields out
    /// of it: their order is not stable). Return a field (`Some(self.user_id.to_string())`) to
    /// treat jobs that differ elsewhere as duplicates too.
    fn unique_key(&self) -> Option<String> {
        None
    }
}

/// The slot a unique job holds its key in, `unique:{name}:{key}` (for an encrypted job type, the
/// key's HMAC under the current key); `None` for a job that is not unique (or whose data cannot be
/// serialized for its key, or, encrypted, when there is no key: its dispatch fails on that).
pub(crate) fn unique_slot<T: Job>(job: &T) -> Option<String> {
    T::OPTIONS.unique_for?;
    let key = match job.unique_key() {
        Some(key) => key,
        None => serde_json::to_string(job).ok()?,
    };
    let key = if T::OPTIONS.encrypted {
        crate::crypto::keyring()
            .and_then(|keyring| keyring.hide_unique_key(&key))
            .ok()?
    } else {
        key
    };
    Some(format!("unique:{}:{key}", T::NAME))
}

/// What a running job knows about itself.
#[derive(Clone)]
pub struct JobContext {
    name: &'static str,
    job_id: String,
    attempts: u32,
    max_tries: u32,
    queue: String,
    connection: String,
    cancel: CancellationToken,
    data: AppData,
    driver: Option<Arc<dyn QueueDriver>>,
    timeout: Duration,
    batch: Option<String>,
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("name", &self.name)
            .field("job_id", &self.job_id)
            .field("attempts", &self.attempts)
            .field("max_tries", &self.max_tries)
            .field("queue", &self.queue)
            .field("connection", &self.connection)
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

impl JobContext {
    /// Builds a context; the worker does this for every attempt. Useful in tests of `handle`.
    pub fn new(
        job_id: impl Into<String>,
        attempts: u32,
        queue: impl Into<String>,
        connection: impl Into<String>,
    ) -> Self {
        Self {
            name: "",
            job_id: job_id.into(),
            attempts,
            max_tries: attempts.max(1),
            queue: queue.into(),
            connection: connection.into(),
            cancel: CancellationToken::new(),
            data: AppData::new(),
            driver: None,
            timeout: Duration::from_secs(JobOptions::DEFAULT.timeout),
            batch: None,
        }
    }

    /// The context with `driver` as the connection the job came from: what the built-in limits
    /// ([`middleware`](crate::middleware)) keep their slots in. A worker sets it; a test of a
    /// job with limits passes a driver (a `MemoryDriver` will do).
    #[must_use]
    pub fn with_driver(mut self, driver: Arc<dyn QueueDriver>) -> Self {
        self.driver = Some(driver);
        self
    }

    pub(crate) fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    pub(crate) fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The context with `data` as the values [`JobContext::data`] finds (a worker passes the
    /// values registered on it; tests pass their own).
    #[must_use]
    pub fn with_data(mut self, data: AppData) -> Self {
        self.data = data;
        self
    }

    /// The context with `max_tries` as the job's tries (tests of the last attempt).
    #[must_use]
    pub fn with_max_tries(mut self, max_tries: u32) -> Self {
        self.max_tries = max_tries;
        self
    }

    pub(crate) fn with_batch(mut self, batch: Option<String>) -> Self {
        self.batch = batch;
        self
    }

    pub(crate) fn with_name(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    pub(crate) fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// The job's wire tag (`my_app.jobs.SendEmail`); empty in a context built by hand.
    pub fn job_name(&self) -> &'static str {
        self.name
    }

    /// The shared value of type `T` registered on the worker (`.data(value)` on the [`Worker`] or
    /// the CLI's [`App`]). Not registered is a set-up error, not bad luck: the error is permanent
    /// (the job goes to the failed store, to be retried with `queue-retry` once the worker has it).
    ///
    /// [`Worker`]: crate::Worker
    /// [`App`]: https://docs.rs/routemq/latest/routemq/cli/struct.App.html
    pub fn data<T: Send + Sync + 'static>(&self) -> Result<&T, JobError> {
        self.data.get::<T>().ok_or_else(|| {
            let registered = self.data.type_names();
            JobError::permanent(format!(
                "no shared data of type `{}` is registered on this worker (registered: {}); \
                 add it with `.data(value)` on the Worker or on routemq::cli::App",
                std::any::type_name::<T>(),
                if registered.is_empty() {
                    "none".to_owned()
                } else {
                    registered.join(", ")
                }
            ))
        })
    }

    /// The driver of the connection the job came from (set by the worker), for middleware that
    /// coordinates through it ([`QueueDriver::acquire_slot`]).
    pub fn driver(&self) -> Option<&Arc<dyn QueueDriver>> {
        self.driver.as_ref()
    }

    /// How long this attempt may run.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Every shared value registered on the worker.
    pub fn app_data(&self) -> &AppData {
        &self.data
    }

    /// The id of the batch the job belongs to, if it is in one (see [`batch`](mod@crate::batch)).
    pub fn batch_id(&self) -> Option<&str> {
        self.batch.as_deref()
    }

    /// The id the driver gave the job (a row id, or a Redis record id).
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// Which attempt this is, counting from 1.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The most attempts this job gets (from its envelope, or the worker's `--max-tries`).
    pub fn max_tries(&self) -> u32 {
        self.max_tries
    }

    /// Whether this is the last attempt before the job goes to the failed store.
    pub fn is_last_attempt(&self) -> bool {
        self.attempts >= self.max_tries
    }

    /// The queue the job was reserved from.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The connection (driver) name the job was reserved from.
    pub fn connection(&self) -> &str {
        &self.connection
    }

    /// Fires when the attempt times out, the worker shuts down, or the job is cancelled
    /// (`queue-cancel`); long jobs should watch it and stop cleanly
    /// (`ctx.cancellation().cancelled().await` in a `select!`).
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Whether the cancellation token has fired.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

/// Why an attempt did not succeed, and what should happen next.
///
/// Anything that converts into a [`BoxError`] converts into [`JobError::Failed`] with `?`: every
/// `std::error::Error + Send + Sync` (I/O, HTTP, database errors), `anyhow::Error`,
/// `Box<dyn Error + Send + Sync>`, and `String`/`&str` messages. `JobError` itself deliberately
/// does not implement `std::error::Error` (that is what makes the blanket conversion possible, as
/// in `anyhow`).
#[non_exhaustive]
pub enum JobError {
    /// A retryable failure: runs again after `retry_after` (or the backoff) while tries remain.
    Failed(BoxError),
    /// Put the job back and run it again after `delay`. Uses up an attempt.
    Release {
        /// How long to wait before the job is visible again.
        delay: Duration,
    },
    /// Put the job back to run after `delay` without using up an attempt (a rate limit or a lock
    /// said "not now"; the job itself did not fail).
    Postponed {
        /// How long to wait before the job is visible again.
        delay: Duration,
    },
    /// A failure that will not get better: skip the remaining tries and go to the failed store.
    Permanent(BoxError),
    /// The attempt ran longer than the job's timeout (set by the worker).
    TimedOut {
        /// The timeout that was exceeded.
        after: Duration,
    },
    /// `handle` panicked (set by the worker); the message is the panic's payload.
    Panicked(String),
    /// The job's last attempt lost its lease: its worker died or stalled longer than the
    /// visibility timeout, and the reaper moved it to the failed store (set by the worker, for
    /// `failed()`).
    ReservationExpired {
        /// The visibility timeout that passed.
        visibility_timeout: Duration,
    },
}

impl JobError {
    /// A retryable failure with a message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self::Failed(message.into().into())
    }

    /// A failure that skips the remaining tries.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent(message.into().into())
    }

    /// Marks any error as permanent: `.map_err(JobError::fatal)?`.
    pub fn fatal<E: Into<BoxError>>(error: E) -> Self {
        Self::Permanent(error.into())
    }

    /// Release the job to run again after `delay` (uses up an attempt).
    pub fn release(delay: Duration) -> Self {
        Self::Release { delay }
    }

    /// Put the job back to run after `delay` without using up an attempt.
    pub fn postpone(delay: Duration) -> Self {
        Self::Postponed { delay }
    }

    /// Whether the attempt raised this error (a failure, a timeout, a panic), as opposed to
    /// putting the job back on purpose (`release`, `postpone`): what failure hooks and
    /// `max_exceptions` count.
    pub fn is_exception(&self) -> bool {
        !matches!(self, Self::Release { .. } | Self::Postponed { .. })
    }

    /// Whether the job may run again after this error (if tries remain).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Permanent(_) | Self::ReservationExpired { .. })
    }

    /// The error's class name, as stored in front of the message in the failed store
    /// (`"JobError::Failed: connection refused"`), and used as a low-cardinality log field.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Failed(_) => "Failed",
            Self::Release { .. } => "Release",
            Self::Postponed { .. } => "Postponed",
            Self::Permanent(_) => "Permanent",
            Self::TimedOut { .. } => "TimedOut",
            Self::Panicked(_) => "Panicked",
            Self::ReservationExpired { .. } => "ReservationExpired",
        }
    }
}

impl<E: Into<BoxError>> From<E> for JobError {
    fn from(error: E) -> Self {
        Self::Failed(error.into())
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(e) | Self::Permanent(e) => {
                write!(f, "{e}")?;
                let mut source = e.source();
                while let Some(cause) = source {
                    write!(f, ": {cause}")?;
                    source = cause.source();
                }
                Ok(())
            }
            Self::Release { delay } => write!(f, "released back to the queue for {delay:?}"),
            Self::Postponed { delay } => write!(f, "postponed for {delay:?}"),
            Self::TimedOut { after } => {
                write!(f, "job timed out after {} seconds", after.as_secs_f64())
            }
            Self::Panicked(message) => write!(f, "job panicked: {message}"),
            Self::ReservationExpired { visibility_timeout } => write!(
                f,
                "Job reservation expired after {}s visibility timeout",
                visibility_timeout.as_secs()
            ),
        }
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobError::{}({self})", self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_failure() -> Result<(), JobError> {
        Err(std::io::Error::other("disk full"))?;
        Ok(())
    }

    #[test]
    fn question_mark_converts_any_error_into_a_retryable_failure() {
        let error = io_failure().expect_err("fails");
        assert!(error.is_retryable());
        assert_eq!(error.kind(), "Failed");
        assert_eq!(error.to_string(), "disk full");
    }

    fn boxed_failure() -> Result<(), JobError> {
        let error: BoxError = "upstream said no".into();
        Err(error)?;
        Ok(())
    }

    #[test]
    fn question_mark_converts_boxed_errors_and_messages() {
        assert_eq!(
            boxed_failure().expect_err("fails").to_string(),
            "upstream said no"
        );
        let from_message: JobError = "plain message".into();
        assert_eq!(from_message.kind(), "Failed");
    }

    #[test]
    fn missing_shared_data_is_a_permanent_error_naming_the_type() {
        let ctx = JobContext::new("1", 1, "q", "memory").with_data(AppData::new().with(5u32));
        assert_eq!(ctx.data::<u32>().ok(), Some(&5));
        let error = ctx.data::<String>().expect_err("not registered");
        assert!(!error.is_retryable());
        let message = error.to_string();
        assert!(message.contains("`alloc::string::String`"), "{message}");
        assert!(message.contains("registered: u32"), "{message}");
    }

    #[test]
    fn permanent_errors_are_not_retryable() {
        let error = JobError::permanent("bad address");
        assert!(!error.is_retryable());
        assert_eq!(format!("{error:?}"), "JobError::Permanent(bad address)");
        assert!(JobError::release(Duration::from_secs(5)).is_retryable());
        assert!(!JobError::release(Duration::ZERO).is_exception());
        assert!(!JobError::postpone(Duration::ZERO).is_exception());
        assert!(error.is_exception());
    }

    #[test]
    fn context_knows_its_last_attempt() {
        let ctx = JobContext::new("7", 3, "emails", "memory").with_max_tries(3);
        assert!(ctx.is_last_attempt());
        assert_eq!(
            (ctx.job_id(), ctx.queue(), ctx.connection()),
            ("7", "emails", "memory")
        );
    }
}
