//! Network faults between one worker and its broker: the worker talks through a
//! [`FaultyLink`](super::link::FaultyLink) that adds latency, then loses chunks, then cuts the
//! link for a while, while a second worker on a clear link and a producer carry on. No job may be
//! lost; only jobs that the cut-off worker held may run twice (its leases expire and the other
//! worker takes them back); the cut-off worker comes back by itself once the link heals.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::link::{FaultyLink, Mode, through, upstream};
use super::processes::WorkerProcess;
use super::scenarios::{Run, stop_all};
use super::{Row, Size, Target};
use crate::process_jobs::read_ledger;

/// How long the latency and the loss phases last.
const PHASE: Duration = Duration::from_millis(1_500);

/// The network scenario on a server driver.
pub(super) async fn network(target: &Target, size: Size) -> Row {
    let mut row = Row::new(target.driver.clone(), "network");
    let result = network_run(target, size, &mut row).await;
    row.record(result);
    row
}

async fn network_run(target: &Target, size: Size, row: &mut Row) -> Result<(), String> {
    let run = Run::new(target, "network").await?;
    let broker = upstream(&target.location).ok_or("the server is not on 127.0.0.1")?;
    let link = FaultyLink::start(broker).await?;
    let location = through(&target.tagged(&run.tag), link.port()).ok_or("no port in the URL")?;
    let mut workers = vec![
        run.worker(Duration::from_secs(1))?,
        WorkerProcess::start(target, &location, &run.queue, Duration::from_secs(1))?,
    ];
    let cut_off = workers[1].pid();
    // A backlog that keeps both workers busy through every phase: each holds jobs when its link
    // is cut.
    let jobs = (0..size.jobs / 2).map(|n| run.job(n, 100, false)).collect();
    let dispatched: BTreeSet<u64> = (0..run.bulk(jobs).await?).collect();
    link.set(Mode::Latency(Duration::from_millis(30)));
    tokio::time::sleep(PHASE).await;
    link.set(Mode::Loss(10));
    tokio::time::sleep(PHASE).await;
    let cut_at = read_ledger(&run.ledger).len();
    link.set(Mode::Partition);
    tokio::time::sleep(size.partition).await;
    link.set(Mode::Clear);
    row.faults = 3;
    let healed = Instant::now();
    let healed_at = read_ledger(&run.ledger).len();
    // Work after the heal, for the cut-off worker to show it is back: it must start a job
    // within a minute.
    let first_after = size.jobs / 2;
    let more = (first_after..first_after + 100)
        .map(|n| run.job(n, 100, false))
        .collect();
    let dispatched: BTreeSet<u64> = dispatched
        .into_iter()
        .chain(first_after..first_after + run.bulk(more).await?)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let back = loop {
        let ledger = read_ledger(&run.ledger);
        if ledger[healed_at..].iter().any(|line| line.pid == cut_off) {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let drained = run.drained(Duration::from_secs(180)).await;
    row.recovery_secs = healed.elapsed().as_secs_f64();
    let worked = read_ledger(&run.ledger)[..cut_at]
        .iter()
        .any(|line| line.pid == cut_off);
    let alive = workers[1].running();
    stop_all(&mut workers).await;
    drained?;
    row.dispatched = dispatched.len() as u64;
    let cut = BTreeSet::from([cut_off]);
    run.account(row, &dispatched, &BTreeSet::new(), &cut).await;
    row.unexplained("jobs ran twice though the cut-off worker never held them");
    if !worked {
        row.problems
            .push("the cut-off worker ran no job before its link was cut".to_owned());
    }
    if !alive {
        row.problems.push("the cut-off worker exited".to_owned());
    } else if !back {
        row.problems
            .push("the cut-off worker ran no job within a minute of the link healing".to_owned());
    }
    Ok(())
}
