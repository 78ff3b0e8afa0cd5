//! Drains a queue while connections are dropped, and checks that every job completed: the core
//! of the broker-outage tests for every server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use routemq::driver::QueueDriver;
use routemq::{QueueManager, Settings, Worker, WorkerOptions};

use crate::jobs::Work;
use crate::ledger::{self, unique_key};

/// Pushes 1,000 jobs, runs a worker, calls `kill` (which drops connections and returns how many)
/// every 100 ms until three were dropped, and asserts that every job ran and nothing is left.
pub async fn drain_through_kills<F, Fut>(driver: Arc<dyn QueueDriver>, name: &str, kill: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    driver.migrate().await.expect("migrate");
    let manager = QueueManager::new(Settings::default());
    manager.register("db", Arc::clone(&driver));
    let key = unique_key(name);
    let queue = format!("t-{key}");
    let total = 1_000u64;
    manager
        .bulk((0..total).map(|n| Work {
            key: key.clone(),
            n,
        }))
        .on_connection("db")
        .on_queue(queue.clone())
        .await
        .expect("bulk");
    let options = WorkerOptions {
        queues: vec![queue.clone()],
        concurrency: 8,
        stop_when_empty: true,
        sleep: Duration::from_millis(50),
        heartbeat_interval: Duration::from_millis(200),
        reaper_interval: Duration::from_millis(500),
        visibility_timeout: Duration::from_secs(5),
        ..WorkerOptions::default()
    };
    let worker = tokio::spawn(Worker::new(Arc::clone(&driver), "db", options).run());
    let mut killed = 0;
    let started = Instant::now();
    while killed < 3 && started.elapsed() < Duration::from_secs(20) && !worker.is_finished() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        killed += kill().await;
    }
    assert!(killed > 0, "connections were terminated mid-run");
    let report = tokio::time::timeout(Duration::from_secs(120), worker)
        .await
        .expect("drains")
        .expect("joins")
        .expect("runs");
    let mut runs: HashMap<u64, usize> = HashMap::new();
    for event in ledger::of(&key, "run") {
        *runs.entry(event.n).or_default() += 1;
    }
    assert_eq!(
        runs.len() as u64,
        total,
        "every job ran ({report:?}, {killed} connections killed)"
    );
    assert_eq!(driver.size(&queue).await.expect("size"), 0);
    let stats = driver.stats(&queue).await.expect("stats");
    assert_eq!((stats.reserved, stats.failed), (0, 0), "{stats:?}");
}
