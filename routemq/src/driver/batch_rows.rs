//! Batch records as drivers store them (see [`batch`](crate::batch)): a versioned document per
//! batch and, per job of the batch, the outcome recorded for it.
//!
//! Drivers keep these opaque: routemq decides what the document holds and writes it back with a
//! compare-and-set on its version ([`QueueDriver::batch_write`](super::QueueDriver::batch_write)),
//! so every driver gets the same exactly-once transitions from three small operations.
//!
//! | driver | batches | outcomes |
//! |---|---|---|
//! | SQL | table `queue_batches` (`id`, `version`, `created_at`, `finished_at`, `doc`) | table `queue_batch_jobs` (`batch_id`, `job_id`, `outcome`) |
//! | Redis | hash `{prefix}batches::id:{id}`, indexed by creation and by finish in two sorted sets | hash `{prefix}batches::jobs:{id}` |
//! | memory | a map | a map |

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One stored batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRow {
    /// The batch id.
    pub id: String,
    /// Bumped by every write; a write names the version it read.
    pub version: i64,
    /// When the batch was dispatched, in milliseconds since the epoch.
    pub created_at: i64,
    /// When its last job was recorded, in milliseconds since the epoch.
    pub finished_at: Option<i64>,
    /// routemq's JSON document for the batch.
    pub doc: String,
}

/// A compare-and-set of a batch: applied only if the stored version is still `version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchWrite<'a> {
    /// The batch id.
    pub id: &'a str,
    /// The version the writer read (the row gets `version + 1`).
    pub version: i64,
    /// The new document.
    pub doc: &'a str,
    /// The new finish time (milliseconds since the epoch), if finished.
    pub finished_at: Option<i64>,
    /// A job's outcome to store in the same atomic step: `(job id, outcome)`.
    pub mark: Option<(&'a str, &'a str)>,
}

/// Milliseconds since the epoch (0 before it).
pub fn epoch_millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Milliseconds since the epoch, `age` ago (0 when that is before the epoch).
pub(crate) fn millis_ago(age: Duration) -> i64 {
    epoch_millis(SystemTime::now().checked_sub(age).unwrap_or(UNIX_EPOCH))
}

/// The time `millis` (milliseconds since the epoch) stands for.
pub fn from_epoch_millis(millis: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

/// Which batches a prune deletes: finished before `finished_before`, and (when set) unfinished
/// ones created before `unfinished_before`. Both in milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPrune {
    /// Finished batches older than this go.
    pub finished_before: i64,
    /// Unfinished batches created before this go too (`None`: they stay).
    pub unfinished_before: Option<i64>,
}

/// Batches kept in process memory (the memory driver's).
#[derive(Debug, Default)]
pub(crate) struct LocalBatches {
    batches:
        std::collections::HashMap<String, (BatchRow, std::collections::HashMap<String, String>)>,
}

impl LocalBatches {
    pub(crate) fn create(&mut self, batch: &BatchRow) {
        self.batches
            .insert(batch.id.clone(), (batch.clone(), Default::default()));
    }

    pub(crate) fn read(&self, id: &str, job: Option<&str>) -> Option<(BatchRow, Option<String>)> {
        let (row, outcomes) = self.batches.get(id)?;
        let outcome = job.and_then(|job| outcomes.get(job).cloned());
        Some((row.clone(), outcome))
    }

    pub(crate) fn write(&mut self, write: &BatchWrite<'_>) -> bool {
        let Some((row, outcomes)) = self.batches.get_mut(write.id) else {
            return false;
        };
        if row.version != write.version {
            return false;
        }
        row.version += 1;
        write.doc.clone_into(&mut row.doc);
        row.finished_at = write.finished_at;
        if let Some((job, outcome)) = write.mark {
            outcomes.insert(job.to_owned(), outcome.to_owned());
        }
        true
    }

    pub(crate) fn list(&self, limit: usize) -> Vec<BatchRow> {
        let mut rows: Vec<BatchRow> = self.batches.values().map(|(row, _)| row.clone()).collect();
        rows.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        rows.truncate(limit);
        rows
    }

    pub(crate) fn prune(&mut self, prune: BatchPrune) -> u64 {
        let before = self.batches.len();
        self.batches.retain(|_, (row, _)| !prune.selects(row));
        (before - self.batches.len()) as u64
    }
}

impl BatchPrune {
    /// Whether this prune deletes `row`.
    pub(crate) fn selects(&self, row: &BatchRow) -> bool {
        match row.finished_at {
            Some(finished) => finished < self.finished_before,
            None => self
                .unfinished_before
                .is_some_and(|before| row.created_at < before),
        }
    }
}
