//! Redis Cluster failover: on a six-node cluster of the scenario's own (see
//! [`redis_cluster`](crate::redis_cluster)), the primary that holds the queue is killed with
//! `kill -9` while a producer dispatches and two workers drain; its replica takes over, and the
//! killed node is started again and rejoins as the new primary's replica. Producers and workers
//! carry on by themselves.
//!
//! Redis replicates asynchronously: a dispatch the old primary acknowledged but had not yet sent
//! to its replica is gone after the failover. The `failover` row measures how many were lost
//! (its `lost` column: a measurement, not a failure). The `failover` row of `redis-cluster/wait`
//! dispatches with `WAIT` for one replica (`REDIS_WAIT_REPLICAS=1`): none may be lost, and
//! dispatches fail (and are retried) while the shard has no replica.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use routemq::driver::redis::{KeyLayout, RedisDriver};

use super::restarts::{Crash, explained_by_crashes, under_way};
use super::scenarios::{Run, stop_all};
use super::{Row, Size, Target};
use crate::process_jobs::read_ledger;
use crate::redis_cluster::LocalCluster;

/// Ledger lines past the failover that may still belong to jobs held at the kill, beyond what a
/// restart allows (see `restarts::SLACK`): the takeover (seconds) outlasts the workers' 2 s
/// visibility timeout, so every job a worker held at the kill can run again, and a prefetched one
/// starts when its worker gets to it. Two workers hold at most 8 running and 32 prefetched jobs
/// each (40 ms jobs), two lines each.
const HELD_LINES: usize = 2 * 2 * (8 + 32);

/// The failover scenario without and with `WAIT`.
pub(super) async fn failovers(size: Size) -> Vec<Row> {
    let mut rows = Vec::new();
    for (label, wait) in [("redis-cluster", false), ("redis-cluster/wait", true)] {
        let mut row = Row::new(label, "failover");
        let result = failover_run(size, wait, &mut row).await;
        row.record(result);
        rows.push(row);
    }
    rows
}

async fn failover_run(size: Size, wait: bool, row: &mut Row) -> Result<(), String> {
    let cluster = tokio::task::spawn_blocking(LocalCluster::start)
        .await
        .map_err(|e| e.to_string())??;
    let cluster = Arc::new(cluster);
    let target = Target {
        driver: "redis-cluster".to_owned(),
        location: cluster.nodes().join(","),
    };
    let run = Run::new(&target, "failover").await?;
    if wait {
        let layout = KeyLayout::new("routemq-reliability:", true);
        let producer = RedisDriver::connect_cluster(&cluster.nodes(), layout)
            .await
            .map_err(|e| e.to_string())?
            .wait_for_replicas(1, Duration::from_secs(1));
        run.manager.register("target", Arc::new(producer));
    }
    let run = Arc::new(run);
    let (mut workers, producer) = under_way(&run, size).await?;

    // Kill the queue's primary mid-enqueue and mid-drain; wait for its replica to take over.
    let key = format!("routemq-reliability:{{{}}}", run.queue);
    let primary = {
        let (cluster, key) = (Arc::clone(&cluster), key.clone());
        tokio::task::spawn_blocking(move || cluster.primary_of(&key))
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no primary holds the queue's slot")?
    };
    let killed = read_ledger(&run.ledger).len();
    cluster.kill(primary);
    let down = Instant::now();
    {
        let cluster = Arc::clone(&cluster);
        tokio::task::spawn_blocking(move || {
            cluster.wait_new_primary(&key, primary, Duration::from_secs(60))
        })
        .await
        .map_err(|e| e.to_string())??;
    }
    let failed_over = down.elapsed();
    let restarted = read_ledger(&run.ledger).len();
    {
        let cluster = Arc::clone(&cluster);
        tokio::task::spawn_blocking(move || cluster.restart(primary))
            .await
            .map_err(|e| e.to_string())??;
    }
    row.faults = 1;

    let (dispatched, retried) = producer.join().await??;
    let drained = run.drained(Duration::from_secs(180)).await;
    row.recovery_secs = down.elapsed().as_secs_f64();
    stop_all(&mut workers).await;
    drained?;
    row.dispatched = dispatched.len() as u64;
    run.account(row, &dispatched, &BTreeSet::new(), &BTreeSet::new())
        .await;
    let crash = Crash {
        killed,
        restarted: restarted + HELD_LINES,
    };
    row.explained = explained_by_crashes(&run, &[crash], &retried);
    row.unexplained("jobs ran twice though no worker held them at the kill");
    if !wait {
        // Lost acknowledged dispatches are what this row measures (asynchronous replication).
        row.problems
            .retain(|problem| !problem.ends_with("jobs lost"));
    }
    eprintln!(
        "{}: the replica took over {:.1} s after the kill; {} of {} acknowledged dispatches lost",
        row.driver,
        failed_over.as_secs_f64(),
        row.lost,
        row.dispatched
    );
    Ok(())
}
