//! The failed store: list, show, retry one and all, forget, flush, prune.

use std::time::Duration;

use crate::Harness;
use crate::jobs::AlwaysFail;

/// Every failed-store operation, on two queues.
pub async fn failed_store_operations(h: Harness) {
    let other = h.other_queue();
    for queue in [&h.queue, &h.queue, &other] {
        h.manager
            .push(AlwaysFail {
                key: h.key.clone(),
                permanent: true,
            })
            .on_queue(queue.clone())
            .await
            .expect("push");
    }
    let report = h
        .work(routemq::WorkerOptions {
            queues: vec![h.queue.clone(), other.clone()],
            ..h.options()
        })
        .await;
    assert_eq!(report.failed, 3);

    let mine = h.driver.failed_list(Some(&h.queue)).await.expect("list");
    assert_eq!(mine.len(), 2);
    assert_eq!(
        h.driver
            .failed_list(Some(&other))
            .await
            .expect("list")
            .len(),
        1
    );
    let all = h.driver.failed_list(None).await.expect("list all");
    assert!(
        all.iter()
            .filter(|f| f.queue == h.queue || f.queue == other)
            .count()
            == 3
    );

    // The newest of a queue, newest first, and no more than asked for.
    let recent = h
        .driver
        .failed_recent(Some(&h.queue), 1)
        .await
        .expect("recent");
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0], mine[1], "the newer of the two");
    let both = h
        .driver
        .failed_recent(Some(&h.queue), 10)
        .await
        .expect("recent");
    assert_eq!(both, [mine[1].clone(), mine[0].clone()]);
    assert!(
        h.driver
            .failed_recent(Some(&h.queue), 0)
            .await
            .expect("recent")
            .is_empty()
    );
    let everywhere = h.driver.failed_recent(None, 1).await.expect("recent");
    assert_eq!(everywhere.len(), 1);

    let shown = h
        .driver
        .failed_get(&mine[0].id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(shown, mine[0]);
    let age = std::time::SystemTime::now()
        .duration_since(shown.failed_at)
        .unwrap_or_default();
    assert!(
        age < Duration::from_secs(60),
        "failed_at is now-ish: {age:?}"
    );

    let new_id = h
        .driver
        .failed_retry(&mine[0].id)
        .await
        .expect("retry")
        .expect("retried");
    assert!(
        h.driver
            .failed_get(&mine[0].id)
            .await
            .expect("get")
            .is_none(),
        "retry removes it from the store"
    );
    assert_eq!(h.size().await, 1, "retry puts it back on its queue");
    let retried = h
        .driver
        .reserve(std::slice::from_ref(&h.queue), 1)
        .await
        .expect("reserve")
        .remove(0);
    assert_eq!(retried.lease.id, new_id);
    assert_eq!(retried.lease.attempts, 1, "attempts start again");
    assert_eq!(
        retried.payload, mine[0].payload,
        "the payload is pushed back unchanged"
    );
    h.driver.ack(&[retried.lease]).await.expect("ack");

    assert!(h.driver.failed_forget(&mine[1].id).await.expect("forget"));
    assert!(
        !h.driver
            .failed_forget(&mine[1].id)
            .await
            .expect("forget again")
    );
    assert!(
        h.driver
            .failed_retry(&mine[1].id)
            .await
            .expect("retry missing")
            .is_none()
    );

    assert_eq!(
        h.driver
            .failed_prune(Some(&h.queue), Duration::from_secs(3600))
            .await
            .expect("prune recent"),
        0
    );
    assert_eq!(
        h.driver
            .failed_retry_all(Some(&other))
            .await
            .expect("retry all"),
        1
    );
    assert_eq!(h.driver.size(&other).await.expect("size"), 1);
    let work = h
        .work(routemq::WorkerOptions {
            queues: vec![other.clone()],
            ..h.options()
        })
        .await;
    assert_eq!(work.failed, 1, "the retried job failed again");
    assert_eq!(h.driver.failed_flush(Some(&other)).await.expect("flush"), 1);
    assert!(
        h.driver
            .failed_list(Some(&other))
            .await
            .expect("list")
            .is_empty()
    );

    h.manager
        .push(AlwaysFail {
            key: h.key.clone(),
            permanent: true,
        })
        .on_queue(h.queue.clone())
        .await
        .expect("push");
    h.work(h.options()).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        h.driver
            .failed_prune(Some(&h.queue), Duration::from_secs(1))
            .await
            .expect("prune")
            >= 1
    );
    assert!(
        h.driver
            .failed_list(Some(&h.queue))
            .await
            .expect("list")
            .is_empty()
    );
}

/// Pushes `count` jobs that fail for good to `queue`.
async fn fail_jobs(h: &Harness, queue: &str, count: usize) {
    for _ in 0..count {
        h.manager
            .push(AlwaysFail {
                key: h.key.clone(),
                permanent: true,
            })
            .on_queue(queue.to_owned())
            .await
            .expect("push");
    }
}

async fn failed_count(h: &Harness, queue: &str) -> usize {
    h.driver.failed_list(Some(queue)).await.expect("list").len()
}

/// `failed_trim` keeps the newest failed jobs of a queue; a worker with `failed_max` or
/// `failed_retention` applies them to the queues it serves on its reaper passes, and leaves the
/// other queues' failed jobs alone.
pub async fn failed_store_is_trimmed_and_pruned(h: Harness) {
    let other = h.other_queue();
    fail_jobs(&h, &h.queue, 4).await;
    fail_jobs(&h, &other, 1).await;
    let both = routemq::WorkerOptions {
        queues: vec![h.queue.clone(), other.clone()],
        ..h.options()
    };
    assert_eq!(h.work(both).await.failed, 5);
    let before = h.driver.failed_list(Some(&h.queue)).await.expect("list");
    assert_eq!(
        h.driver.failed_trim(Some(&h.queue), 2).await.expect("trim"),
        2
    );
    let kept: Vec<String> = h
        .driver
        .failed_list(Some(&h.queue))
        .await
        .expect("list")
        .into_iter()
        .map(|f| f.id)
        .collect();
    let newest: Vec<String> = before[2..].iter().map(|f| f.id.clone()).collect();
    assert_eq!(kept, newest, "the newest two are kept");
    assert_eq!(
        failed_count(&h, &other).await,
        1,
        "another queue is untouched"
    );

    // A worker keeps at most one per served queue...
    fail_jobs(&h, &h.queue, 2).await;
    let running = |options: routemq::WorkerOptions| routemq::WorkerOptions {
        stop_when_empty: false,
        max_time: Some(Duration::from_millis(1_200)),
        ..options
    };
    let report = h
        .work(running(routemq::WorkerOptions {
            failed_max: Some(1),
            ..h.options()
        }))
        .await;
    assert_eq!(report.failed, 2);
    assert_eq!(failed_count(&h, &h.queue).await, 1);
    // ... and deletes those older than its retention.
    h.work(running(routemq::WorkerOptions {
        failed_retention: Some(Duration::from_millis(50)),
        ..h.options()
    }))
    .await;
    assert_eq!(failed_count(&h, &h.queue).await, 0);
    assert_eq!(
        failed_count(&h, &other).await,
        1,
        "a queue the worker does not serve"
    );
    assert_eq!(
        h.driver
            .failed_trim(Some(&other), 0)
            .await
            .expect("trim all"),
        1
    );
    assert_eq!(failed_count(&h, &other).await, 0);
}
