//! Removing one queued or delayed job by id. RouteMQ's layout has no index by id (its lists and
//! sorted sets hold whole records), so this scans the job's queue: the delayed and prioritized
//! sets with `ZSCAN`, the ready list from its tail in chunks, and deletes the exact record found (`LREM` / `ZREM`,
//! atomic: a record a worker took meanwhile stays the worker's). It is an administrative
//! operation, O(queue length) in round trips of [`CHUNK`] records, and never blocks Redis for
//! longer than one chunk.

use std::borrow::Cow;

use super::connection::Connection;
use serde::Deserialize;

use super::keys::QueueKeys;
use super::{RedisDriver, backend, parse_record, scan_step};
use crate::driver::{DriverError, Removal};

/// Records read per round trip.
const CHUNK: isize = 1_000;

/// Scans of a queue before a job is declared not found: a job that moves between the delayed
/// set, the ready list and the in-flight hash while one scan runs is found by the next.
const PASSES: usize = 3;

#[derive(Deserialize)]
struct RecordId<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
}

/// Whether `record` is the record of job `id`.
fn is_job(record: &str, id: &str) -> bool {
    record.contains(id)
        && serde_json::from_str::<RecordId<'_>>(record).is_ok_and(|record| record.id == id)
}

/// The queue a job id names: ours and RouteMQ's are `{queue}:{n}`.
fn queue_of_job_id(id: &str) -> Option<&str> {
    let (queue, n) = id.split_once(':')?;
    let queue = queue.trim_matches(['{', '}']);
    (!n.is_empty() && crate::names::validate_queue_name(queue).is_ok()).then_some(queue)
}

pub(super) async fn remove(driver: &RedisDriver, id: &str) -> Result<Removal, DriverError> {
    let queues = crate::driver::queue_or_all(driver, queue_of_job_id(id)).await?;
    let mut con = driver.con();
    for queue in queues {
        let keys = driver.layout.queue(&queue);
        for _ in 0..PASSES {
            let removed = match remove_scanned(&mut con, &keys.delayed, id).await? {
                Some(record) => Some(record),
                None => match remove_scanned(&mut con, &keys.prio, id).await? {
                    Some(record) => Some(record),
                    None => remove_ready(&mut con, &keys, id).await?,
                },
            };
            if let Some(record) = removed {
                let payload = parse_record(&record);
                driver.retire_seq(&queue).await;
                return Ok(Removal::Removed { queue, payload });
            }
            // Looked for last: a job a worker took during the scan is in flight by now.
            let leased: bool = redis::cmd("HEXISTS")
                .arg(&keys.inflight)
                .arg(id)
                .query_async(&mut con)
                .await
                .map_err(backend("remove job"))?;
            if leased {
                return Ok(Removal::Leased { queue });
            }
        }
    }
    Ok(Removal::NotFound)
}

/// Scans the ready list from its tail (`LRANGE -1000 -1`, then `-2000 -1001`, ...). Workers pop
/// from the head, which leaves every record's distance from the tail as it is, and pushes to
/// the tail only move records towards the chunks not read yet: no record present throughout the
/// scan is missed. Returns the record removed.
async fn remove_ready(
    con: &mut Connection,
    keys: &QueueKeys,
    id: &str,
) -> Result<Option<String>, DriverError> {
    let mut end = -1;
    loop {
        let records: Vec<String> = redis::cmd("LRANGE")
            .arg(&keys.ready)
            .arg(end - CHUNK + 1)
            .arg(end)
            .query_async(con)
            .await
            .map_err(backend("remove job"))?;
        if let Some(record) = records.iter().find(|record| is_job(record, id)) {
            let removed: i64 = redis::cmd("LREM")
                .arg(&keys.ready)
                .arg(1)
                .arg(record)
                .query_async(con)
                .await
                .map_err(backend("remove job"))?;
            return Ok((removed > 0).then(|| record.clone()));
        }
        if records.len() < CHUNK.unsigned_abs() {
            return Ok(None);
        }
        end -= CHUNK;
    }
}

/// Scans a sorted set, the delayed or the prioritized jobs (`ZSCAN` returns every member present
/// throughout the scan). Returns the record removed.
async fn remove_scanned(
    con: &mut Connection,
    key: &str,
    id: &str,
) -> Result<Option<String>, DriverError> {
    let mut cursor: u64 = 0;
    loop {
        let (next, entries) = scan_step(con, "ZSCAN", key, cursor, CHUNK, "remove job").await?;
        // Members and scores alternate.
        if let Some(record) = entries.iter().step_by(2).find(|record| is_job(record, id)) {
            let removed: i64 = redis::cmd("ZREM")
                .arg(key)
                .arg(record)
                .query_async(con)
                .await
                .map_err(backend("remove job"))?;
            return Ok((removed > 0).then(|| record.clone()));
        }
        if next == 0 {
            return Ok(None);
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_name_their_queue() {
        assert_eq!(queue_of_job_id("emails:42"), Some("emails"));
        assert_eq!(queue_of_job_id("{emails}:42"), Some("emails"));
        assert_eq!(queue_of_job_id("emails:1795901704253379"), Some("emails"));
        assert_eq!(queue_of_job_id("42"), None);
        assert_eq!(queue_of_job_id("emails:"), None);
    }

    #[test]
    fn records_match_by_their_own_id_only() {
        let record = r#"{"id": "emails:4", "payload": "{\"id\": \"emails:42\"}", "attempts": 0}"#;
        assert!(is_job(record, "emails:4"));
        assert!(!is_job(record, "emails:42"), "an id inside the payload");
        assert!(!is_job("not json emails:4", "emails:4"));
    }
}
