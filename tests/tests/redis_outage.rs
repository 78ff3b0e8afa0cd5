//! Broker outages: Redis drops every client connection (`CLIENT KILL`) several times while a worker
//! drains a queue; the worker recovers by itself and every job completes. (Its own test binary:
//! `CLIENT KILL TYPE normal` would also cut other tests' connections.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use routemq::driver::QueueDriver;
use routemq::driver::redis::{KeyLayout, RedisDriver};
use routemq::{QueueManager, Settings, Worker, WorkerOptions};
use routemq_tests::jobs::Work;
use routemq_tests::ledger::{self, unique_key};
use routemq_tests::services::redis_url;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_recovers_when_redis_drops_its_connections() {
    let Some(url) = redis_url() else { return };
    let driver: Arc<dyn QueueDriver> = Arc::new(
        RedisDriver::connect(&url, KeyLayout::new("routemq-test:", false))
            .await
            .expect("connects"),
    );
    let manager = QueueManager::new(Settings::default());
    manager.register("redis", Arc::clone(&driver));
    let key = unique_key("outage");
    let queue = format!("t-{key}");
    let total = 2_000u64;
    manager
        .bulk((0..total).map(|n| Work {
            key: key.clone(),
            n,
        }))
        .on_connection("redis")
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
    let worker = tokio::spawn(Worker::new(Arc::clone(&driver), "redis", options).run());

    let admin = redis::Client::open(url.as_str()).expect("url");
    let mut kills = 0;
    let started = Instant::now();
    while kills < 4 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let mut con = admin
            .get_multiplexed_async_connection()
            .await
            .expect("admin connection");
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .query_async(&mut con)
            .await
            .expect("client kill");
        if killed > 0 {
            kills += 1;
        }
    }
    assert!(kills >= 2, "the outage was injected ({kills} kills)");

    let report = tokio::time::timeout(Duration::from_secs(120), worker)
        .await
        .expect("drains")
        .expect("joins")
        .expect("runs");
    let mut runs: HashMap<u64, usize> = HashMap::new();
    for event in ledger::of(&key, "run") {
        *runs.entry(event.n).or_default() += 1;
    }
    assert_eq!(runs.len() as u64, total, "every job ran ({report:?})");
    let duplicates = runs.values().filter(|c| **c > 1).count();
    // A job can run twice only if its acknowledgement was lost with a killed connection.
    assert!(duplicates < 50, "{duplicates} jobs ran more than once");
    assert_eq!(driver.size(&queue).await.expect("size"), 0);
    let stats = driver.stats(&queue).await.expect("stats");
    assert_eq!((stats.reserved, stats.failed), (0, 0), "{stats:?}");
}
