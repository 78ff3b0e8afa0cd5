//! Batches in a driver's store: every change is a read, a rule from [`state`](super::state), and a
//! compare-and-set on the batch's version, tried again when another process wrote in between. The
//! callbacks a change makes due are stored by the process that made the change, then marked stored.

use std::time::{Duration, SystemTime};

use super::state::{BatchDoc, CallbackKind, DISPATCHER, Outcome};
use crate::driver::{BatchRow, BatchWrite, DriverError, Edit, Editor, QueueDriver, epoch_millis};
use crate::envelope::ChainLink;
use crate::queue::QueueError;
use crate::worker::retrying;

/// How many times a change is tried against concurrent writers before it gives up (with the
/// pauses between tries, a minute at most).
const TRIES: u32 = 1_000;

/// A batch as read: its row and its decoded document.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) row: BatchRow,
    pub(crate) doc: BatchDoc,
}

fn decode(row: BatchRow) -> Result<Stored, DriverError> {
    let doc = serde_json::from_str(&row.doc).map_err(|error| {
        DriverError::backend(
            "read batch",
            format!("batch {} holds an unreadable document: {error}", row.id),
        )
    })?;
    Ok(Stored { row, doc })
}

fn encode(doc: &BatchDoc) -> String {
    // A document of strings, numbers and booleans always serializes.
    serde_json::to_string(doc).unwrap_or_default()
}

/// Stores a new batch.
pub(crate) async fn create(
    driver: &dyn QueueDriver,
    id: &str,
    doc: &BatchDoc,
    finished: bool,
) -> Result<(), DriverError> {
    let now = epoch_millis(SystemTime::now());
    driver
        .batch_create(&BatchRow {
            id: id.to_owned(),
            version: 0,
            created_at: now,
            finished_at: finished.then_some(now),
            doc: encode(doc),
        })
        .await
}

/// Reads batch `id`.
pub(crate) async fn find(
    driver: &dyn QueueDriver,
    id: &str,
) -> Result<Option<Stored>, DriverError> {
    driver
        .batch_read(id, None)
        .await?
        .map(|(row, _)| decode(row))
        .transpose()
}

/// Reads the newest `limit` batches; one whose document cannot be read is logged and left out.
pub(crate) async fn list(
    driver: &dyn QueueDriver,
    limit: usize,
) -> Result<Vec<Stored>, DriverError> {
    Ok(driver
        .batch_list(limit)
        .await?
        .into_iter()
        .filter_map(|row| {
            decode(row)
                .inspect_err(|error| tracing::warn!(%error, "skipping a batch"))
                .ok()
        })
        .collect())
}

/// Applies `change` to batch `id` (given the outcome stored for `job`, when asked) and writes it
/// back with `mark` for `job`, until no other writer comes in between. `change` answers whether
/// it changed the batch; an unchanged batch is not written. `None`: no such batch.
async fn update<T>(
    driver: &dyn QueueDriver,
    id: &str,
    job: Option<(&str, Outcome)>,
    mut change: impl FnMut(&mut BatchDoc, &mut Option<i64>, Option<Outcome>) -> (bool, T),
) -> Result<Option<T>, DriverError> {
    for attempt in 0..TRIES {
        let Some((row, prior)) = driver.batch_read(id, job.map(|(job, _)| job)).await? else {
            return Ok(None);
        };
        let version = row.version;
        let Stored { row, mut doc } = decode(row)?;
        let mut finished_at = row.finished_at;
        let (changed, answer) = change(
            &mut doc,
            &mut finished_at,
            prior.as_deref().and_then(Outcome::parse),
        );
        if !changed {
            return Ok(Some(answer));
        }
        let doc = encode(&doc);
        let write = BatchWrite {
            id,
            version,
            doc: &doc,
            finished_at,
            mark: job.map(|(job, outcome)| (job, outcome.as_str())),
        };
        if driver.batch_write(&write).await? {
            return Ok(Some(answer));
        }
        // Another process wrote first: read again, after a random pause that grows with the
        // tries (up to 100 ms), so that many writers of one batch spread out.
        let ceiling = 100u64.saturating_mul(1 << attempt.min(10)).min(100_000);
        let pause = Duration::from_micros(fastrand::u64(0..=ceiling));
        tokio::time::sleep(pause).await;
    }
    Err(DriverError::backend(
        "write batch",
        format!("batch {id} kept changing under {TRIES} tries"),
    ))
}

/// Whether a listed batch's document can be read.
pub(crate) fn is_readable(row: &BatchRow) -> bool {
    serde_json::from_str::<BatchDoc>(&row.doc).is_ok()
}

/// Rewrites the payloads of batch `id`'s callbacks with `edit` (see
/// [`QueueDriver::rewrite_payloads`]). Returns whether the batch changed, and how many payloads
/// could not be read.
pub(crate) async fn rewrite_callbacks(
    driver: &dyn QueueDriver,
    id: &str,
    edit: Editor<'_>,
) -> Result<(bool, u64), DriverError> {
    let rewritten = update(driver, id, None, |doc, _, _| {
        let (mut changed, mut unreadable) = (false, 0);
        for kind in CallbackKind::ALL {
            let Some(callback) = doc.callback_mut(kind) else {
                continue;
            };
            match edit(&callback.link.payload) {
                Edit::Keep => {}
                Edit::Unreadable => unreadable += 1,
                Edit::Replace(payload) => {
                    callback.link.payload = payload;
                    changed = true;
                }
            }
        }
        (changed, (changed, unreadable))
    })
    .await?;
    Ok(rewritten.unwrap_or((false, 0)))
}

/// Cancels batch `id`. `None`: no such batch; `Some(false)`: cancelled already.
pub(crate) async fn cancel(
    driver: &dyn QueueDriver,
    id: &str,
) -> Result<Option<bool>, DriverError> {
    let now = epoch_millis(SystemTime::now());
    update(driver, id, None, |doc, _, _| {
        let cancelled = doc.cancel(now);
        (cancelled, cancelled)
    })
    .await
}

/// Whether `job` of batch `id` is to be skipped: the batch is cancelled and the job has not
/// failed before (a failed job retried from the failed store runs). A batch that does not exist
/// skips nothing.
pub(crate) async fn skips(
    driver: &dyn QueueDriver,
    id: &str,
    job: &str,
) -> Result<bool, DriverError> {
    let Some((row, prior)) = driver.batch_read(id, Some(job)).await? else {
        return Ok(false);
    };
    let cancelled = decode(row)?.doc.cancelled_at.is_some();
    Ok(cancelled && prior.as_deref().and_then(Outcome::parse) != Some(Outcome::Failed))
}

/// Records `outcome` for `job` of batch `id` and stores the callbacks that are due (or were due
/// by this job and never marked stored), each on its connection; `driver` is the batch's own.
/// A batch that does not exist (pruned) is logged and skipped.
pub(crate) async fn record(
    driver: &dyn QueueDriver,
    id: &str,
    job: &str,
    outcome: Outcome,
) -> Result<(), QueueError> {
    let now = epoch_millis(SystemTime::now());
    let recorded = update(
        driver,
        id,
        Some((job, outcome)),
        |doc, finished_at, prior| {
            let recorded = doc.record(finished_at, job, prior, outcome, now);
            let owed = (doc.links(&recorded.owed), doc.connection.clone());
            (recorded.changed, owed)
        },
    )
    .await
    .map_err(|source| driver_error(driver, source))?;
    let Some((owed, connection)) = recorded else {
        tracing::warn!(
            batch = id,
            job_id = job,
            "the job's batch is gone (pruned?); its outcome is not recorded"
        );
        return Ok(());
    };
    store_callbacks(driver, id, &connection, job, owed).await
}

/// Stores the callbacks `by` owes, then marks each stored; `driver` is the batch's own, on
/// `connection`.
async fn store_callbacks(
    driver: &dyn QueueDriver,
    id: &str,
    connection: &str,
    by: &str,
    owed: Vec<(CallbackKind, ChainLink)>,
) -> Result<(), QueueError> {
    for (kind, link) in owed {
        let other;
        let target = if link.connection == connection {
            driver
        } else {
            other = crate::queue().connection(&link.connection).await?;
            other.as_ref()
        };
        let job = crate::queue::link_job(&link, None, crate::registry::Registry::global().ok())?;
        retrying("store a batch callback", 2, || {
            target.push(std::slice::from_ref(&job))
        })
        .await
        .map_err(|source| QueueError::Driver {
            connection: link.connection.clone(),
            source,
        })?;
        tracing::info!(batch = id, callback = ?kind, queue = %link.queue, "batch callback stored");
        // Stored: if noting it fails, only a run of this same job again would store it again.
        let noted = retrying("note a batch callback stored", 2, || {
            update(driver, id, None, |doc, _, _| (doc.stored(kind, by), ()))
        })
        .await;
        if let Err(error) = noted {
            tracing::warn!(batch = id, callback = ?kind, %error, "could not note a batch callback as stored");
        }
    }
    Ok(())
}

/// Stores the callbacks of an empty batch, which its dispatcher owes.
pub(crate) async fn finish_empty(
    driver: &dyn QueueDriver,
    id: &str,
    doc: &BatchDoc,
) -> Result<(), QueueError> {
    let owed = doc.links(&doc.owed_by(DISPATCHER));
    store_callbacks(driver, id, &doc.connection, DISPATCHER, owed).await
}

fn driver_error(driver: &dyn QueueDriver, source: DriverError) -> QueueError {
    QueueError::Driver {
        connection: driver.kind().to_owned(),
        source,
    }
}
