//! Priorities within a queue: higher first, FIFO among equals, kept by delayed, retried and
//! failed-then-retried jobs.

use std::time::Duration;

use crate::Harness;
use crate::jobs::{FailTimes, Prioritized, Record};
use crate::ledger;

/// The numbers of the jobs in the order they started.
fn started(h: &Harness) -> Vec<u64> {
    ledger::of(&h.key, "run").iter().map(|e| e.n).collect()
}

/// One job at a time: ready jobs start by priority (dispatch's `.priority()`, bulk's, the
/// type's `#[job(priority)]`), FIFO among equals; a delayed job takes its place by priority once
/// due.
pub async fn higher_priorities_start_first(h: Harness) {
    let record = |n| Record {
        key: h.key.clone(),
        n,
    };
    let push = |n, priority| {
        h.manager
            .push(record(n))
            .on_queue(h.queue.clone())
            .priority(priority)
    };
    push(1, 0).await.expect("dispatch");
    h.manager
        .bulk([record(2), record(3)])
        .on_queue(h.queue.clone())
        .priority(5)
        .await
        .expect("dispatch");
    push(4, 0).await.expect("dispatch");
    push(5, 9).await.expect("dispatch");
    h.manager
        .later(Duration::from_millis(300), record(6))
        .on_queue(h.queue.clone())
        .priority(9)
        .await
        .expect("dispatch");
    h.manager
        .push(Prioritized {
            key: h.key.clone(),
            n: 7,
            fail: false,
        })
        .on_queue(h.queue.clone())
        .await
        .expect("dispatch");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let one_at_a_time = routemq::WorkerOptions {
        concurrency: 1,
        prefetch: Some(0),
        ..h.options()
    };
    let report = h.work(one_at_a_time.clone()).await;
    assert_eq!(report.succeeded, 7, "{report:?}");
    assert_eq!(started(&h), [5, 6, 7, 2, 3, 1, 4]);

    // A failed job retried from the failed store keeps its priority.
    h.manager
        .push(Prioritized {
            key: h.key.clone(),
            n: 8,
            fail: true,
        })
        .on_queue(h.queue.clone())
        .await
        .expect("dispatch");
    let report = h.work(one_at_a_time.clone()).await;
    assert_eq!(report.failed, 1, "{report:?}");
    push(9, 0).await.expect("dispatch");
    push(10, 0).await.expect("dispatch");
    let failed = h.driver.failed_list(Some(&h.queue)).await.expect("failed");
    assert_eq!(failed.len(), 1);
    h.driver
        .failed_retry(&failed[0].id)
        .await
        .expect("retry")
        .expect("retried");
    let report = h.work(one_at_a_time).await;
    assert_eq!((report.succeeded, report.failed), (2, 1), "{report:?}");
    assert_eq!(started(&h)[7..], [8, 8, 9, 10]);
}

/// A prioritized job put back after a failed attempt (a retry without delay) runs again before
/// the jobs of a lower priority that waited meanwhile.
pub async fn retried_jobs_keep_their_priority(h: Harness) {
    for n in 1..=2 {
        h.manager
            .push(Record {
                key: h.key.clone(),
                n,
            })
            .on_queue(h.queue.clone())
            .await
            .expect("dispatch");
    }
    let failing = h
        .manager
        .push(FailTimes {
            key: h.key.clone(),
            fail_times: 1,
        })
        .on_queue(h.queue.clone())
        .priority(7)
        .await
        .expect("dispatch");
    let report = h
        .work(routemq::WorkerOptions {
            concurrency: 1,
            prefetch: Some(0),
            ..h.options()
        })
        .await;
    assert_eq!((report.succeeded, report.retried), (3, 1), "{report:?}");
    let order: Vec<(String, u32)> = ledger::of(&h.key, "run")
        .into_iter()
        .map(|e| {
            (
                if e.job_id == failing {
                    "failing".to_owned()
                } else {
                    e.n.to_string()
                },
                e.attempt,
            )
        })
        .collect();
    let expected = [("failing", 1), ("failing", 2), ("1", 1), ("2", 1)]
        .map(|(who, attempt)| (who.to_owned(), attempt));
    assert_eq!(order, expected);
}
