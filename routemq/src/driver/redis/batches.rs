//! [Batch records](crate::driver::BatchRow) in Redis: a hash per batch (`version`, `created_at`,
//! `finished_at`, `doc`), a hash of its jobs' outcomes, and two sorted sets that index batches by
//! creation and by finish time. Creating, writing and pruning are Lua scripts; a read is one
//! `MULTI` transaction, so the outcome it returns belongs to the version it returns.

use super::{RedisDriver, backend, scripts};
use crate::driver::{BatchPrune, BatchRow, BatchWrite, DriverError};

/// Most batches one prune script call deletes.
const PRUNE_CHUNK: usize = 200;

/// A batch hash's fields, as read: in this order, each missing when the batch is gone.
const FIELDS: [&str; 4] = ["version", "created_at", "finished_at", "doc"];
type Fields = (Option<i64>, Option<i64>, Option<i64>, Option<String>);

fn row(id: &str, (version, created_at, finished_at, doc): Fields) -> Option<BatchRow> {
    Some(BatchRow {
        id: id.to_owned(),
        version: version?,
        created_at: created_at?,
        finished_at,
        doc: doc?,
    })
}

fn optional(millis: Option<i64>) -> String {
    millis.map(|m| m.to_string()).unwrap_or_default()
}

pub(super) async fn create(driver: &RedisDriver, batch: &BatchRow) -> Result<(), DriverError> {
    let keys = driver.layout.batches();
    let _: i64 = scripts::BATCH_CREATE
        .key(format!("{}{}", keys.record, batch.id))
        .key(&keys.index)
        .key(&keys.finished)
        .arg(&batch.id)
        .arg(batch.version)
        .arg(batch.created_at)
        .arg(optional(batch.finished_at))
        .arg(&batch.doc)
        .invoke_async(&mut driver.con())
        .await
        .map_err(backend("create batch"))?;
    Ok(())
}

pub(super) async fn read(
    driver: &RedisDriver,
    id: &str,
    job: Option<&str>,
) -> Result<Option<(BatchRow, Option<String>)>, DriverError> {
    let keys = driver.layout.batches();
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("HMGET")
        .arg(format!("{}{id}", keys.record))
        .arg(&FIELDS)
        .cmd("HGET")
        .arg(format!("{}{id}", keys.jobs))
        .arg(job.unwrap_or(""));
    let (fields, outcome): (Fields, Option<String>) = pipe
        .query_async(&mut driver.con())
        .await
        .map_err(backend("read batch"))?;
    Ok(row(id, fields).map(|row| (row, outcome)))
}

pub(super) async fn write(
    driver: &RedisDriver,
    write: &BatchWrite<'_>,
) -> Result<bool, DriverError> {
    let keys = driver.layout.batches();
    let (job, outcome) = write.mark.unwrap_or(("", ""));
    let written: i64 = scripts::BATCH_WRITE
        .key(format!("{}{}", keys.record, write.id))
        .key(format!("{}{}", keys.jobs, write.id))
        .key(&keys.finished)
        .arg(write.id)
        .arg(write.version)
        .arg(write.doc)
        .arg(optional(write.finished_at))
        .arg(job)
        .arg(outcome)
        .invoke_async(&mut driver.con())
        .await
        .map_err(backend("write batch"))?;
    Ok(written == 1)
}

pub(super) async fn list(driver: &RedisDriver, limit: usize) -> Result<Vec<BatchRow>, DriverError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let keys = driver.layout.batches();
    let stop = isize::try_from(limit).unwrap_or(isize::MAX) - 1;
    let ids: Vec<String> = redis::cmd("ZREVRANGE")
        .arg(&keys.index)
        .arg(0)
        .arg(stop)
        .query_async(&mut driver.con())
        .await
        .map_err(backend("list batches"))?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in &ids {
        pipe.cmd("HMGET")
            .arg(format!("{}{id}", keys.record))
            .arg(&FIELDS);
    }
    let fields: Vec<Fields> = pipe
        .query_async(&mut driver.con())
        .await
        .map_err(backend("list batches"))?;
    // A batch pruned between the two calls is left out.
    Ok(ids
        .iter()
        .zip(fields)
        .filter_map(|(id, fields)| row(id, fields))
        .collect())
}

pub(super) async fn prune(driver: &RedisDriver, prune: BatchPrune) -> Result<u64, DriverError> {
    // Finished batches first, to the end; then (when asked) the scan for old unfinished ones, so
    // that its offset is not moved by deletions of finished ones.
    let mut pruned = 0;
    loop {
        let (finished, _, _) = prune_step(driver, prune.finished_before, None, 0).await?;
        pruned += finished as u64;
        if finished < PRUNE_CHUNK {
            break;
        }
    }
    let Some(before) = prune.unfinished_before else {
        return Ok(pruned);
    };
    let mut offset = 0;
    loop {
        let (_, unfinished, scanned) = prune_step(driver, 0, Some(before), offset).await?;
        pruned += unfinished as u64;
        // Batches not deleted (finished ones, too recent to go) stay where the scan starts.
        offset += scanned - unfinished;
        if scanned < PRUNE_CHUNK {
            return Ok(pruned);
        }
    }
}

/// One call of the prune script: (finished deleted, unfinished deleted, entries scanned).
async fn prune_step(
    driver: &RedisDriver,
    finished_before: i64,
    unfinished_before: Option<i64>,
    offset: usize,
) -> Result<(usize, usize, usize), DriverError> {
    let keys = driver.layout.batches();
    scripts::BATCH_PRUNE
        .key(&keys.index)
        .key(&keys.finished)
        .arg(finished_before)
        .arg(optional(unfinished_before))
        .arg(&keys.record)
        .arg(&keys.jobs)
        .arg(PRUNE_CHUNK)
        .arg(offset)
        .invoke_async(&mut driver.con())
        .await
        .map_err(backend("prune batches"))
}
