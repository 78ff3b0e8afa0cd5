//! What the built-in middleware share: the connection's slots, reached through the job's context.

use std::sync::Arc;
use std::time::Duration;

use crate::driver::{DriverError, QueueDriver, Slot};
use crate::job::{JobContext, JobError};

/// The driver the job came from; a context without one (a hand-built test context) is an error
/// that says how to give it one.
pub(crate) fn driver(ctx: &JobContext) -> Result<&Arc<dyn QueueDriver>, JobError> {
    ctx.driver().ok_or_else(|| {
        JobError::msg(
            "this job's middleware keeps its limits in the queue's connection, and this context has \
             none (in a test: `perform(job).driver(Arc::new(MemoryDriver::new())).with_middleware()`)",
        )
    })
}

/// A holder name for this attempt of this job: unique across connections, jobs and attempts.
pub(crate) fn attempt_holder(ctx: &JobContext) -> String {
    format!(
        "{}:{}:{}:{}",
        ctx.connection(),
        ctx.queue(),
        ctx.job_id(),
        ctx.attempts()
    )
}

/// A holder nobody else has (one hit of a rate).
pub(crate) fn fresh_holder(ctx: &JobContext) -> String {
    format!("{}:{:016x}", attempt_holder(ctx), fastrand::u64(..))
}

/// How long a job waits when its limit could not be checked (the broker did not answer).
const UNCHECKED_RETRY: Duration = Duration::from_secs(2);

/// Takes a slot. When the broker does not answer, the job is postponed (the limit could not be
/// checked; that is not the job's failure); a driver without slots fails the attempt.
pub(crate) async fn acquire(
    ctx: &JobContext,
    name: &str,
    holder: &str,
    limit: u32,
    ttl: Duration,
) -> Result<Slot, JobError> {
    match driver(ctx)?.acquire_slot(name, holder, limit, ttl).await {
        Ok(slot) => Ok(slot),
        Err(error @ DriverError::Unsupported { .. }) => Err(JobError::Failed(Box::new(error))),
        Err(error) => {
            tracing::warn!(job_id = ctx.job_id(), slot = name, %error, "could not check a limit; postponing the job");
            Err(JobError::postpone(UNCHECKED_RETRY))
        }
    }
}

/// Gives a slot back; a failure is logged (the slot expires by itself).
pub(crate) async fn release(ctx: &JobContext, name: &str, holder: Option<&str>) {
    let Ok(driver) = driver(ctx) else { return };
    if let Err(error) = driver.release_slot(name, holder).await {
        tracing::warn!(job_id = ctx.job_id(), slot = name, %error, "could not release a slot; it expires by itself");
    }
}

/// A postponement a little after `free_in` (so that waiting jobs do not all come back at once).
pub(crate) fn wait(free_in: Option<Duration>, at_least: Duration) -> JobError {
    let base = free_in.unwrap_or(at_least).max(at_least);
    let spread = base.mul_f64(fastrand::f64() * 0.1) + Duration::from_millis(fastrand::u64(0..50));
    JobError::postpone(base + spread)
}

/// A slot name with a key (`{kind}:{name}` or `{kind}:{name}:{key}`).
pub(crate) fn slot_name(kind: &str, name: &str, key: Option<&str>) -> String {
    match key {
        Some(key) => format!("{kind}:{name}:{key}"),
        None => format!("{kind}:{name}"),
    }
}
