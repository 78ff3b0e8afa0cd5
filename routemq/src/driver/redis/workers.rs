//! [Worker presence records](crate::driver::WorkerRow) in Redis: a sorted set of worker ids by
//! last beat (ms) and a hash of their documents. A beat writes both in one `MULTI` and sets both
//! keys to expire an hour later (so they go once every worker has stopped); a read is two plain
//! reads (a replica serves them); running workers delete old records with a script.

use super::{RedisDriver, backend, scripts};
use crate::driver::{DriverError, WorkerRow};
use crate::worker::presence::KEPT_FOR;

pub(super) async fn beat(driver: &RedisDriver, row: &WorkerRow) -> Result<bool, DriverError> {
    let keys = driver.layout.workers();
    let kept_for = u64::try_from(KEPT_FOR.as_millis()).unwrap_or(u64::MAX);
    let () = redis::pipe()
        .atomic()
        .cmd("ZADD")
        .arg(&keys.beats)
        .arg(row.beat_at)
        .arg(&row.id)
        .ignore()
        .cmd("HSET")
        .arg(&keys.docs)
        .arg(&row.id)
        .arg(&row.doc)
        .ignore()
        .cmd("PEXPIRE")
        .arg(&keys.beats)
        .arg(kept_for)
        .ignore()
        .cmd("PEXPIRE")
        .arg(&keys.docs)
        .arg(kept_for)
        .ignore()
        .query_async(&mut driver.con())
        .await
        .map_err(backend("record a worker"))?;
    Ok(true)
}

pub(super) async fn rows(
    driver: &RedisDriver,
    since: i64,
) -> Result<Option<Vec<WorkerRow>>, DriverError> {
    let keys = driver.layout.workers();
    let beats: Vec<(String, f64)> = redis::cmd("ZRANGEBYSCORE")
        .arg(&keys.beats)
        .arg(since)
        .arg("+inf")
        .arg("WITHSCORES")
        .query_async(&mut driver.con())
        .await
        .map_err(backend("list workers"))?;
    if beats.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let docs: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(&keys.docs)
        .arg(beats.iter().map(|(id, _)| id).collect::<Vec<_>>())
        .query_async(&mut driver.con())
        .await
        .map_err(backend("list workers"))?;
    // A record pruned between the two reads is left out.
    let mut rows: Vec<WorkerRow> = beats
        .into_iter()
        .zip(docs)
        .filter_map(|((id, beat_at), doc)| {
            Some(WorkerRow {
                id,
                beat_at: beat_at as i64,
                doc: doc?,
            })
        })
        .collect();
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Some(rows))
}

pub(super) async fn prune(driver: &RedisDriver, before: i64) -> Result<u64, DriverError> {
    let keys = driver.layout.workers();
    scripts::WORKERS_PRUNE
        .key(&keys.beats)
        .key(&keys.docs)
        .arg(before)
        .invoke_async(&mut driver.con())
        .await
        .map_err(backend("delete old worker records"))
}
