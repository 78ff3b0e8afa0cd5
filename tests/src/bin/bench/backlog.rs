//! Cost as work grows: dispatch and drain on top of a backlog.
//!
//! `bench <connection> backlog --backlog B [--delayed D] --n N --concurrency C` fills a queue of
//! its own with B ready jobs and D delayed ones (due in a day), then measures, on top of them:
//! N dispatches one at a time, N in one bulk call, and a worker draining N jobs (the oldest first,
//! so from the backlog's head). It reports the rates, the broker's CPU per job for each, the
//! broker's memory with the backlog in place, and this process's resident memory (worker and
//! producer) at the end. The backlog is deleted afterwards straight from the store (a table's
//! rows of that queue, or the queue's Redis keys), so a run leaves nothing behind.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use routemq::driver::QueueDriver;
use routemq::prelude::*;
use routemq::sqlx;
use serde_json::json;

use crate::broker::{Broker, mb, measure, own_memory};
use crate::{Args, BoxError, DONE, bulk, dispatch_rates, job, sql_pool, url, worker};

/// Fills, measures, and clears the queue.
pub(crate) async fn run(
    args: &Args,
    driver: &Arc<dyn QueueDriver>,
    manager: &QueueManager,
    broker: &Broker,
    queue: &str,
    out: &mut serde_json::Value,
) -> Result<(), BoxError> {
    let result = fill_and_measure(args, driver, manager, broker, queue, out).await;
    clear(&args.connection, queue).await?;
    result
}

async fn fill_and_measure(
    args: &Args,
    driver: &Arc<dyn QueueDriver>,
    manager: &QueueManager,
    broker: &Broker,
    queue: &str,
    out: &mut serde_json::Value,
) -> Result<(), BoxError> {
    let started = Instant::now();
    bulk(manager, queue, args.backlog).await?;
    let mut i = 0;
    while i < args.delayed {
        let end = (i + 1000).min(args.delayed);
        manager
            .bulk((i..end).map(job))
            .on_connection("bench")
            .on_queue(queue)
            .delay(Duration::from_secs(86_400))
            .await?;
        i = end;
    }
    out["backlog"] = json!(args.backlog);
    out["delayed"] = json!(args.delayed);
    out["fill_seconds"] = json!(started.elapsed().as_secs_f64());
    if let Some(usage) = broker.usage().await? {
        out["broker_memory_mb"] = json!(mb(usage.memory));
    }

    let n = args.n;
    dispatch_rates(manager, broker, queue, queue, n, out).await?;

    let expected = u64::try_from(args.backlog + args.delayed + 2 * n)?;
    let size = driver.size(queue).await?;
    if size != expected {
        return Err(format!("the queue holds {size} jobs, {expected} were dispatched").into());
    }

    let before = DONE.load(Ordering::Relaxed);
    let drain = async {
        let limit = Some(u64::try_from(n)?);
        Ok(worker(driver, queue, args.concurrency, false, limit)
            .run()
            .await?)
    };
    let (report, seconds) = measure(broker, n, "", out, drain).await?;
    let ran = DONE.load(Ordering::Relaxed) - before;
    if report.succeeded != u64::try_from(n)? || ran != report.succeeded {
        return Err(format!("drained {ran} of {n}: {report:?}").into());
    }
    let left = driver.size(queue).await?;
    if left != expected - u64::try_from(n)? {
        return Err(format!("{left} jobs left after draining {n} of {expected}").into());
    }
    out["seconds"] = json!(seconds);
    out["client_memory_mb"] = json!(mb(own_memory()));
    Ok(())
}

/// Deletes what is left of `queue` straight from the store.
async fn clear(connection: &str, queue: &str) -> Result<(), BoxError> {
    let delete = "DELETE FROM queue_jobs WHERE queue = ";
    match connection {
        "redis" | "redis-cluster" => {
            // On a cluster in one slot: the keys carry the queue's hash tag.
            let base = if connection == "redis" {
                format!("bench:routemq:{queue}")
            } else {
                format!("bench:routemq:{{{queue}}}")
            };
            let suffixes = [
                "",
                ":delayed",
                ":inflight",
                ":leased",
                ":leases",
                ":seq",
                ":prio",
            ];
            let keys: Vec<String> = suffixes.iter().map(|s| format!("{base}{s}")).collect();
            // UNLINK frees a million-member key in the background.
            let mut unlink = routemq::redis::cmd("UNLINK");
            unlink.arg(&keys);
            if connection == "redis" {
                let client = routemq::redis::Client::open(url("redis"))?;
                let mut con = client.get_multiplexed_async_connection().await?;
                let _: i64 = unlink.query_async(&mut con).await?;
            } else {
                let nodes = url("redis-cluster");
                let client = routemq::redis::cluster::ClusterClient::new(nodes.split(','))?;
                let _: i64 = unlink
                    .query_async(&mut client.get_async_connection().await?)
                    .await?;
            }
        }
        "postgres" | "mysql" => {
            let placeholder = if connection == "postgres" { "$1" } else { "?" };
            let pool = sql_pool::connect(connection, 1).await?;
            sqlx::query(&format!("{delete}{placeholder}"))
                .bind(queue)
                .execute(&pool)
                .await?;
            pool.close().await;
        }
        // SQLite's file is removed after the run; memory goes with the process.
        _ => {}
    }
    Ok(())
}
