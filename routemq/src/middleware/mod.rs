//! Job middleware: code that wraps a job's `handle` and may run it, skip it, postpone it or fail it
//! (tower's layers, Laravel's job middleware).
//!
//! A middleware gets the job's context and a [`Next`]; calling [`Next::run`] runs the rest of the
//! chain and then `handle`. Not calling it decides for the job:
//!
//! | a middleware returns | the job |
//! |---|---|
//! | `next.run().await` | runs; its result is the attempt's result |
//! | `Ok(())` without running `next` | is skipped and acknowledged (deleted) |
//! | `Err(JobError::postpone(delay))` | goes back to its queue for `delay`, its attempt refunded |
//! | `Err(JobError::release(delay))` | goes back for `delay`, the attempt used up |
//! | `Err(JobError::permanent(..))` | fails for good (`failed()` runs, then the failed store) |
//! | `Err(any other error)` | fails this attempt (retried while tries remain) |
//!
//! **Built in**, each enforced across every process and host that shares the job's connection,
//! on every driver (through its [slots](crate::driver::slots)):
//! [`RateLimited`] (N jobs per period per key), [`ConcurrencyLimited`] (N jobs per key at a time)
//! and [`WithoutOverlapping`] (one at a time; both with an expiry), [`ThrottlesExceptions`] (after N failures in a period, hold the key's jobs
//! for a cool-down). Jobs they hold back are postponed, their attempts refunded.
//!
//! **Order.** Worker middleware (registered with [`Worker::middleware`] or the CLI's
//! `App::middleware`) runs first, in the order it was added; then the job's own
//! ([`Job::middleware`]), in the order of its list; then `handle`. The first middleware is the
//! outermost: it sees the final result of everything inside it. All of it runs in the job's task,
//! under the job's timeout and cancellation token.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use routemq::prelude::*;
//! use routemq::middleware::{Middleware, Next};
//!
//! /// Logs how long every job takes.
//! struct Timing;
//!
//! #[routemq::async_trait]
//! impl Middleware for Timing {
//!     async fn handle(&self, ctx: &JobContext, next: Next<'_>) -> Result<(), JobError> {
//!         let started = Instant::now();
//!         let result = next.run().await;
//!         println!("{} took {:?}", ctx.job_name(), started.elapsed());
//!         result
//!     }
//! }
//!
//! /// Skips work outside business hours by postponing it (no attempt used).
//! struct OfficeHours { open: bool }
//!
//! #[routemq::async_trait]
//! impl Middleware for OfficeHours {
//!     async fn handle(&self, _ctx: &JobContext, next: Next<'_>) -> Result<(), JobError> {
//!         if !self.open {
//!             return Err(JobError::postpone(Duration::from_secs(3600)));
//!         }
//!         next.run().await
//!     }
//! }
//!
//! #[job]
//! struct CallCustomer { phone: String }
//!
//! impl Job for CallCustomer {
//!     async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> { Ok(()) }
//!
//!     fn middleware(&self) -> Vec<Box<dyn Middleware>> {
//!         vec![Box::new(OfficeHours { open: true })]
//!     }
//! }
//!
//! let worker = Worker::new(
//!     std::sync::Arc::new(routemq::driver::memory::MemoryDriver::new()),
//!     "memory",
//!     WorkerOptions::default(),
//! )
//! .middleware(Timing);
//! # drop(worker);
//! ```
//!
//! [`Worker::middleware`]: crate::Worker::middleware
//! [`Job::middleware`]: crate::Job::middleware

mod concurrency_limited;
mod rate_limited;
mod slots;
mod throttles_exceptions;

use std::fmt;

use async_trait::async_trait;

pub use concurrency_limited::{ConcurrencyLimited, WithoutOverlapping};
pub use rate_limited::RateLimited;
pub use throttles_exceptions::ThrottlesExceptions;

use crate::job::{JobContext, JobError};
use crate::registry::ErasedJob;

/// Code that wraps a job's `handle`. See the [module documentation](self) for what its result
/// does to the job and for the order middleware runs in.
#[async_trait]
pub trait Middleware: Send + Sync + 'static {
    /// Runs around the rest of the chain: call `next.run().await` to go on, or return without it.
    async fn handle(&self, ctx: &JobContext, next: Next<'_>) -> Result<(), JobError>;
}

/// The rest of a middleware chain, ending in the job's `handle`.
pub struct Next<'a> {
    rest: &'a [&'a dyn Middleware],
    job: &'a mut dyn ErasedJob,
    ctx: &'a JobContext,
}

impl fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next")
            .field("middleware_left", &self.rest.len())
            .finish_non_exhaustive()
    }
}

impl<'a> Next<'a> {
    pub(crate) fn new(
        chain: &'a [&'a dyn Middleware],
        job: &'a mut dyn ErasedJob,
        ctx: &'a JobContext,
    ) -> Self {
        Self {
            rest: chain,
            job,
            ctx,
        }
    }

    /// Runs the next middleware, or `handle` when none is left.
    pub async fn run(self) -> Result<(), JobError> {
        match self.rest.split_first() {
            Some((first, rest)) => {
                let next = Next {
                    rest,
                    job: self.job,
                    ctx: self.ctx,
                };
                first.handle(self.ctx, next).await
            }
            None => self.job.handle(self.ctx).await,
        }
    }
}

/// Runs `job` through the worker's middleware, then its own, then `handle`.
pub(crate) async fn run_chain(
    worker: &[std::sync::Arc<dyn Middleware>],
    job: &mut dyn ErasedJob,
    ctx: &JobContext,
) -> Result<(), JobError> {
    let own = job.middleware();
    if worker.is_empty() && own.is_empty() {
        return job.handle(ctx).await;
    }
    let chain: Vec<&dyn Middleware> = worker
        .iter()
        .map(|m| &**m)
        .chain(own.iter().map(|m| &**m))
        .collect();
    Next::new(&chain, job, ctx).run().await
}
