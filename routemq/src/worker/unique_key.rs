//! The worker's side of unique jobs: giving a job's key back when it starts or finishes (see
//! [`unique`](crate::queue::Dispatched)).

use crate::envelope::Envelope;
use crate::job::UniqueUntil;
use crate::observability;
use crate::registry::JobRegistration;

/// A unique job's key (its slot) and the dispatch that holds it (its producer span id).
pub(super) struct UniqueKey {
    slot: String,
    holder: String,
    until: UniqueUntil,
}

impl UniqueKey {
    /// The key the job's dispatch took (written into its envelope), held by the dispatch's
    /// producer span.
    pub(super) fn of(envelope: &Envelope, registration: &JobRegistration) -> Option<Self> {
        let slot = envelope.unique_key()?.to_owned();
        let holder = observability::consumer_ids(envelope.observability()).link_span_id?;
        Some(Self {
            slot,
            holder,
            until: registration.options().unique_until,
        })
    }

    /// Gives the key back if `now` is when this job's key goes (a failure is logged: the key
    /// expires by itself after `unique_for`).
    pub(super) async fn give_back(
        &self,
        driver: &dyn crate::driver::QueueDriver,
        now: UniqueUntil,
    ) {
        if self.until != now {
            return;
        }
        if let Err(error) = driver.release_slot(&self.slot, Some(&self.holder)).await {
            tracing::warn!(slot = %self.slot, %error, "could not give back a unique job's key; it expires by itself");
        }
    }
}
