//! [`RateLimited`]: at most N jobs per period per key, across every worker.

use std::time::Duration;

use async_trait::async_trait;

use super::slots::{acquire, fresh_holder, slot_name, wait};
use super::{Middleware, Next};
use crate::job::{JobContext, JobError};

/// Lets at most `limit` jobs start per `period` for one key, counted across every process and
/// host on the job's connection (a sliding window: exact over any stretch of `period`). A job
/// over the limit is postponed until the window has room, without using up an attempt.
///
/// ```
/// use std::time::Duration;
/// use routemq::prelude::*;
/// use routemq::middleware::{Middleware, RateLimited};
///
/// #[job]
/// struct CallPartnerApi { account: u64 }
///
/// impl Job for CallPartnerApi {
///     async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> { Ok(()) }
///
///     fn middleware(&self) -> Vec<Box<dyn Middleware>> {
///         // 100 calls a minute per account.
///         vec![Box::new(RateLimited::new("partner-api", 100, Duration::from_secs(60)).by(self.account))]
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimited {
    slot: String,
    limit: u32,
    period: Duration,
}

impl RateLimited {
    /// `limit` jobs per `period` under `name` (shared by every job type that uses the name).
    pub fn new(name: impl Into<String>, limit: u32, period: Duration) -> Self {
        Self {
            slot: slot_name("rate", &name.into(), None),
            limit,
            period,
        }
    }

    /// A separate window per `key` (a customer, an API token): the key is often a field of the job.
    #[must_use]
    pub fn by(mut self, key: impl std::fmt::Display) -> Self {
        self.slot = format!("{}:{key}", self.slot);
        self
    }
}

#[async_trait]
impl Middleware for RateLimited {
    async fn handle(&self, ctx: &JobContext, next: Next<'_>) -> Result<(), JobError> {
        let hit = acquire(ctx, &self.slot, &fresh_holder(ctx), self.limit, self.period).await?;
        if !hit.taken {
            tracing::debug!(job_id = ctx.job_id(), slot = %self.slot, free_in = ?hit.free_in, "rate limited: postponed");
            return Err(wait(hit.free_in, Duration::from_millis(10)));
        }
        next.run().await
    }
}
