//! Broker restarts: a private server of each kind (see [`private`](super::private)) is killed with
//! `kill -9` while a producer dispatches and again while workers drain, then started again on
//! its data. Producers and workers reconnect by themselves; every dispatch that returned `Ok` must
//! run (a killed server process loses nothing under any of these configurations, Redis's
//! `appendfsync everysec` included), and only jobs that were under way at a crash, or pushed again
//! after a push that failed, may run twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::private::{Kind, PrivateServer};
use super::processes::WorkerProcess;
use super::scenarios::{Owned, Run, stop_all};
use super::{Row, Size, Target};
use crate::process_jobs::read_ledger;

/// How long the broker stays down at each crash.
const DOWN: Duration = Duration::from_millis(700);

/// The restart scenarios for `target`'s kind of server.
pub(super) async fn restarts(target: &Target, size: Size) -> Vec<Row> {
    let kinds: &[Kind] = match target.driver.as_str() {
        "redis" => &[Kind::RedisAlways, Kind::RedisEverysec],
        "postgres" => &[Kind::Postgres],
        "mysql" => &[Kind::Mariadb],
        "redis-cluster" => return super::failover::failovers(size).await,
        _ => &[],
    };
    let mut rows = Vec::new();
    for &kind in kinds {
        let mut row = Row::new(kind.label().to_owned(), "restart");
        let result = restart_run(kind, size, &mut row).await;
        row.record(result);
        rows.push(row);
    }
    rows
}

/// Ledger lines around a crash that may still belong to jobs under way at it: before the kill, a
/// job finished whose acknowledgement had not landed yet; after the restart, a job a worker had
/// reserved (or prefetched) before the crash and starts only now. Two workers of 8 slots, each
/// with as many prefetched, hold at most 32 jobs, two lines each; twice that allows for lines of
/// other jobs written in between.
const SLACK: usize = 128;

/// Where a crash falls in the ledger: its length at the kill, and once the broker was started
/// again.
#[derive(Debug, Clone, Copy)]
pub(super) struct Crash {
    pub(super) killed: usize,
    pub(super) restarted: usize,
}

impl Crash {
    /// Whether a job whose first run started at line `start` and first finished at line `done`
    /// was under way at this crash: reserved before it, and not settled long before it.
    fn caught(&self, start: usize, done: usize) -> bool {
        start < self.restarted + SLACK && done + SLACK >= self.killed
    }
}

/// Kills the server, waits [`DOWN`], starts it again.
async fn crash(server: &mut PrivateServer, run: &Run) -> Result<Crash, String> {
    let killed = read_ledger(&run.ledger).len();
    server.kill();
    tokio::time::sleep(DOWN).await;
    let restarted = read_ledger(&run.ledger).len();
    server.restart().await?;
    Ok(Crash { killed, restarted })
}

async fn restart_run(kind: Kind, size: Size, row: &mut Row) -> Result<(), String> {
    let mut server = PrivateServer::start(kind).await?;
    let target = Target {
        driver: kind.driver().to_owned(),
        location: server.url(),
    };
    let run = Arc::new(Run::new(&target, "restart").await?);
    // The first crash mid-enqueue, the second mid-drain.
    let (mut workers, producer) = under_way(&run, size).await?;
    let mut crashes = vec![crash(&mut server, &run).await?];
    let (dispatched, retried) = producer.join().await??;
    let backlog = run
        .driver
        .stats(&run.queue)
        .await
        .map(|stats| stats.ready + stats.reserved)
        .unwrap_or(0);
    if backlog == 0 {
        row.problems
            .push("the queue was drained before the second crash".to_owned());
    }
    crashes.push(crash(&mut server, &run).await?);
    row.faults = crashes.len() as u64;
    let restarted = Instant::now();
    let drained = run.drained(Duration::from_secs(180)).await;
    row.recovery_secs = restarted.elapsed().as_secs_f64();
    stop_all(&mut workers).await;
    drained?;
    row.dispatched = dispatched.len() as u64;
    run.account(row, &dispatched, &BTreeSet::new(), &BTreeSet::new())
        .await;
    row.explained = explained_by_crashes(&run, &crashes, &retried);
    row.unexplained("jobs ran twice though no crash caught them under way");
    Ok(())
}

/// Two worker processes on `run`'s queue and a [`produce`]r of half the run's jobs, returned once
/// a third of those are dispatched: the moment a broker fault lands mid-enqueue and mid-drain.
pub(super) async fn under_way(
    run: &Arc<Run>,
    size: Size,
) -> Result<(Vec<WorkerProcess>, Owned<Produced>), String> {
    let workers = (0..2)
        .map(|_| run.worker(Duration::from_secs(1)))
        .collect::<Result<Vec<_>, _>>()?;
    let total = size.jobs / 2;
    let produced = Arc::new(AtomicU64::new(0));
    let producer = produce(Arc::clone(run), total, Arc::clone(&produced));
    while produced.load(Ordering::Relaxed) < total / 3 && !producer.is_finished() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok((workers, producer))
}

/// What a producer that dispatches jobs `0..total` one by one returns: the jobs dispatched (with
/// a successful return), and those whose push failed first (and may have been stored then).
pub(super) type Produced = Result<(BTreeSet<u64>, BTreeSet<u64>), String>;

/// A producer of jobs `0..total` on `run`'s queue, each retried until a push returns `Ok` (for
/// up to a minute), counting them in `produced`.
pub(super) fn produce(run: Arc<Run>, total: u64, produced: Arc<AtomicU64>) -> Owned<Produced> {
    Owned::spawn(async move {
        // Jobs whose push failed before it succeeded: a failed push may have been stored, so
        // such a job can be queued twice.
        let (mut dispatched, mut retried) = (BTreeSet::new(), BTreeSet::new());
        for n in 0..total {
            if n % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Retried until the broker is back: only a successful return counts.
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let pushed = run
                    .manager
                    .push(run.job(n, 40, false))
                    .on_queue(run.queue.clone())
                    .await;
                match pushed {
                    Ok(_) => {
                        dispatched.insert(n);
                        break;
                    }
                    Err(error) if Instant::now() >= deadline => {
                        return Err(format!("dispatch kept failing: {error}"));
                    }
                    Err(_) => {
                        retried.insert(n);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            produced.fetch_add(1, Ordering::Relaxed);
        }
        Ok((dispatched, retried))
    })
}

/// How many jobs that completed more than once were under way at a crash (the runs a crash can
/// repeat), or were pushed again after a push that failed (and may have been stored).
pub(super) fn explained_by_crashes(run: &Run, crashes: &[Crash], retried: &BTreeSet<u64>) -> u64 {
    let mut first: BTreeMap<u64, (Option<usize>, Option<usize>, u32)> = BTreeMap::new();
    for (i, line) in read_ledger(&run.ledger).iter().enumerate() {
        let entry = first.entry(line.n).or_default();
        if line.event == "start" {
            entry.0.get_or_insert(i);
        } else {
            entry.1.get_or_insert(i);
            entry.2 += 1;
        }
    }
    first
        .iter()
        .filter(|(n, (start, done, count))| {
            *count > 1
                && (retried.contains(n)
                    || start.zip(*done).is_some_and(|(start, done)| {
                        crashes.iter().any(|crash| crash.caught(start, done))
                    }))
        })
        .count() as u64
}
