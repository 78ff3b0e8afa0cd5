//! A batch's document and the rules that move it on: every job's outcome counted once, and each
//! callback handed to exactly one recorder (see [`BatchDoc::record`]). Pure: the store applies
//! these under a compare-and-set.

use serde::{Deserialize, Serialize};

use crate::envelope::ChainLink;

/// What became of one job of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It ran and succeeded.
    Succeeded,
    /// It failed for good (it is in the failed store).
    Failed,
    /// It never ran: cancelled by id, or skipped because its batch was cancelled.
    Cancelled,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// A batch's callbacks, in the order they are stored when several come due together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackKind {
    /// The first failure.
    Catch,
    /// Every job succeeded.
    Then,
    /// Every job has an outcome.
    Finally,
}

impl CallbackKind {
    pub(crate) const ALL: [Self; 3] = [Self::Catch, Self::Then, Self::Finally];
}

/// Where a callback stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum CallbackState {
    /// Not due.
    #[default]
    Waiting,
    /// Due, and handed to the recorder of job `by`, which stores it and then marks it stored.
    Owed { by: String },
    /// Stored on its queue.
    Stored,
}

/// A callback job and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Callback {
    pub(crate) link: ChainLink,
    #[serde(flatten)]
    pub(crate) state: CallbackState,
}

/// The JSON document stored for a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BatchDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    /// The connection the batch and its jobs are stored on.
    pub(crate) connection: String,
    pub(crate) total: u64,
    #[serde(default)]
    pub(crate) succeeded: u64,
    #[serde(default)]
    pub(crate) failed: u64,
    #[serde(default)]
    pub(crate) cancelled: u64,
    #[serde(default)]
    pub(crate) allow_failures: bool,
    /// When the batch was cancelled (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cancelled_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) then: Option<Callback>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) catch: Option<Callback>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) finally: Option<Callback>,
}

/// What recording an outcome did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recorded {
    /// The document changed (and must be written back).
    pub(crate) changed: bool,
    /// The callbacks the recorder must store: due now, or due earlier by this same job and not
    /// marked stored yet (its first recorder died before it could).
    pub(crate) owed: Vec<CallbackKind>,
}

/// Who owes the callbacks of an empty batch: its dispatcher.
pub(crate) const DISPATCHER: &str = "";

impl BatchDoc {
    pub(crate) fn callback(&self, kind: CallbackKind) -> Option<&Callback> {
        match kind {
            CallbackKind::Catch => self.catch.as_ref(),
            CallbackKind::Then => self.then.as_ref(),
            CallbackKind::Finally => self.finally.as_ref(),
        }
    }

    pub(crate) fn callback_mut(&mut self, kind: CallbackKind) -> Option<&mut Callback> {
        match kind {
            CallbackKind::Catch => self.catch.as_mut(),
            CallbackKind::Then => self.then.as_mut(),
            CallbackKind::Finally => self.finally.as_mut(),
        }
    }

    /// Jobs with an outcome.
    pub(crate) fn done(&self) -> u64 {
        self.succeeded + self.failed + self.cancelled
    }

    /// Hands callback `kind` to `by` if it is waiting.
    fn owe(&mut self, kind: CallbackKind, by: &str) {
        if let Some(callback) = self.callback_mut(kind)
            && callback.state == CallbackState::Waiting
        {
            callback.state = CallbackState::Owed { by: by.to_owned() };
        }
    }

    /// The callbacks `by` owes, in storing order.
    pub(crate) fn owed_by(&self, by: &str) -> Vec<CallbackKind> {
        CallbackKind::ALL
            .into_iter()
            .filter(|kind| {
                self.callback(*kind).is_some_and(
                    |c| matches!(&c.state, CallbackState::Owed { by: owner } if owner == by),
                )
            })
            .collect()
    }

    /// The jobs of callbacks `kinds` (those the batch has), to store.
    pub(crate) fn links(&self, kinds: &[CallbackKind]) -> Vec<(CallbackKind, ChainLink)> {
        kinds
            .iter()
            .filter_map(|kind| Some((*kind, self.callback(*kind)?.link.clone())))
            .collect()
    }

    /// Moves the batch on for `job`'s `outcome` (`prior`: the outcome already stored for it):
    /// each job counts once; a failed job that succeeds later (retried from the failed store)
    /// moves from failed to succeeded; nothing else changes an outcome. The first failure makes
    /// `catch` due and, unless failures are allowed, cancels the batch; the last outcome makes
    /// `finally` due and sets `finished_at`; all jobs succeeded makes `then` due.
    pub(crate) fn record(
        &mut self,
        finished_at: &mut Option<i64>,
        job: &str,
        prior: Option<Outcome>,
        outcome: Outcome,
        now: i64,
    ) -> Recorded {
        let changed = match (prior, outcome) {
            (None, Outcome::Succeeded) => {
                self.succeeded += 1;
                true
            }
            (None, Outcome::Failed) => {
                self.failed += 1;
                true
            }
            (None, Outcome::Cancelled) => {
                self.cancelled += 1;
                true
            }
            (Some(Outcome::Failed), Outcome::Succeeded) => {
                self.failed = self.failed.saturating_sub(1);
                self.succeeded += 1;
                true
            }
            _ => false,
        };
        if changed {
            if outcome == Outcome::Failed {
                self.owe(CallbackKind::Catch, job);
                if !self.allow_failures && self.cancelled_at.is_none() {
                    self.cancelled_at = Some(now);
                }
            }
            if self.succeeded >= self.total {
                self.owe(CallbackKind::Then, job);
            }
            if self.done() >= self.total && finished_at.is_none() {
                *finished_at = Some(now);
                self.owe(CallbackKind::Finally, job);
            }
        }
        Recorded {
            changed,
            owed: self.owed_by(job),
        }
    }

    /// Marks callback `kind` stored if `by` owes it. Returns whether that changed anything.
    pub(crate) fn stored(&mut self, kind: CallbackKind, by: &str) -> bool {
        match self.callback_mut(kind) {
            Some(callback) if matches!(&callback.state, CallbackState::Owed { by: owner } if owner == by) =>
            {
                callback.state = CallbackState::Stored;
                true
            }
            _ => false,
        }
    }

    /// Cancels the batch (its jobs not started yet are skipped). Returns whether it was not
    /// cancelled already.
    pub(crate) fn cancel(&mut self, now: i64) -> bool {
        if self.cancelled_at.is_some() {
            return false;
        }
        self.cancelled_at = Some(now);
        true
    }

    /// An empty batch is finished at once: its `then` and `finally` are due, owed by the
    /// dispatcher.
    pub(crate) fn finish_empty(&mut self) {
        self.owe(CallbackKind::Then, DISPATCHER);
        self.owe(CallbackKind::Finally, DISPATCHER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(n: u8) -> Callback {
        Callback {
            link: ChainLink {
                queue: "q".to_owned(),
                connection: "memory".to_owned(),
                payload: format!("{{\"n\": {n}}}"),
            },
            state: CallbackState::Waiting,
        }
    }

    fn doc(total: u64, allow_failures: bool) -> BatchDoc {
        BatchDoc {
            name: None,
            connection: "memory".to_owned(),
            total,
            succeeded: 0,
            failed: 0,
            cancelled: 0,
            allow_failures,
            cancelled_at: None,
            then: Some(link(1)),
            catch: Some(link(2)),
            finally: Some(link(3)),
        }
    }

    #[test]
    fn the_last_success_owes_then_and_finally_once() {
        let mut doc = doc(2, false);
        let mut finished = None;
        let first = doc.record(&mut finished, "a", None, Outcome::Succeeded, 1);
        assert_eq!(
            first,
            Recorded {
                changed: true,
                owed: vec![]
            }
        );
        let last = doc.record(&mut finished, "b", None, Outcome::Succeeded, 2);
        assert_eq!(last.owed, [CallbackKind::Then, CallbackKind::Finally]);
        assert_eq!(finished, Some(2));
        // The same job recorded again (its worker died before acknowledging it) changes nothing
        // and owes the callbacks again until they are marked stored.
        let again = doc.record(
            &mut finished,
            "b",
            Some(Outcome::Succeeded),
            Outcome::Succeeded,
            3,
        );
        assert_eq!(
            again,
            Recorded {
                changed: false,
                owed: vec![CallbackKind::Then, CallbackKind::Finally]
            }
        );
        assert!(doc.stored(CallbackKind::Then, "b"));
        assert!(doc.stored(CallbackKind::Finally, "b"));
        assert!(!doc.stored(CallbackKind::Then, "b"), "stored once");
        let after = doc.record(
            &mut finished,
            "b",
            Some(Outcome::Succeeded),
            Outcome::Succeeded,
            4,
        );
        assert!(after.owed.is_empty());
        assert_eq!((doc.succeeded, finished), (2, Some(2)));
    }

    #[test]
    fn a_failure_owes_catch_cancels_and_finally_follows() {
        let mut doc = doc(3, false);
        let mut finished = None;
        let failed = doc.record(&mut finished, "a", None, Outcome::Failed, 5);
        assert_eq!(failed.owed, [CallbackKind::Catch]);
        assert_eq!(doc.cancelled_at, Some(5));
        assert!(
            doc.record(&mut finished, "b", None, Outcome::Cancelled, 6)
                .owed
                .is_empty()
        );
        let last = doc.record(&mut finished, "c", None, Outcome::Succeeded, 7);
        assert_eq!(
            last.owed,
            [CallbackKind::Finally],
            "no then: not every job succeeded"
        );
        assert_eq!((doc.succeeded, doc.failed, doc.cancelled), (1, 1, 1));
        // A second failure does not owe catch again.
        let mut doc2 = self::doc(3, true);
        let mut f2 = None;
        doc2.record(&mut f2, "a", None, Outcome::Failed, 1);
        assert!(doc2.stored(CallbackKind::Catch, "a"));
        assert!(
            doc2.record(&mut f2, "b", None, Outcome::Failed, 2)
                .owed
                .is_empty()
        );
        assert_eq!(doc2.cancelled_at, None, "failures allowed: not cancelled");
    }

    #[test]
    fn a_failed_job_that_succeeds_later_moves_to_succeeded() {
        let mut doc = doc(2, true);
        let mut finished = None;
        doc.record(&mut finished, "a", None, Outcome::Succeeded, 1);
        let failed = doc.record(&mut finished, "b", None, Outcome::Failed, 2);
        assert_eq!(failed.owed, [CallbackKind::Catch, CallbackKind::Finally]);
        assert_eq!(finished, Some(2));
        assert!(doc.stored(CallbackKind::Catch, "b") && doc.stored(CallbackKind::Finally, "b"));
        let healed = doc.record(
            &mut finished,
            "b",
            Some(Outcome::Failed),
            Outcome::Succeeded,
            3,
        );
        assert!(healed.changed);
        assert_eq!(healed.owed, [CallbackKind::Then]);
        assert_eq!((doc.succeeded, doc.failed, finished), (2, 0, Some(2)));
        // A success is final.
        let late = doc.record(
            &mut finished,
            "a",
            Some(Outcome::Succeeded),
            Outcome::Failed,
            4,
        );
        assert!(!late.changed);
    }

    #[test]
    fn an_empty_batch_is_owed_by_its_dispatcher() {
        let mut doc = doc(0, false);
        doc.finish_empty();
        assert_eq!(
            doc.owed_by(DISPATCHER),
            [CallbackKind::Then, CallbackKind::Finally]
        );
        assert!(doc.cancel(1));
        assert!(!doc.cancel(2));
        let json = serde_json::to_string(&doc).expect("json");
        let back: BatchDoc = serde_json::from_str(&json).expect("decodes");
        assert_eq!(back, doc);
        assert_eq!(
            Outcome::parse(Outcome::Failed.as_str()),
            Some(Outcome::Failed)
        );
    }
}
