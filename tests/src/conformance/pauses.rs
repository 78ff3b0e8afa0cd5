//! Paused queues: workers stop reserving from them, producers keep enqueuing.

use std::time::Duration;

use routemq::queue::pause;

use crate::Harness;
use crate::jobs::Record;
use crate::ledger;

/// A worker serving a paused queue and an open one runs only the open one's jobs; once resumed,
/// the paused jobs run.
pub async fn paused_queues_are_not_reserved(h: Harness) {
    let other = h.other_queue();
    pause::pause(h.driver.as_ref(), &h.queue)
        .await
        .expect("pause");
    assert!(
        pause::is_paused(h.driver.as_ref(), &h.queue)
            .await
            .expect("paused?")
    );
    assert!(
        !pause::is_paused(h.driver.as_ref(), &other)
            .await
            .expect("paused?")
    );
    h.push(Record {
        key: h.key.clone(),
        n: 1,
    })
    .await;
    h.manager
        .push(Record {
            key: h.key.clone(),
            n: 2,
        })
        .on_queue(other.clone())
        .await
        .expect("dispatch");
    // --stop-when-empty does not wait for a paused queue.
    let options = routemq::WorkerOptions {
        queues: vec![h.queue.clone(), other.clone()],
        stop_when_empty: true,
        max_time: Some(Duration::from_secs(20)),
        ..h.options()
    };
    let started = std::time::Instant::now();
    let report = h.work(options.clone()).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped after {:?}",
        started.elapsed()
    );
    assert_eq!(report.succeeded, 1);
    let ran: Vec<u64> = ledger::of(&h.key, "run").iter().map(|e| e.n).collect();
    assert_eq!(ran, [2], "only the open queue's job ran");
    assert_eq!(
        h.size().await,
        1,
        "the paused queue still accepts and keeps jobs"
    );

    pause::resume(h.driver.as_ref(), &h.queue)
        .await
        .expect("resume");
    let report = h.work(options).await;
    assert_eq!(report.succeeded, 1);
    assert_eq!(h.size().await, 0);
}
