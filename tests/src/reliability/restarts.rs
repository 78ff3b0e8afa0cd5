//! Broker restarts: a private server of each kind (see [`private`](super::private)) is killed with
//! `kill -9` while a producer dispatches and again while workers drain, then started again on
//! its data. Producers and workers reconnect by themselves; every dispatch that returned `Ok` must
//! run (Redis with `appendfsync everysec` may lose about a second of writes: measured, reported),
//! and only jobs that were under way at a crash may run twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::private::{Kind, PrivateServer};
use super::scenarios::{Run, stop_all};
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
        _ => &[],
    };
    let mut rows = Vec::new();
    for &kind in kinds {
        let mut row = Row {
            driver: kind.label().to_owned(),
            scenario: "restart",
            lost_allowed: kind == Kind::RedisEverysec,
            ..Row::default()
        };
        if let Err(problem) = restart_run(kind, size, &mut row).await {
            row.problems.push(problem);
        }
        rows.push(row);
    }
    rows
}

/// Ledger lines around a crash that may still belong to jobs under way at it: before the kill, a
/// job finished whose acknowledgement had not landed yet; after the restart, a job a worker had
/// reserved (or prefetched) before the crash and starts only now.
const SLACK: usize = 256;

/// Where a crash falls in the ledger: its length at the kill, and once the broker was started
/// again.
#[derive(Debug, Clone, Copy)]
struct Crash {
    killed: usize,
    restarted: usize,
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
    let mut workers = (0..2)
        .map(|_| run.worker(Duration::from_secs(1)))
        .collect::<Result<Vec<_>, _>>()?;
    let total = size.jobs / 2;
    let produced = Arc::new(AtomicU64::new(0));
    let producer = {
        let (run, produced) = (Arc::clone(&run), Arc::clone(&produced));
        tokio::spawn(async move {
            let mut dispatched = BTreeSet::new();
            for n in 0..total {
                if n % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                // Retried until the broker is back: only a successful return counts.
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let pushed = run
                        .manager
                        .push(run.job(n, 20, false))
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
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                produced.fetch_add(1, Ordering::Relaxed);
            }
            Ok(dispatched)
        })
    };
    // The first crash mid-enqueue, the second mid-drain.
    while produced.load(Ordering::Relaxed) < total / 3 && !producer.is_finished() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut crashes = vec![crash(&mut server, &run).await?];
    let dispatched = producer.await.map_err(|e| e.to_string())??;
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
    row.explained = explained_by_crashes(&run, &crashes);
    if row.explained < row.duplicated {
        row.problems.push(format!(
            "{} jobs ran twice though no crash caught them under way",
            row.duplicated - row.explained
        ));
    }
    Ok(())
}

/// How many jobs that completed more than once were under way at a crash: the runs a crash can
/// repeat.
fn explained_by_crashes(run: &Run, crashes: &[Crash]) -> u64 {
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
        .values()
        .filter(|(start, done, count)| {
            *count > 1
                && start.zip(*done).is_some_and(|(start, done)| {
                    crashes.iter().any(|crash| crash.caught(start, done))
                })
        })
        .count() as u64
}
