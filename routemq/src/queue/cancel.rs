//! Cancelling a job by id: a queued or delayed job is deleted; a running one is signalled, and
//! whichever worker runs it fires the job's cancellation token within a second and ends the job as
//! cancelled (acknowledged: not failed, not retried, no `failed()` hook, its chain stopped).
//!
//! The signal is a [slot](crate::driver::slots) named `cancel:{id}` on the connection, kept for
//! [`SIGNAL_KEPT`]: a job whose worker died before it saw the signal is stopped in the same way
//! when the reaper hands it to another worker.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use routemq::queue::cancel::{Cancellation, cancel};
//!
//! let driver = routemq::queue().connection("redis").await?;
//! match cancel(driver.as_ref(), "emails:42").await? {
//!     Cancellation::Removed { queue } => println!("removed from {queue}"),
//!     Cancellation::Signalled { queue } => println!("running on {queue}: stopping it"),
//!     Cancellation::NotFound => println!("no such job (finished already?)"),
//!     _ => {}
//! }
//! # Ok(()) }
//! ```

use std::time::Duration;

use serde::Serialize;

use crate::driver::{DriverError, QueueDriver, Removal};

/// How long a running job's cancellation signal is kept (a job whose lease outlives it would run
/// on): a week, swept by the workers' reaper afterwards.
pub const SIGNAL_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// What [`cancel`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Cancellation {
    /// The job was queued or delayed and is deleted: it will not run.
    Removed {
        /// The queue it was on.
        queue: String,
    },
    /// The job is leased by a worker: its worker fires the job's token within a second and ends
    /// it as cancelled.
    Signalled {
        /// The queue it runs from.
        queue: String,
    },
    /// No job with that id is stored: it finished or failed already (see `queue-failed`), or
    /// never existed.
    NotFound,
}

/// The slot that signals job `id`'s cancellation. A lease id with a `#` suffix (Redis's second
/// lease of a duplicated RouteMQ id) signals under the job's own id.
pub(crate) fn slot(id: &str) -> String {
    let id = id.split_once('#').map_or(id, |(id, _)| id);
    format!("cancel:{id}")
}

/// Cancels job `id` on `driver`'s connection. A removed unique job gives its key back, so it can
/// be dispatched again at once.
pub async fn cancel(driver: &dyn QueueDriver, id: &str) -> Result<Cancellation, DriverError> {
    let queue = match driver.remove(id).await? {
        Removal::Removed { queue, payload } => return Ok(removed(driver, queue, &payload).await),
        Removal::NotFound => return Ok(Cancellation::NotFound),
        Removal::Leased { queue } => queue,
    };
    driver
        .acquire_slot(&slot(id), "cancel", 1, SIGNAL_KEPT)
        .await?;
    // Look again now that the signal is up: a job that went back to its queue meanwhile is
    // removed, and the signal of one that ended meanwhile is taken down, so that it cannot stop a
    // later job given the same id.
    Ok(match driver.remove(id).await? {
        Removal::Leased { queue } => Cancellation::Signalled { queue },
        Removal::Removed { queue, payload } => {
            clear(driver, id).await;
            removed(driver, queue, &payload).await
        }
        Removal::NotFound => {
            clear(driver, id).await;
            Cancellation::Signalled { queue }
        }
    })
}

/// A removed job's answer, once its unique key (if it took one) is given back and its batch (if
/// it is in one) has counted it as cancelled.
async fn removed(driver: &dyn QueueDriver, queue: String, payload: &str) -> Cancellation {
    let Ok(envelope) = crate::envelope::Envelope::decode(payload) else {
        return Cancellation::Removed { queue };
    };
    if let Err(error) =
        crate::batch::record(driver, &envelope, crate::batch::state::Outcome::Cancelled).await
    {
        tracing::error!(%error, "could not count a cancelled job in its batch; the batch will not finish");
    }
    if let Some(key) = envelope.unique_key()
        && let Some(holder) =
            crate::observability::consumer_ids(envelope.observability()).link_span_id
        && let Err(error) = driver.release_slot(key, Some(&holder)).await
    {
        tracing::warn!(%error, "could not give back a cancelled unique job's key; it expires by itself");
    }
    Cancellation::Removed { queue }
}

/// Forgets job `id`'s cancellation signal once its worker has acted on it.
pub(crate) async fn clear(driver: &dyn QueueDriver, id: &str) {
    if let Err(error) = driver.release_slot(&slot(id), None).await {
        tracing::debug!(job_id = id, %error, "could not clear a cancellation signal; it expires by itself");
    }
}
