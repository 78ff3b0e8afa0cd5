//! Cancelling jobs by id: queued and delayed jobs are deleted, running ones stopped.

use std::time::{Duration, Instant};

use routemq::Dispatched;
use routemq::queue::cancel::{Cancellation, cancel};

use crate::harness::eventually;
use crate::jobs::{LongRunning, Record, UniqueUntilFinish};
use crate::{Harness, ledger};

/// A queued and a delayed job are deleted by id (through the driver and through the queue
/// manager); the job left runs; unknown ids are not found.
pub async fn cancelling_removes_queued_and_delayed_jobs(h: Harness) {
    let record = |n| Record {
        key: h.key.clone(),
        n,
    };
    let ready = h.push(record(1)).await;
    let kept = h.push(record(2)).await;
    let delayed = h
        .manager
        .later(Duration::from_secs(60), record(3))
        .on_queue(h.queue.clone())
        .await
        .expect("dispatch");
    assert_eq!(h.size().await, 3);

    let removed = Cancellation::Removed {
        queue: h.queue.clone(),
    };
    assert_eq!(
        cancel(h.driver.as_ref(), &ready).await.expect("cancel"),
        removed
    );
    assert_eq!(
        h.manager.cancel(&delayed).await.expect("cancel"),
        removed,
        "a delayed job, through the queue manager"
    );
    assert_eq!(
        cancel(h.driver.as_ref(), &ready).await.expect("cancel"),
        Cancellation::NotFound,
        "cancelled twice"
    );
    for unknown in ["999999999", "no-such-job", "t-nothing:1"] {
        assert_eq!(
            cancel(h.driver.as_ref(), unknown).await.expect("cancel"),
            Cancellation::NotFound,
            "{unknown}"
        );
    }
    assert_eq!(h.size().await, 1, "only the job not cancelled is stored");

    let report = h.work(h.options()).await;
    assert_eq!(report.succeeded, 1);
    let ran: Vec<String> = ledger::of(&h.key, "run")
        .into_iter()
        .map(|e| e.job_id)
        .collect();
    assert_eq!(ran, [kept]);
}

/// Running jobs, one that watches its token and one that does not, are stopped within a second
/// or two of `cancel` and end as cancelled: acknowledged, not retried, not in the failed store,
/// their cancellation signal cleared.
pub async fn cancelling_a_running_job_stops_it(h: Harness) {
    let cooperative = h
        .push(LongRunning {
            key: h.key.clone(),
            cooperative: true,
        })
        .await;
    let stubborn = h
        .push(LongRunning {
            key: h.key.clone(),
            cooperative: false,
        })
        .await;
    let worker = h.worker(h.options());
    let running = tokio::spawn(worker.run());
    assert!(
        eventually(Duration::from_secs(20), || ledger::of(&h.key, "run").len()
            == 2)
        .await,
        "both jobs started"
    );

    let asked = Instant::now();
    for id in [&cooperative, &stubborn] {
        assert_eq!(
            cancel(h.driver.as_ref(), id).await.expect("cancel"),
            Cancellation::Signalled {
                queue: h.queue.clone()
            }
        );
    }
    let report = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the worker stopped once its jobs were cancelled")
        .expect("joined")
        .expect("worker ran");
    let stopped = asked.elapsed();

    let stopping = ledger::of(&h.key, "stopping");
    assert_eq!(stopping.len(), 1, "the cooperative job saw its token fire");
    let fired = stopping[0].at.duration_since(asked);
    eprintln!(
        "{}: token fired {fired:?} and both jobs ended {stopped:?} after the cancel",
        h.driver.kind()
    );
    assert!(
        fired < Duration::from_secs(3),
        "the token fired {fired:?} after the cancel (the poll is every 500 ms)"
    );
    assert!(
        stopped < Duration::from_secs(6),
        "the jobs ended {stopped:?} after the cancel"
    );
    assert_eq!(report.cancelled, 2, "{report:?}");
    assert_eq!(report.failed + report.retried + report.succeeded, 0);
    assert_eq!(ledger::of(&h.key, "run").len(), 2, "neither job ran again");
    assert_eq!(h.size().await, 0);
    let stats = h.driver.stats(&h.queue).await.expect("stats");
    assert_eq!((stats.reserved, stats.failed), (0, 0), "{stats:?}");
    let signals: Vec<String> = [&cooperative, &stubborn]
        .map(|id| format!("cancel:{id}"))
        .to_vec();
    assert_eq!(
        h.driver.held_slots(&signals).await.expect("slots"),
        [false, false],
        "the cancellation signals are cleared once acted on"
    );
}

/// A job waiting in a worker's prefetch buffer when it is cancelled never runs; a cancelled
/// unique job gives its key back, so the same job can be dispatched again at once.
pub async fn cancelled_prefetched_and_unique_jobs(h: Harness) {
    let blocker = h
        .push(LongRunning {
            key: h.key.clone(),
            cooperative: true,
        })
        .await;
    let mut waiting = Vec::new();
    for n in 1..=3 {
        waiting.push(
            h.push(Record {
                key: h.key.clone(),
                n,
            })
            .await,
        );
    }
    let worker = h.worker(routemq::WorkerOptions {
        concurrency: 1,
        prefetch: Some(4),
        ..h.options()
    });
    let running = tokio::spawn(worker.run());
    assert!(
        eventually(Duration::from_secs(20), || !ledger::of(&h.key, "run")
            .is_empty())
        .await,
        "the blocker started"
    );
    // Give the reserver time to fill its buffer behind the blocker.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = cancel(h.driver.as_ref(), &waiting[1])
        .await
        .expect("cancel");
    assert_eq!(
        second,
        Cancellation::Signalled {
            queue: h.queue.clone()
        },
        "the job waits in the worker's prefetch buffer"
    );
    // Long enough for the poll to see the prefetched job's signal before it starts.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    cancel(h.driver.as_ref(), &blocker).await.expect("cancel");
    let report = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the worker stopped")
        .expect("joined")
        .expect("worker ran");
    let ran: Vec<u64> = ledger::of(&h.key, "run")
        .iter()
        .filter(|e| e.n > 0)
        .map(|e| e.n)
        .collect();
    assert_eq!(ran, [1, 3], "the cancelled job never ran: {report:?}");
    assert_eq!(report.cancelled, 2, "{report:?}");
    assert_eq!(report.succeeded, 2, "{report:?}");
    assert_eq!((report.failed, report.retried), (0, 0), "{report:?}");
    assert_eq!(h.size().await, 0);

    let unique = || UniqueUntilFinish {
        key: h.key.clone(),
        n: 9,
        millis: 0,
    };
    let first = h
        .manager
        .push(unique())
        .on_queue(h.queue.clone())
        .await
        .expect("dispatch");
    let Dispatched::Queued(id) = first else {
        panic!("the first unique dispatch queues: {first:?}")
    };
    assert!(matches!(
        h.manager
            .push(unique())
            .on_queue(h.queue.clone())
            .await
            .expect("dispatch"),
        Dispatched::Duplicate { .. }
    ));
    assert_eq!(
        cancel(h.driver.as_ref(), &id).await.expect("cancel"),
        Cancellation::Removed {
            queue: h.queue.clone()
        }
    );
    let again = h
        .manager
        .push(unique())
        .on_queue(h.queue.clone())
        .await
        .expect("dispatch");
    assert!(
        matches!(again, Dispatched::Queued(_)),
        "the key was given back: {again:?}"
    );
}
