//! Rewriting stored payloads in place ([`QueueDriver::rewrite_payloads`](super::QueueDriver::rewrite_payloads)):
//! what `queue-reencrypt` uses to move sealed job data under the current key.
//!
//! A driver hands every stored payload (queued, delayed, leased and failed) to an [`Edit`]
//! function and stores its replacement with a compare-and-set: only a job that is still queued
//! or delayed with that exact payload, or a failed record that still holds it, is rewritten. A
//! job leased meanwhile (by a worker) keeps its payload and is counted in
//! [`Rewritten::leased`]; running the rewrite again once it is settled reaches it.

use serde::Serialize;

/// What to do with one stored payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Leave it as it is.
    Keep,
    /// Store this payload instead.
    Replace(String),
    /// It should change but cannot be read (counted in [`Rewritten::unreadable`], left as it is).
    Unreadable,
}

/// The function a rewrite applies to each payload. It may be called more than once for the same
/// payload (a driver that lost a race reads again).
pub type Editor<'a> = &'a (dyn Fn(&str) -> Edit + Send + Sync);

/// What a rewrite did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Rewritten {
    /// Queued or delayed jobs rewritten.
    pub jobs: u64,
    /// Failed-job records rewritten.
    pub failed: u64,
    /// Payloads that should change but are leased by a worker, or moved (leased, released,
    /// retried) while the rewrite ran: left as they are, for another run.
    pub leased: u64,
    /// Payloads that should change but could not be read ([`Edit::Unreadable`]).
    pub unreadable: u64,
}

/// Where a stored payload was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// A queued or delayed job.
    Queued,
    /// A job leased by a worker: read and counted, never written.
    Leased,
    /// A failed-job record.
    Failed,
}

impl Rewritten {
    /// Counts one payload found in `place` and whether its replacement was `written`. One that
    /// was not written changed hands between the read and the write (a job leased, finished or
    /// retried, a failed record retried or deleted): it counts as leased, so that the caller
    /// looks again.
    pub(crate) fn count(&mut self, edit: &Edit, place: Place, written: bool) {
        match (edit, place) {
            (Edit::Keep, _) => {}
            (Edit::Unreadable, _) => self.unreadable += 1,
            (Edit::Replace(_), Place::Leased) => self.leased += 1,
            (Edit::Replace(_), _) if !written => self.leased += 1,
            (Edit::Replace(_), Place::Queued) => self.jobs += 1,
            (Edit::Replace(_), Place::Failed) => self.failed += 1,
        }
    }
}
