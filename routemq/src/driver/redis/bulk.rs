//! Bulk dispatch: many jobs for one queue without a script per chunk.
//!
//! `push.lua` builds each record inside Redis, which costs the server a string copy and a
//! command per job. For a long run of jobs the counter is stepped once for the whole run
//! (`INCRBY`, one round trip), the records are built here with the ids that step reserved,
//! and each chunk of 1,000 is stored in one transaction (`MULTI`: `RPUSH` of the ready ones,
//! `ZADD` of the delayed and the prioritized ones, `PERSIST` of the counter, and a wake-up
//! `PUBLISH`), the next chunk being built while one is on its way. Each chunk is atomic, as with
//! the script; a huge dispatch never blocks Redis in one step. (On a cluster the `PUBLISH`
//! follows the transaction: a channel has a slot of its own, and a cluster's `MULTI` stays in one
//! slot.) The records are byte for byte those `push.lua` writes. Two dispatchers' runs may
//! interleave chunk by chunk, so the list keeps arrival order, not id order. A run that fails part-way returns the error: the chunks
//! before the failed one are stored, the ids of the rest stay unused (and the counter without an
//! expiry, as a queue that holds jobs keeps it).

use std::fmt::Write as _;
use std::time::SystemTime;

use super::connection::Connection;
use super::keys::QueueKeys;
use super::{RedisDriver, backend, epoch};
use crate::driver::{DriverError, NewJob};
use crate::envelope::push_str_literal;

/// Runs at least this long go through [`push_run`]; shorter ones through `push.lua` (one round
/// trip instead of two).
pub(super) const MIN_RUN: usize = 32;

/// Jobs per transaction.
const CHUNK: usize = 1_000;

/// A prioritized job's score: higher priorities first, then by id (as `push.lua` computes it).
fn priority_score(priority: u8, n: i64) -> f64 {
    ((255 - i64::from(priority)) * 1_099_511_627_776 + n) as f64
}

/// The record `push.lua` writes for job number `n`, written in one buffer.
fn record(queue: &str, n: i64, job: &NewJob, created_at: &str) -> String {
    let mut record = String::with_capacity(
        job.payload.len() + job.payload.len() / 8 + queue.len() + created_at.len() + 96,
    );
    record.push('{');
    if job.priority > 0 {
        let _ = write!(record, "\"priority\": {}, ", job.priority);
    }
    let _ = write!(record, "\"id\": \"{queue}:{n}\", \"payload\": ");
    push_str_literal(&mut record, &job.payload);
    record.push_str(", \"attempts\": 0, \"created_at\": \"");
    record.push_str(created_at);
    record.push_str("\"}");
    record
}

/// Stores `jobs` (all for `queue`) and returns their ids, in order.
pub(super) async fn push_run(
    driver: &RedisDriver,
    mut con: Connection,
    queue: &str,
    jobs: &[NewJob],
    now: SystemTime,
    created_at: &str,
) -> Result<Vec<String>, DriverError> {
    let keys = driver.layout.queue(queue);
    let count = i64::try_from(jobs.len()).unwrap_or(i64::MAX);
    let (last,): (i64,) = redis::pipe()
        .cmd("INCRBY")
        .arg(&keys.seq)
        .arg(count)
        .cmd("PERSIST")
        .arg(&keys.seq)
        .ignore()
        .query_async(&mut con)
        .await
        .map_err(backend("push"))?;
    let first = last - count + 1;
    let now_epoch = epoch(now);
    let channel = driver.layout.wake_channel();
    let publish_apart = con.is_cluster();
    let inside = (!publish_apart).then_some(channel.as_str());
    let mut ids = Vec::with_capacity(jobs.len());
    // The next chunk's records are built while the one before is on its way: one chunk in
    // flight at a time, so chunks are stored in order and a failed one stops the run.
    let mut in_flight = None;
    for (c, chunk) in jobs.chunks(CHUNK).enumerate() {
        let base = first + i64::try_from(c * CHUNK).unwrap_or(i64::MAX);
        let (transaction, wakes) =
            chunk_transaction(&keys, queue, chunk, base, now_epoch, created_at, inside);
        let wake = (publish_apart && wakes).then(|| {
            let mut wake = redis::cmd("PUBLISH");
            wake.arg(&channel).arg(queue);
            wake
        });
        if let Some(previous) = in_flight.take() {
            settle(previous).await?;
        }
        let mut con = con.clone();
        in_flight = Some(tokio::spawn(async move {
            transaction.query_async::<()>(&mut con).await?;
            // Best effort: the jobs are stored, and idle workers also poll.
            if let Some(wake) = wake
                && let Err(error) = wake.query_async::<()>(&mut con).await
            {
                tracing::warn!(%error, "could not announce new jobs");
            }
            Ok(())
        }));
        // Let the send start before building the next chunk: a task spawned from a runtime
        // worker waits in that worker's own slot until the spawning task yields.
        tokio::task::yield_now().await;
        ids.extend((0..chunk.len()).map(|i| format!("{queue}:{}", base + i as i64)));
    }
    if let Some(last) = in_flight {
        settle(last).await?;
    }
    Ok(ids)
}

/// Waits for a chunk sent by [`push_run`].
async fn settle(chunk: tokio::task::JoinHandle<redis::RedisResult<()>>) -> Result<(), DriverError> {
    match chunk.await {
        Ok(sent) => sent.map_err(backend("push")),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(DriverError::backend("push", error)),
    }
}

/// One chunk's `MULTI … EXEC`: its jobs numbered from `base`, with the wake-up on `channel`
/// when there is one; and whether the chunk holds jobs that are ready now (that wake workers).
fn chunk_transaction(
    keys: &QueueKeys,
    queue: &str,
    chunk: &[NewJob],
    base: i64,
    now: f64,
    created_at: &str,
    channel: Option<&str>,
) -> (redis::Pipeline, bool) {
    let mut ready = Vec::new();
    let mut delayed = Vec::new();
    let mut prioritized = Vec::new();
    for (i, job) in chunk.iter().enumerate() {
        let n = base + i as i64;
        let record = record(queue, n, job, created_at);
        let delay = crate::limits::clamp(job.delay).as_secs_f64();
        if delay > 0.0 {
            delayed.push((now + delay, record));
        } else if job.priority > 0 {
            prioritized.push((priority_score(job.priority, n), record));
        } else {
            ready.push(record);
        }
    }
    let mut pipe = redis::pipe();
    pipe.atomic();
    if !ready.is_empty() {
        pipe.cmd("RPUSH").arg(&keys.ready).arg(&ready).ignore();
    }
    if !delayed.is_empty() {
        pipe.zadd_multiple(&keys.delayed, &delayed).ignore();
    }
    if !prioritized.is_empty() {
        pipe.zadd_multiple(&keys.prio, &prioritized).ignore();
    }
    pipe.cmd("PERSIST").arg(&keys.seq).ignore();
    let wakes = ready.len() + prioritized.len() > 0;
    if let Some(channel) = channel.filter(|_| wakes) {
        pipe.cmd("PUBLISH").arg(channel).arg(queue).ignore();
    }
    (pipe, wakes)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn records_are_those_the_script_writes() {
        let mut job = NewJob::new(
            "q",
            r#"{"class": "a.B", "data": {"s": "é"}}"#,
            Duration::ZERO,
        );
        assert_eq!(
            record("q", 7, &job, "2026-11-30T00:00:00.000000+00:00"),
            r#"{"id": "q:7", "payload": "{\"class\": \"a.B\", \"data\": {\"s\": \"\u00e9\"}}", "attempts": 0, "created_at": "2026-11-30T00:00:00.000000+00:00"}"#
        );
        job.priority = 5;
        assert!(record("q", 7, &job, "t").starts_with(r#"{"priority": 5, "id": "q:7", "#));
        assert_eq!(
            priority_score(5, 7),
            (250 * 1_099_511_627_776_i64 + 7) as f64
        );
    }
}
