//! Two connection pools on one store (as two worker processes would have), four workers: every
//! job runs exactly once. Shared by the SQLite, PostgreSQL and MySQL tests.

use std::collections::HashMap;
use std::sync::Arc;

use routemq::driver::QueueDriver;
use routemq::{Worker, WorkerOptions};

use crate::Harness;
use crate::jobs::Work;
use crate::ledger;

/// Pushes `total` jobs through `first`, drains them with two workers on each pool, and asserts
/// that every job ran exactly once and the queue is empty.
pub async fn two_pools_never_double_deliver(
    first: Arc<dyn QueueDriver>,
    second: Arc<dyn QueueDriver>,
    name: &str,
    total: u64,
) {
    let shared = Arc::clone(&first);
    let h = Harness::new(
        move || {
            let d = Arc::clone(&shared);
            async move { Some(d) }
        },
        name,
    )
    .await
    .expect("harness");
    h.manager
        .bulk((0..total).map(|n| Work {
            key: h.key.clone(),
            n,
        }))
        .on_queue(h.queue.clone())
        .await
        .expect("bulk");
    let mut workers = tokio::task::JoinSet::new();
    for (i, driver) in [first, second].into_iter().cycle().take(4).enumerate() {
        let options = WorkerOptions {
            concurrency: 8,
            ..h.options()
        };
        workers.spawn(Worker::new(driver, format!("pool-{i}"), options).run());
    }
    let mut succeeded = 0;
    while let Some(report) = workers.join_next().await {
        succeeded += report.expect("joins").expect("runs").succeeded;
    }
    assert_eq!(succeeded, total);
    let mut runs: HashMap<u64, usize> = HashMap::new();
    for event in ledger::of(&h.key, "run") {
        *runs.entry(event.n).or_default() += 1;
    }
    assert_eq!(runs.len() as u64, total, "every job ran");
    assert!(runs.values().all(|c| *c == 1), "a job ran twice");
    assert_eq!(h.size().await, 0);
}
