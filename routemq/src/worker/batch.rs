//! The worker's side of [batches](crate::batch): skipping the jobs of a cancelled batch, and
//! recording each job's outcome in its batch before the job is settled.

use super::Shared;
use crate::batch::state::Outcome;
use crate::envelope::Envelope;
use crate::queue::QueueError;

/// How many times recording an outcome is tried (with backoff, about ten seconds in all) before
/// the worker gives up on it for this run.
const TRIES: u32 = 6;

/// Whether the job is to be skipped: its batch is cancelled, and the job is not one that failed
/// and is being retried from the failed store (that one runs, so the batch can still succeed).
/// A store that cannot be asked lets the job run.
pub(super) async fn skipped(shared: &Shared, envelope: &Envelope) -> bool {
    let Some(batch) = envelope.batch() else {
        return false;
    };
    let job = batch.job.to_string();
    match crate::batch::store::skips(shared.driver.as_ref(), &batch.id, &job).await {
        Ok(skips) => skips,
        Err(error) => {
            tracing::warn!(batch = %batch.id, %error, "could not read the job's batch; running the job");
            false
        }
    }
}

/// Records the job's `outcome` in its batch (if it has one), trying a few times with backoff.
pub(super) async fn record(
    shared: &Shared,
    envelope: &Envelope,
    outcome: Outcome,
) -> Result<(), QueueError> {
    super::retrying("record the job in its batch", TRIES - 1, || {
        crate::batch::record(shared.driver.as_ref(), envelope, outcome)
    })
    .await
}
