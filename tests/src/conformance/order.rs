//! Ordering, delays, bulk dispatch, stats and worker limits.

use std::collections::HashSet;
use std::time::Duration;

use crate::Harness;
use crate::jobs::Record;
use crate::ledger;

/// Jobs pushed one by one run in push order (one worker, concurrency 1).
pub async fn fifo_order(h: Harness) {
    for n in 0..20 {
        h.push(Record {
            key: h.key.clone(),
            n,
        })
        .await;
    }
    let report = h
        .work(routemq::WorkerOptions {
            concurrency: 1,
            ..h.options()
        })
        .await;
    assert_eq!(report.succeeded, 20);
    let order: Vec<u64> = ledger::of(&h.key, "run").iter().map(|e| e.n).collect();
    assert_eq!(order, (0..20).collect::<Vec<_>>());
    assert_eq!(h.size().await, 0);
}

/// A delayed job is invisible until due, then reserved.
pub async fn delayed_jobs_wait_for_their_time(h: Harness) {
    let queues = [h.queue.clone()];
    h.manager
        .push(Record {
            key: h.key.clone(),
            n: 1,
        })
        .on_queue(h.queue.clone())
        .delay(Duration::from_secs(2))
        .await
        .expect("later");
    h.push(Record {
        key: h.key.clone(),
        n: 2,
    })
    .await;
    assert_eq!(h.size().await, 2, "size counts ready and delayed jobs");

    let first = h.driver.reserve(&queues, 10).await.expect("reserve");
    assert_eq!(first.len(), 1, "only the ready job is visible");
    assert!(first[0].payload.contains("\"n\": 2"));
    let stats = h.driver.stats(&h.queue).await.expect("stats");
    assert_eq!((stats.ready, stats.delayed, stats.reserved), (0, 1, 1));
    let due = h
        .driver
        .next_due(&queues)
        .await
        .expect("next_due")
        .expect("a delayed job is pending");
    assert!(due <= Duration::from_secs(2), "{due:?}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        h.driver
            .reserve(&queues, 10)
            .await
            .expect("reserve")
            .is_empty(),
        "not due after 0.5 s"
    );
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let later = h.driver.reserve(&queues, 10).await.expect("reserve");
    assert_eq!(later.len(), 1, "due after 3.1 s");
    assert!(later[0].payload.contains("\"n\": 1"));
    assert!(
        later[0].payload.contains("\"delay\": 2"),
        "observability records the delay"
    );
}

/// More than one Redis push script's chunk (1,000), so chunking is exercised.
const BULK: u64 = 2_500;

/// `bulk` stores every job in one call, with distinct ids, and the worker runs them all.
pub async fn bulk_push_is_one_call_with_unique_ids(h: Harness) {
    let jobs = (0..BULK).map(|n| Record {
        key: h.key.clone(),
        n,
    });
    let ids = h
        .manager
        .bulk(jobs)
        .on_queue(h.queue.clone())
        .await
        .expect("bulk");
    assert_eq!(ids.len(), BULK as usize);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        BULK as usize,
        "ids are unique"
    );
    assert_eq!(h.size().await, BULK);
    let report = h.work(h.options()).await;
    assert_eq!(report.succeeded, BULK);
    let ran: HashSet<u64> = ledger::of(&h.key, "run").iter().map(|e| e.n).collect();
    assert_eq!(ran, (0..BULK).collect());
    assert_eq!(h.size().await, 0);
}

/// Stats count ready, reserved, delayed and failed jobs, and the oldest ready job's age.
pub async fn stats_count_every_state(h: Harness) {
    let queues = [h.queue.clone()];
    for n in 0..3 {
        h.push(Record {
            key: h.key.clone(),
            n,
        })
        .await;
    }
    h.manager
        .push(Record {
            key: h.key.clone(),
            n: 9,
        })
        .on_queue(h.queue.clone())
        .delay(Duration::from_secs(600))
        .await
        .expect("later");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reserved = h.driver.reserve(&queues, 1).await.expect("reserve");
    let failure = routemq::driver::Failure {
        connection: h.connection.clone(),
        exception: "Failed: test".to_owned(),
    };
    assert!(
        h.driver
            .fail(&reserved[0].lease, &failure)
            .await
            .expect("fail")
    );
    h.driver.reserve(&queues, 1).await.expect("reserve");

    let stats = h.driver.stats(&h.queue).await.expect("stats");
    assert_eq!(
        (stats.ready, stats.reserved, stats.delayed, stats.failed),
        (1, 1, 1, 1),
        "{stats:?}"
    );
    assert!(stats.oldest_ready_age_seconds >= 1.0, "{stats:?}");
    assert_eq!(h.size().await, 2, "size = ready + delayed");
    assert!(h.driver.queues().await.expect("queues").contains(&h.queue));
    let empty = h
        .driver
        .stats(&h.other_queue())
        .await
        .expect("stats of an unused queue");
    assert_eq!(
        (empty.ready, empty.reserved, empty.delayed, empty.failed),
        (0, 0, 0, 0)
    );
}

/// `max_jobs` stops the worker after that many jobs; the rest stay queued.
pub async fn max_jobs_limit_stops_the_worker(h: Harness) {
    for n in 0..5 {
        h.push(Record {
            key: h.key.clone(),
            n,
        })
        .await;
    }
    let report = h
        .work(routemq::WorkerOptions {
            max_jobs: Some(2),
            stop_when_empty: false,
            ..h.options()
        })
        .await;
    assert_eq!(report.processed, 2);
    assert_eq!(ledger::of(&h.key, "run").len(), 2);
    assert_eq!(h.size().await, 3);
}

/// Weighted queues (`--queue high:5,mid:2,low:1`): with every queue busy, jobs start in
/// proportion to the weights, not in strict order.
///
/// The order is random, so the sample is large enough for the bounds to sit about five standard
/// deviations from the expected shares (5/8, 2/8 and 1/8 of 200 starts: 125 ± 6.8, 50 ± 6.1,
/// 25 ± 4.7); with 80 starts they sat about 3 away and failed about once in 300 runs.
pub async fn weighted_queues_start_jobs_in_proportion(h: Harness) {
    const STARTS: u32 = 200;
    let queues: Vec<String> = ["high", "mid", "low"]
        .iter()
        .map(|q| format!("{}-{q}", h.queue))
        .collect();
    for (index, queue) in queues.iter().enumerate() {
        let jobs = (0..250).map(|i| Record {
            key: h.key.clone(),
            n: 1000 * index as u64 + i,
        });
        h.manager
            .bulk(jobs)
            .on_queue(queue.clone())
            .await
            .expect("dispatch");
    }
    let options = routemq::WorkerOptions {
        queues: queues.clone(),
        weights: vec![5, 2, 1],
        concurrency: 1,
        prefetch: Some(0),
        max_jobs: Some(u64::from(STARTS)),
        stop_when_empty: false,
        ..h.options()
    };
    let report = h.work(options).await;
    assert_eq!(report.succeeded, u64::from(STARTS));
    let mut started = [0u32; 3];
    for event in ledger::of(&h.key, "run") {
        started[(event.n / 1000) as usize] += 1;
    }
    let share = |i: usize| f64::from(started[i]) / f64::from(STARTS);
    assert!((0.45..=0.80).contains(&share(0)), "high: {started:?}");
    assert!((0.10..=0.40).contains(&share(1)), "mid: {started:?}");
    assert!((0.02..=0.25).contains(&share(2)), "low: {started:?}");
}
