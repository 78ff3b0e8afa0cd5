//! Pausing a queue: workers stop reserving from it (within a second), producers keep enqueuing.
//! The pause is a [slot](crate::driver::slots) named `paused:{queue}` on the connection, so it
//! holds for every worker on every host until resumed.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use routemq::queue::pause;
//!
//! let driver = routemq::queue().connection("redis").await?;
//! pause::pause(driver.as_ref(), "emails").await?;
//! assert!(pause::is_paused(driver.as_ref(), "emails").await?);
//! pause::resume(driver.as_ref(), "emails").await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use crate::driver::{DriverError, QueueDriver};
use crate::limits::MAX_DURATION;

/// The slot that marks `queue` paused.
pub(crate) fn slot(queue: &str) -> String {
    format!("paused:{queue}")
}

/// Pauses `queue` on `driver`'s connection (idempotent).
pub async fn pause(driver: &dyn QueueDriver, queue: &str) -> Result<(), DriverError> {
    driver
        .acquire_slot(&slot(queue), "paused", 1, MAX_DURATION)
        .await?;
    Ok(())
}

/// Resumes `queue` (idempotent).
pub async fn resume(driver: &dyn QueueDriver, queue: &str) -> Result<(), DriverError> {
    driver.release_slot(&slot(queue), None).await
}

/// Whether `queue` is paused.
pub async fn is_paused(driver: &dyn QueueDriver, queue: &str) -> Result<bool, DriverError> {
    let free = driver
        .acquire_slot(&slot(queue), "probe", 1, Duration::ZERO)
        .await?;
    Ok(!free.taken)
}
