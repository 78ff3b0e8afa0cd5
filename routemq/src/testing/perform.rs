//! [`perform`]: run one job's `handle` directly, with the context and shared data a test chooses
//! (Oban's `perform_job`).

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use crate::job::{Job, JobContext, JobError};

/// Builds a run of `job.handle(..)` with a context like a worker's first attempt: job id
/// `"test-1"`, attempt 1 of the type's `max_tries`, its queue, connection `"test"`, no shared data.
/// Change any of it, then await it for the result.
///
/// ```
/// use routemq::prelude::*;
///
/// #[derive(Debug)]
/// struct Greeting(String);
///
/// #[job(max_tries = 3)]
/// struct Greet { name: String }
///
/// impl Job for Greet {
///     async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
///         let greeting = ctx.data::<Greeting>()?;
///         if ctx.is_last_attempt() {
///             return Err(JobError::permanent("too late"));
///         }
///         println!("{}, {}", greeting.0, self.name);
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use routemq::testing::perform;
///
/// let ok = perform(Greet { name: "Ada".into() }).data(Greeting("hello".into())).await;
/// assert!(ok.is_ok());
/// let last = perform(Greet { name: "Ada".into() }).data(Greeting("hi".into())).attempt(3).await;
/// assert_eq!(last.unwrap_err().kind(), "Permanent");
/// let missing = perform(Greet { name: "Ada".into() }).await;
/// assert!(missing.unwrap_err().to_string().contains("Greeting"));
/// # }
/// ```
pub fn perform<T: Job>(job: T) -> Perform<T> {
    let ctx = JobContext::new("test-1", 1, T::OPTIONS.queue, "test")
        .with_max_tries(T::OPTIONS.max_tries)
        .with_name(T::NAME);
    Perform {
        job,
        ctx,
        middleware: false,
    }
}

/// A job about to be run by a test; see [`perform`].
#[derive(Debug)]
#[must_use = "nothing runs until it is awaited"]
pub struct Perform<T: Job> {
    job: T,
    ctx: JobContext,
    middleware: bool,
}

impl<T: Job> Perform<T> {
    /// Registers a shared value for [`JobContext::data`].
    pub fn data<V: Send + Sync + 'static>(mut self, value: V) -> Self {
        let mut data = self.ctx.app_data().clone();
        data.insert(value);
        self.ctx = self.ctx.with_data(data);
        self
    }

    /// Runs as attempt `attempt` (from 1).
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.ctx = self.ctx.with_attempts(attempt);
        self
    }

    /// Keeps the slots of the job's limits (rate limits, locks) in `driver`, as a worker keeps
    /// them in its connection's; needed with [`with_middleware`](Self::with_middleware) when the
    /// job has such middleware.
    pub fn driver(mut self, driver: std::sync::Arc<dyn crate::QueueDriver>) -> Self {
        self.ctx = self.ctx.with_driver(driver);
        self
    }

    /// Runs with `ctx` as it is (its job name is set to the type's).
    pub fn context(mut self, ctx: JobContext) -> Self {
        self.ctx = ctx.with_name(T::NAME);
        self
    }

    /// Runs the job's own middleware ([`Job::middleware`]) around `handle`, as a worker would
    /// (without the worker's middleware). By default only `handle` runs.
    pub fn with_middleware(mut self) -> Self {
        self.middleware = true;
        self
    }

    /// Runs the job and gives it back with the result, to check what `handle` changed in it.
    pub async fn run(mut self) -> (T, Result<(), JobError>) {
        let result = if self.middleware {
            crate::middleware::run_chain(&[], &mut self.job, &self.ctx).await
        } else {
            self.job.handle(&self.ctx).await
        };
        (self.job, result)
    }
}

impl<T: Job> IntoFuture for Perform<T> {
    type Output = Result<(), JobError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.run().await.1 })
    }
}
