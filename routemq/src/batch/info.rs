//! What code and the CLI see of a batch.

use std::time::SystemTime;

use serde::{Serialize, Serializer};

use super::state::{CallbackKind, CallbackState};
use super::store::Stored;
use crate::driver::from_epoch_millis;
use crate::envelope::Envelope;

/// A batch's progress and settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BatchInfo {
    /// The batch id.
    pub id: String,
    /// The name given at dispatch.
    pub name: Option<String>,
    /// The connection the batch and its jobs are stored on.
    pub connection: String,
    /// Jobs in the batch.
    pub total: u64,
    /// Jobs without an outcome yet (queued, delayed, running or retrying).
    pub pending: u64,
    /// Jobs that succeeded.
    pub processed: u64,
    /// Jobs that failed for good.
    pub failed: u64,
    /// Jobs that never ran: cancelled by id, or skipped because the batch was cancelled.
    pub cancelled: u64,
    /// Whether a failure leaves the other jobs running (otherwise it cancels the batch).
    pub allow_failures: bool,
    /// When the batch was dispatched.
    #[serde(serialize_with = "iso")]
    pub created_at: SystemTime,
    /// When its last job got its outcome.
    #[serde(serialize_with = "iso_or_null")]
    pub finished_at: Option<SystemTime>,
    /// When it was cancelled (by a failure, or by `queue-batch-cancel`).
    #[serde(serialize_with = "iso_or_null")]
    pub cancelled_at: Option<SystemTime>,
    /// Its callbacks.
    pub callbacks: Vec<CallbackInfo>,
}

/// One callback of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CallbackInfo {
    /// When it runs.
    pub kind: CallbackKind,
    /// Its job type's wire tag.
    pub job: String,
    /// The queue it goes to.
    pub queue: String,
    /// `waiting` (not due), `due` (being stored) or `stored`.
    pub state: &'static str,
}

fn iso<S: Serializer>(at: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&crate::time::iso_utc(*at))
}

fn iso_or_null<S: Serializer>(at: &Option<SystemTime>, serializer: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => iso(at, serializer),
        None => serializer.serialize_none(),
    }
}

impl BatchInfo {
    pub(crate) fn of(stored: &Stored) -> Self {
        let doc = &stored.doc;
        let callbacks = CallbackKind::ALL
            .into_iter()
            .filter_map(|kind| {
                let callback = doc.callback(kind)?;
                let job = Envelope::decode(&callback.link.payload)
                    .map_or_else(|_| "?".to_owned(), |e| e.class().to_owned());
                let state = match callback.state {
                    CallbackState::Waiting => "waiting",
                    CallbackState::Owed { .. } => "due",
                    CallbackState::Stored => "stored",
                };
                Some(CallbackInfo {
                    kind,
                    job,
                    queue: callback.link.queue.clone(),
                    state,
                })
            })
            .collect();
        Self {
            id: stored.row.id.clone(),
            name: doc.name.clone(),
            connection: doc.connection.clone(),
            total: doc.total,
            pending: doc.total.saturating_sub(doc.done()),
            processed: doc.succeeded,
            failed: doc.failed,
            cancelled: doc.cancelled,
            allow_failures: doc.allow_failures,
            created_at: from_epoch_millis(stored.row.created_at),
            finished_at: stored.row.finished_at.map(from_epoch_millis),
            cancelled_at: doc.cancelled_at.map(from_epoch_millis),
            callbacks,
        }
    }

    /// Share of the jobs with an outcome, 0 to 100 (100 for an empty batch).
    pub fn progress(&self) -> u8 {
        if self.total == 0 {
            return 100;
        }
        let done = self.total - self.pending;
        u8::try_from(done * 100 / self.total).unwrap_or(100)
    }

    /// Whether every job has an outcome.
    pub fn is_finished(&self) -> bool {
        self.finished_at.is_some()
    }

    /// Whether the batch was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled_at.is_some()
    }
}
