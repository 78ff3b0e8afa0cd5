//! [`ThrottlesExceptions`]: after N failures in a period, hold a key's jobs for a cool-down.

use std::time::Duration;

use async_trait::async_trait;

use super::slots::{acquire, fresh_holder, release, slot_name, wait};
use super::{Middleware, Next};
use crate::job::{JobContext, JobError};

/// Stops hammering a service that keeps failing: once `max_failures` jobs of a key have failed
/// within `period`, every job of that key is postponed (its attempt refunded) until a cool-down
/// (default: `period`) has passed. A success clears the count. Counted across every process and
/// host on the job's connection. Failures are errors `handle` returns (retryable or permanent);
/// releases and postponements do not count.
///
/// ```
/// use std::time::Duration;
/// use routemq::prelude::*;
/// use routemq::middleware::{Middleware, ThrottlesExceptions};
///
/// #[job(max_tries = 10, retry_after = 5)]
/// struct SyncInventory { warehouse: String }
///
/// impl Job for SyncInventory {
///     async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> { Ok(()) }
///
///     fn middleware(&self) -> Vec<Box<dyn Middleware>> {
///         // 5 failures within 2 minutes: leave the warehouse API alone for 10 minutes.
///         vec![Box::new(
///             ThrottlesExceptions::new("warehouse-api", 5, Duration::from_secs(120))
///                 .by(&self.warehouse)
///                 .cool_down(Duration::from_secs(600)),
///         )]
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ThrottlesExceptions {
    name: String,
    max_failures: u32,
    period: Duration,
    cool_down: Option<Duration>,
}

impl ThrottlesExceptions {
    /// Hold jobs under `name` once `max_failures` have failed within `period`.
    pub fn new(name: impl Into<String>, max_failures: u32, period: Duration) -> Self {
        Self {
            name: slot_name("throttle", &name.into(), None),
            max_failures,
            period,
            cool_down: None,
        }
    }

    /// A separate count and cool-down per `key`.
    #[must_use]
    pub fn by(mut self, key: impl std::fmt::Display) -> Self {
        self.name = format!("{}:{key}", self.name);
        self
    }

    /// How long jobs are held once the limit is reached (default: the period).
    #[must_use]
    pub fn cool_down(mut self, cool_down: Duration) -> Self {
        self.cool_down = Some(cool_down);
        self
    }

    fn failures(&self) -> String {
        format!("{}:failures", self.name)
    }

    fn hold(&self) -> String {
        format!("{}:hold", self.name)
    }

    /// Counts a failure; the one that reaches the limit starts the cool-down.
    async fn count_failure(&self, ctx: &JobContext) -> Result<(), JobError> {
        let below = self.max_failures.saturating_sub(1);
        let hit = acquire(
            ctx,
            &self.failures(),
            &fresh_holder(ctx),
            below,
            self.period,
        )
        .await?;
        if !hit.taken {
            let cool_down = self.cool_down.unwrap_or(self.period);
            tracing::warn!(job_id = ctx.job_id(), slot = %self.name, ?cool_down, "too many failures: holding this key's jobs");
            acquire(ctx, &self.hold(), "hold", 1, cool_down).await?;
            release(ctx, &self.failures(), None).await;
        }
        Ok(())
    }
}

#[async_trait]
impl Middleware for ThrottlesExceptions {
    async fn handle(&self, ctx: &JobContext, next: Next<'_>) -> Result<(), JobError> {
        let open = acquire(ctx, &self.hold(), "probe", 1, Duration::ZERO).await?;
        if !open.taken {
            return Err(wait(open.free_in, Duration::from_millis(100)));
        }
        let result = next.run().await;
        match &result {
            Ok(()) => release(ctx, &self.failures(), None).await,
            Err(JobError::Failed(_) | JobError::Permanent(_)) => {
                if let Err(error) = self.count_failure(ctx).await {
                    tracing::warn!(job_id = ctx.job_id(), %error, "could not count a failure");
                }
            }
            Err(_) => {}
        }
        result
    }
}
