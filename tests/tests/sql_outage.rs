//! Database outages: the server terminates the worker's connections (`pg_terminate_backend`,
//! MariaDB `KILL`) several times mid-run; the worker recovers by itself and every job completes.
//! (Its own test binary: the kills would cut other tests' connections.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use routemq::driver::QueueDriver;
use routemq::driver::mysql::MySqlDriver;
use routemq::driver::postgres::PostgresDriver;
use routemq::{QueueManager, Settings, Worker, WorkerOptions};
use routemq_tests::jobs::Work;
use routemq_tests::ledger::{self, unique_key};
use routemq_tests::services::{mysql_url, postgres_url};

async fn drain_through_kills<F, Fut>(driver: Arc<dyn QueueDriver>, name: &str, kill: F)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_worker_recovers_from_terminated_connections() {
    let Some(url) = postgres_url() else { return };
    let app = format!("routemq-outage-{}", std::process::id());
    let separator = if url.contains('?') { '&' } else { '?' };
    let driver = Arc::new(
        PostgresDriver::connect(&format!("{url}{separator}application_name={app}"))
            .await
            .expect("connects"),
    );
    let admin = routemq::sqlx::PgPool::connect(&url)
        .await
        .expect("admin pool");
    drain_through_kills(driver, "pg-outage", || {
        let admin = admin.clone();
        let app = app.clone();
        async move {
            let killed: Vec<bool> = routemq::sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            )
            .bind(&app)
            .fetch_all(&admin)
            .await
            .expect("terminate");
            killed.into_iter().filter(|k| *k).count() as u64
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_worker_recovers_from_killed_connections() {
    let Some(url) = mysql_url() else { return };
    let driver = Arc::new(MySqlDriver::connect(&url).await.expect("connects"));
    let admin = routemq::sqlx::MySqlPool::connect(&url)
        .await
        .expect("admin pool");
    drain_through_kills(driver, "my-outage", || {
        let admin = admin.clone();
        async move {
            let mut conn = admin.acquire().await.expect("admin connection");
            let ids: Vec<i64> = routemq::sqlx::query_scalar(
                "SELECT id FROM information_schema.processlist WHERE db = DATABASE() AND id <> CONNECTION_ID() AND command <> 'Daemon'",
            )
            .fetch_all(&mut *conn)
            .await
            .expect("processlist");
            let mut killed = 0;
            for id in ids {
                if routemq::sqlx::query(&format!("KILL CONNECTION {id}")).execute(&mut *conn).await.is_ok() {
                    killed += 1;
                }
            }
            killed
        }
    })
    .await;
}
