//! [`ConcurrencyLimited`]: at most N jobs per key at a time, across every worker; and
//! [`WithoutOverlapping`], its N = 1.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::slots::{acquire, attempt_holder, driver, slot_name};
use super::{Middleware, Next};
use crate::driver::QueueDriver;
use crate::job::{JobContext, JobError};

/// How much longer than the job's timeout a lock lives by default: a worker that dies mid-job
/// frees it after that.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// Runs at most `limit` jobs per key at a time, across every process and host on the job's
/// connection. A job that finds every slot taken is postponed (its attempt refunded) and comes
/// back after `release_after` (default 2 s), or is dropped with [`dont_release`](Self::dont_release).
///
/// A slot expires after the job's timeout plus 30 s unless [`expire_after`](Self::expire_after)
/// says otherwise, so a worker that dies holding one cannot block the key forever.
///
/// ```
/// use routemq::prelude::*;
/// use routemq::middleware::{ConcurrencyLimited, Middleware, WithoutOverlapping};
///
/// #[job]
/// struct RenderVideo { customer: u64 }
///
/// impl Job for RenderVideo {
///     async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> { Ok(()) }
///
///     fn middleware(&self) -> Vec<Box<dyn Middleware>> {
///         vec![
///             // At most 5 renders at once in the whole fleet...
///             Box::new(ConcurrencyLimited::new("render", 5)),
///             // ...and one at a time per customer.
///             Box::new(WithoutOverlapping::new("render-customer").by(self.customer)),
///         ]
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ConcurrencyLimited {
    slot: String,
    limit: u32,
    expire_after: Option<Duration>,
    release_after: Duration,
    drop_when_locked: bool,
}

/// One job per key at a time (Laravel's `WithoutOverlapping`): a [`ConcurrencyLimited`] of 1.
#[derive(Debug, Clone, Copy)]
pub struct WithoutOverlapping;

impl WithoutOverlapping {
    /// One job at a time under `name`; `.by(key)` for one per key.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(name: impl Into<String>) -> ConcurrencyLimited {
        ConcurrencyLimited::new(name, 1)
    }
}

impl ConcurrencyLimited {
    /// At most `limit` jobs at a time under `name`.
    pub fn new(name: impl Into<String>, limit: u32) -> Self {
        Self {
            slot: slot_name("limit", &name.into(), None),
            limit,
            expire_after: None,
            release_after: Duration::from_secs(2),
            drop_when_locked: false,
        }
    }

    /// The slot its holders are counted in.
    pub(crate) fn slot(&self) -> &str {
        &self.slot
    }

    /// Counted per `key` under the name.
    #[must_use]
    pub fn by(mut self, key: impl std::fmt::Display) -> Self {
        self.slot = format!("{}:{key}", self.slot);
        self
    }

    /// How long a slot lives if its holder never gives it back (default: the job's timeout
    /// plus 30 s).
    #[must_use]
    pub fn expire_after(mut self, expiry: Duration) -> Self {
        self.expire_after = Some(expiry);
        self
    }

    /// How long a job that found no free slot waits before it tries again (default 2 s).
    #[must_use]
    pub fn release_after(mut self, delay: Duration) -> Self {
        self.release_after = delay;
        self
    }

    /// Drop (acknowledge without running) a job that finds no free slot, instead of postponing it.
    #[must_use]
    pub fn dont_release(mut self) -> Self {
        self.drop_when_locked = true;
        self
    }
}

/// Gives the lock back however the job's run ends (returns, panics, or is aborted at its timeout).
struct Unlock {
    driver: Arc<dyn QueueDriver>,
    slot: String,
    holder: String,
}

impl Drop for Unlock {
    fn drop(&mut self) {
        let (driver, slot, holder) = (
            Arc::clone(&self.driver),
            std::mem::take(&mut self.slot),
            std::mem::take(&mut self.holder),
        );
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // No runtime: the lock expires by itself.
        };
        runtime.spawn(async move {
            if let Err(error) = driver.release_slot(&slot, Some(&holder)).await {
                tracing::warn!(slot, %error, "could not release a lock; it expires by itself");
            }
        });
    }
}

#[async_trait]
impl Middleware for ConcurrencyLimited {
    async fn handle(&self, ctx: &JobContext, next: Next<'_>) -> Result<(), JobError> {
        let holder = attempt_holder(ctx);
        let expiry = self
            .expire_after
            .unwrap_or_else(|| ctx.timeout().saturating_add(EXPIRY_MARGIN));
        let lock = acquire(ctx, &self.slot, &holder, self.limit, expiry).await?;
        if !lock.taken {
            if self.drop_when_locked {
                tracing::info!(job_id = ctx.job_id(), slot = %self.slot, "no free slot: job dropped");
                return Ok(());
            }
            return Err(JobError::postpone(self.release_after));
        }
        let _unlock = Unlock {
            driver: Arc::clone(driver(ctx)?),
            slot: self.slot.clone(),
            holder,
        };
        next.run().await
    }
}
