//! Leases: expiry and reaping, stale reservations, several workers, shutdown.

use std::collections::HashMap;
use std::time::Duration;

use routemq::WorkerOptions;
use routemq::driver::Failure;

use crate::Harness;
use crate::harness::eventually;
use crate::jobs::{LongRunning, Record, Work};
use crate::ledger;

/// A job reserved by a worker that died is reaped after the visibility timeout and runs again.
pub async fn expired_lease_is_reaped_and_rerun(h: Harness) {
    h.push(Record {
        key: h.key.clone(),
        n: 1,
    })
    .await;
    let crashed = h
        .driver
        .reserve(std::slice::from_ref(&h.queue), 1)
        .await
        .expect("reserve");
    assert_eq!(crashed.len(), 1, "a 'crashed' worker holds the job");
    let options = routemq::WorkerOptions {
        visibility_timeout: Duration::from_secs(1),
        stop_when_empty: false,
        max_jobs: Some(1),
        ..h.options()
    };
    let report = h.work(options).await;
    assert_eq!(report.succeeded, 1);
    let runs = ledger::of(&h.key, "run");
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0].attempt, 2,
        "the crashed reservation counted as attempt 1"
    );
    assert_eq!(h.size().await, 0);
}

/// An expired lease with no tries left goes to the failed store instead of running again.
pub async fn reaper_fails_jobs_out_of_tries(h: Harness) {
    let queues = [h.queue.clone()];
    h.push(crate::jobs::Panicky { key: h.key.clone() }).await; // max_tries = 2
    h.driver.reserve(&queues, 1).await.expect("reserve");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reaped = h
        .driver
        .reap(&queues, Duration::from_secs(1), None, &h.connection)
        .await
        .expect("reap");
    assert_eq!((reaped.requeued, reaped.failed), (1, 0));
    h.driver
        .reserve(&queues, 1)
        .await
        .expect("second reservation (attempt 2 of 2)");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reaped = h
        .driver
        .reap(&queues, Duration::from_secs(1), None, &h.connection)
        .await
        .expect("reap");
    assert_eq!((reaped.requeued, reaped.failed), (0, 1));
    let stored = h.driver.failed_list(Some(&h.queue)).await.expect("list");
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].connection, h.connection,
        "the worker's connection name"
    );
    assert!(
        stored[0]
            .exception
            .contains("Job reservation expired after 1s visibility timeout"),
        "{}",
        stored[0].exception
    );
    assert_eq!(h.size().await, 0);
    assert!(
        ledger::events(&h.key).is_empty(),
        "the reaper runs no handler"
    );
}

/// After a lease is reaped and the job reserved again, the first holder can neither ack, release,
/// fail nor extend it.
pub async fn stale_lease_cannot_settle_a_newer_reservation(h: Harness) {
    let queues = [h.queue.clone()];
    h.push(Record {
        key: h.key.clone(),
        n: 1,
    })
    .await;
    let stale = h
        .driver
        .reserve(&queues, 1)
        .await
        .expect("reserve")
        .remove(0)
        .lease;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.driver
        .reap(&queues, Duration::from_secs(1), None, &h.connection)
        .await
        .expect("reap");
    let fresh = h
        .driver
        .reserve(&queues, 1)
        .await
        .expect("reserve")
        .remove(0)
        .lease;
    assert_eq!(
        (stale.id.as_str(), stale.attempts, fresh.attempts),
        (fresh.id.as_str(), 1, 2)
    );

    let failure = Failure {
        connection: h.connection.clone(),
        exception: "Failed: stale".to_owned(),
    };
    assert_eq!(
        h.driver
            .extend(std::slice::from_ref(&stale))
            .await
            .expect("extend"),
        0
    );
    assert!(
        !h.driver
            .release(&stale, Duration::ZERO, false)
            .await
            .expect("release")
    );
    assert!(!h.driver.fail(&stale, &failure).await.expect("fail"));
    h.driver
        .ack(std::slice::from_ref(&stale))
        .await
        .expect("ack");
    let stats = h.driver.stats(&h.queue).await.expect("stats");
    assert_eq!(
        (stats.reserved, stats.failed),
        (1, 0),
        "the fresh reservation is untouched: {stats:?}"
    );

    assert_eq!(
        h.driver
            .extend(std::slice::from_ref(&fresh))
            .await
            .expect("extend"),
        1
    );
    h.driver
        .ack(std::slice::from_ref(&fresh))
        .await
        .expect("ack");
    let stats = h.driver.stats(&h.queue).await.expect("stats");
    assert_eq!((stats.ready, stats.reserved), (0, 0));
}

/// Several workers on one queue: every job runs exactly once.
pub async fn no_two_workers_hold_the_same_job(h: Harness) {
    let total = 200u64;
    let jobs = (0..total).map(|n| Work {
        key: h.key.clone(),
        n,
    });
    h.manager
        .bulk(jobs)
        .on_queue(h.queue.clone())
        .await
        .expect("bulk");
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        workers.spawn(
            h.worker(routemq::WorkerOptions {
                concurrency: 8,
                ..h.options()
            })
            .run(),
        );
    }
    let mut succeeded = 0;
    while let Some(report) = workers.join_next().await {
        succeeded += report.expect("worker task").expect("worker ran").succeeded;
    }
    assert_eq!(succeeded, total);
    let mut runs: HashMap<u64, usize> = HashMap::new();
    for event in ledger::of(&h.key, "run") {
        *runs.entry(event.n).or_default() += 1;
    }
    assert_eq!(runs.len() as u64, total, "every job ran");
    let doubles: Vec<_> = runs.iter().filter(|(_, count)| **count > 1).collect();
    assert!(doubles.is_empty(), "jobs that ran twice: {doubles:?}");
    assert_eq!(h.size().await, 0);
}

/// A drain waits for the grace period, then releases unfinished jobs without using up an attempt.
pub async fn graceful_shutdown_releases_unfinished_jobs(h: Harness) {
    h.push(LongRunning {
        key: h.key.clone(),
        cooperative: false,
    })
    .await;
    let worker = h.worker(routemq::WorkerOptions {
        stop_when_empty: false,
        shutdown_grace: Duration::from_millis(300),
        ..h.options()
    });
    let shutdown = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());
    assert!(
        eventually(Duration::from_secs(10), || !ledger::of(&h.key, "run")
            .is_empty())
        .await,
        "the job started"
    );
    shutdown.drain();
    let report = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("stops")
        .expect("joins")
        .expect("runs");
    assert_eq!(
        (report.released, report.failed, report.retried),
        (1, 0, 0),
        "{report:?}"
    );
    let again = h
        .driver
        .reserve(std::slice::from_ref(&h.queue), 1)
        .await
        .expect("reserve");
    assert_eq!(again.len(), 1, "the job is back in its queue");
    assert_eq!(
        again[0].lease.attempts, 1,
        "the interrupted run did not use up an attempt"
    );
}

/// A job that watches its cancellation token stops when the drain starts and is released.
pub async fn cooperative_job_stops_on_shutdown_without_losing_an_attempt(h: Harness) {
    h.push(LongRunning {
        key: h.key.clone(),
        cooperative: true,
    })
    .await;
    let worker = h.worker(routemq::WorkerOptions {
        stop_when_empty: false,
        ..h.options()
    });
    let shutdown = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());
    assert!(
        eventually(Duration::from_secs(10), || !ledger::of(&h.key, "run")
            .is_empty())
        .await,
        "the job started"
    );
    shutdown.drain();
    let report = tokio::time::timeout(Duration::from_secs(4), running)
        .await
        .expect("stops well before the grace period")
        .expect("joins")
        .expect("runs");
    assert_eq!(report.released, 1, "{report:?}");
    assert_eq!(ledger::of(&h.key, "stopping").len(), 1);
    let again = h
        .driver
        .reserve(std::slice::from_ref(&h.queue), 1)
        .await
        .expect("reserve");
    assert_eq!(again[0].lease.attempts, 1);
}

/// `release` keeps the attempt count (a retry), or gives it back (`refund_attempt`, shutdown).
pub async fn release_keeps_attempts_and_refund_returns_one(h: Harness) {
    let queues = [h.queue.clone()];
    h.push(Record {
        key: h.key.clone(),
        n: 1,
    })
    .await;
    let first = h
        .driver
        .reserve(&queues, 1)
        .await
        .expect("reserve")
        .remove(0)
        .lease;
    assert!(
        h.driver
            .release(&first, Duration::ZERO, false)
            .await
            .expect("release")
    );
    let second = h
        .driver
        .reserve(&queues, 1)
        .await
        .expect("reserve")
        .remove(0)
        .lease;
    assert_eq!(second.attempts, 2);
    assert!(
        h.driver
            .release(&second, Duration::ZERO, true)
            .await
            .expect("release")
    );
    let third = h
        .driver
        .reserve(&queues, 1)
        .await
        .expect("reserve")
        .remove(0)
        .lease;
    assert_eq!(third.attempts, 2, "a refunded reservation does not count");
    assert!(
        h.driver
            .release(&third, Duration::from_secs(30), false)
            .await
            .expect("release")
    );
    let stats = h.driver.stats(&h.queue).await.expect("stats");
    assert_eq!((stats.ready, stats.delayed, stats.reserved), (0, 1, 0));
    assert!(
        h.driver
            .reserve(&queues, 1)
            .await
            .expect("reserve")
            .is_empty()
    );
}

/// A job whose last attempt died with its worker (reserved, never settled) ends in the failed
/// store, and `failed()` runs for it exactly once, although two workers' reapers race for it.
pub async fn failed_hook_runs_when_the_last_attempt_died(h: Harness) {
    let queues = [h.queue.clone()];
    h.push(crate::hostile::OneTry { key: h.key.clone() }).await;
    let dead = h.driver.reserve(&queues, 1).await.expect("reserve");
    assert_eq!(dead.len(), 1, "the dead worker's reservation");
    let options = WorkerOptions {
        visibility_timeout: Duration::from_millis(600),
        reaper_interval: Duration::from_millis(50),
        ..h.options()
    };
    let (first, second) = tokio::join!(h.work(options.clone()), h.work(options));
    assert_eq!(first.succeeded + second.succeeded, 0);
    assert!(ledger::of(&h.key, "run").is_empty(), "it never ran");
    let hooks = ledger::of(&h.key, "failed-expired");
    assert_eq!(
        hooks.len(),
        1,
        "failed() once: {:?}",
        ledger::events(&h.key)
    );
    assert!(ledger::of(&h.key, "failed-other").is_empty());
    let stored = h.driver.failed_list(Some(&h.queue)).await.expect("list");
    assert_eq!(stored.len(), 1);
}

/// `JobError::release(Duration::MAX)` keeps the job, delayed by at most ten years: no panic in
/// the driver, nothing lost, nothing left reserved.
pub async fn release_for_duration_max_keeps_the_job(h: Harness) {
    h.push(crate::hostile::ReleaseForever { key: h.key.clone() })
        .await;
    let report = h
        .work(routemq::WorkerOptions {
            max_jobs: Some(1),
            stop_when_empty: false,
            ..h.options()
        })
        .await;
    assert_eq!(report.retried, 1, "{report:?}");
    let stats = h.driver.stats(&h.queue).await.expect("stats");
    assert_eq!(
        (stats.ready, stats.reserved, stats.delayed),
        (0, 0, 1),
        "released for (at most) ten years, not lost or stuck reserved"
    );
    assert_eq!(ledger::of(&h.key, "run").len(), 1);
}
