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
