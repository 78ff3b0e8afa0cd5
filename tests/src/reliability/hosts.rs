//! Many hosts: three worker "hosts", each a network namespace of its own (see [`netns`]) with one
//! worker process, drain a backlog from one broker reached over the hosts' network. Mid-run one
//! host's worker is killed with `kill -9` (and not replaced: the host is gone), and another host's
//! link is cut for a while and then restored. Every job must complete; only jobs that ran on the
//! killed or the cut-off host may run twice; the cut-off host's worker must carry on by itself.
//!
//! [`netns`]: super::netns

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::link::{FaultyLink, upstream, via};
use super::netns::Network;
use super::processes::WorkerProcess;
use super::scenarios::{Run, stop_all};
use super::{Row, Size, Target};
use crate::process_jobs::read_ledger;
use crate::redis_cluster::LocalCluster;

/// How many hosts.
const HOSTS: usize = 3;

/// The many-hosts scenario on a server driver; `None` (after saying why) when this machine
/// cannot make network namespaces and the run does not require it.
pub(super) async fn hosts(target: &Target, size: Size) -> Option<Row> {
    let created = tokio::task::spawn_blocking(|| Network::create(HOSTS))
        .await
        .map_err(|e| e.to_string())
        .and_then(|created| created);
    let network = match created {
        Ok(network) => network,
        Err(error) if !required() => {
            eprintln!(
                "skipped hosts on {}: no network namespaces here ({error})",
                target.driver
            );
            return None;
        }
        Err(error) => {
            let mut row = Row::new(target.driver.clone(), "hosts");
            row.problems.push(format!("cannot make the hosts: {error}"));
            return Some(row);
        }
    };
    let mut row = Row::new(target.driver.clone(), "hosts");
    let result = hosts_run(target, size, &network, &mut row).await;
    row.record(result);
    Some(row)
}

fn required() -> bool {
    std::env::var("ROUTEMQ_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Where the hosts reach the broker: a cluster of the scenario's own on the bridge's address,
/// or a proxy there to the server's loopback port. What is returned keeps it running.
enum Reach {
    Cluster { _cluster: LocalCluster },
    Proxy(FaultyLink),
}

async fn hosts_run(
    target: &Target,
    size: Size,
    network: &Network,
    row: &mut Row,
) -> Result<(), String> {
    let gateway = network.gateway().to_owned();
    let (target, reach) = if target.driver == "redis-cluster" {
        let address = gateway.clone();
        let cluster = tokio::task::spawn_blocking(move || LocalCluster::start_at(&address))
            .await
            .map_err(|e| e.to_string())??;
        let target = Target {
            driver: target.driver.clone(),
            location: cluster.nodes().join(","),
        };
        (target, Reach::Cluster { _cluster: cluster })
    } else {
        let broker = upstream(&target.location).ok_or("the server is not on 127.0.0.1")?;
        let proxy = FaultyLink::start_at(&gateway, broker).await?;
        (target.clone(), Reach::Proxy(proxy))
    };
    let run = Run::new(&target, "hosts").await?;
    let location = match &reach {
        Reach::Cluster { .. } => target.location.clone(),
        Reach::Proxy(proxy) => {
            via(&target.tagged(&run.tag), &gateway, proxy.port()).ok_or("no port in the URL")?
        }
    };
    // 100 ms jobs: three hosts of 8 slots take about 4 s for the backlog, so every fault lands
    // among running jobs.
    let jobs = (0..size.jobs / 2).map(|n| run.job(n, 100, false)).collect();
    let dispatched: BTreeSet<u64> = (0..run.bulk(jobs).await?).collect();
    let mut workers = (0..HOSTS)
        .map(|k| {
            WorkerProcess::start_on(
                Some(network.host(k)),
                &target,
                &location,
                &run.queue,
                Duration::from_secs(1),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pids: Vec<u32> = workers.iter().map(WorkerProcess::pid).collect();
    // Every host at work before the faults.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pids
        .iter()
        .all(|pid| read_ledger(&run.ledger).iter().any(|line| line.pid == *pid))
    {
        if Instant::now() >= deadline {
            stop_all(&mut workers).await;
            return Err("not every host started a job within 30 s".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Host 0 dies; host 1 loses its link for a while.
    workers[0].signal("KILL");
    workers[0].wait(Duration::from_secs(5));
    network.link(1, false)?;
    tokio::time::sleep(size.partition).await;
    network.link(1, true)?;
    row.faults = 2;
    let healed = Instant::now();
    let healed_at = read_ledger(&run.ledger).len();
    let drained = run.drained(Duration::from_secs(180)).await;
    row.recovery_secs = healed.elapsed().as_secs_f64();
    let alive = workers[1].running();
    stop_all(&mut workers).await;
    drained?;
    let back = read_ledger(&run.ledger)[healed_at..]
        .iter()
        .any(|line| line.pid == pids[1]);
    row.dispatched = dispatched.len() as u64;
    let faulted = BTreeSet::from([pids[0], pids[1]]);
    run.account(row, &dispatched, &BTreeSet::new(), &faulted)
        .await;
    row.unexplained("jobs ran twice though neither the killed nor the cut-off host held them");
    if !alive {
        row.problems
            .push("the cut-off host's worker exited".to_owned());
    } else if !back {
        // Not a failure when the backlog was gone before the link came back.
        eprintln!(
            "{}: the cut-off host ran no job after its link healed",
            row.driver
        );
    }
    drop(reach);
    Ok(())
}
