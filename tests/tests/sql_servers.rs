//! PostgreSQL and MySQL beyond the conformance suite: transactional enqueue, several connection
//! pools (as several worker processes would have) on one database, and the RouteMQ schema.

use std::sync::Arc;

use routemq::WorkerReport;
use routemq::driver::QueueDriver;
use routemq::driver::mysql::MySqlDriver;
use routemq::driver::postgres::PostgresDriver;
use routemq::prelude::*;
use routemq_tests::jobs::Record;
use routemq_tests::ledger::{self, unique_key};
use routemq_tests::services::{mysql_url, postgres_url};
use routemq_tests::{Harness, harness::eventually};

async fn worker_runs_everything(driver: Arc<dyn QueueDriver>, queue: &str) -> WorkerReport {
    let options = WorkerOptions {
        queues: vec![queue.to_owned()],
        stop_when_empty: true,
        sleep: std::time::Duration::from_millis(50),
        ..WorkerOptions::default()
    };
    Worker::new(driver, "sql", options)
        .run()
        .await
        .expect("runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_transactional_enqueue_commits_with_the_transaction() {
    let Some(url) = postgres_url() else { return };
    let driver = Arc::new(PostgresDriver::connect(&url).await.expect("connects"));
    driver.migrate().await.expect("migrate");
    let key = unique_key("pg-tx");
    let queue = format!("t-{key}");

    let mut tx = driver.pool().begin().await.expect("begin");
    let id = Record {
        key: key.clone(),
        n: 1,
    }
    .dispatch()
    .on_queue(queue.clone())
    .within(&mut *tx)
    .await
    .expect("within");
    assert!(!id.is_empty());
    assert_eq!(
        driver.size(&queue).await.expect("size"),
        0,
        "invisible before commit"
    );
    tx.commit().await.expect("commit");
    assert_eq!(
        driver.size(&queue).await.expect("size"),
        1,
        "visible after commit"
    );

    let mut tx = driver.pool().begin().await.expect("begin");
    Record {
        key: key.clone(),
        n: 2,
    }
    .dispatch()
    .on_queue(queue.clone())
    .within(&mut *tx)
    .await
    .expect("within");
    let bulk = routemq::queue()
        .bulk([Record {
            key: key.clone(),
            n: 3,
        }])
        .on_queue(queue.clone())
        .within(&mut *tx)
        .await
        .expect("bulk");
    assert_eq!(bulk.len(), 1);
    tx.rollback().await.expect("rollback");
    assert_eq!(
        driver.size(&queue).await.expect("size"),
        1,
        "rolled-back jobs never existed"
    );

    let report = worker_runs_everything(driver, &queue).await;
    assert_eq!(report.succeeded, 1);
    let ran: Vec<u64> = ledger::of(&key, "run").iter().map(|e| e.n).collect();
    assert_eq!(ran, [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_transactional_enqueue_commits_with_the_transaction() {
    let Some(url) = mysql_url() else { return };
    let driver = Arc::new(MySqlDriver::connect(&url).await.expect("connects"));
    driver.migrate().await.expect("migrate");
    let key = unique_key("my-tx");
    let queue = format!("t-{key}");

    let mut tx = driver.pool().begin().await.expect("begin");
    Record {
        key: key.clone(),
        n: 1,
    }
    .dispatch()
    .on_queue(queue.clone())
    .within(&mut *tx)
    .await
    .expect("within");
    assert_eq!(
        driver.size(&queue).await.expect("size"),
        0,
        "invisible before commit"
    );
    tx.commit().await.expect("commit");
    assert_eq!(driver.size(&queue).await.expect("size"), 1);

    let mut tx = driver.pool().begin().await.expect("begin");
    Record {
        key: key.clone(),
        n: 2,
    }
    .dispatch()
    .on_queue(queue.clone())
    .within(&mut *tx)
    .await
    .expect("within");
    tx.rollback().await.expect("rollback");
    assert_eq!(driver.size(&queue).await.expect("size"), 1);

    let report = worker_runs_everything(driver, &queue).await;
    assert_eq!(report.succeeded, 1);
    assert_eq!(
        ledger::of(&key, "run")
            .iter()
            .map(|e| e.n)
            .collect::<Vec<_>>(),
        [1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_pools_never_double_deliver() {
    let Some(url) = postgres_url() else { return };
    let first = Arc::new(PostgresDriver::connect(&url).await.expect("connects"));
    let second = Arc::new(PostgresDriver::connect(&url).await.expect("connects"));
    routemq_tests::pools::two_pools_never_double_deliver(first, second, "pg-pools", 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_two_pools_never_double_deliver() {
    let Some(url) = mysql_url() else { return };
    let first = Arc::new(MySqlDriver::connect(&url).await.expect("connects"));
    let second = Arc::new(MySqlDriver::connect(&url).await.expect("connects"));
    routemq_tests::pools::two_pools_never_double_deliver(first, second, "my-pools", 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_notify_wakes_an_idle_worker_at_once() {
    let Some(url) = postgres_url() else { return };
    let driver: Arc<dyn QueueDriver> =
        Arc::new(PostgresDriver::connect(&url).await.expect("connects"));
    let producer = Arc::new(
        PostgresDriver::connect(&url)
            .await
            .expect("a second pool, as another process"),
    );
    let h = Harness::new(
        move || {
            let d = Arc::clone(&driver);
            async move { Some(d) }
        },
        "pg-notify",
    )
    .await
    .expect("harness");
    // A long poll interval: only NOTIFY can wake the worker quickly.
    let options = WorkerOptions {
        sleep: std::time::Duration::from_secs(30),
        stop_when_empty: false,
        max_jobs: Some(1),
        ..h.options()
    };
    let worker = tokio::spawn(h.worker(options).run());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let manager = QueueManager::new(routemq::Settings::default());
    manager.register("pg2", producer);
    let sent = std::time::Instant::now();
    manager
        .push(Record {
            key: h.key.clone(),
            n: 1,
        })
        .on_connection("pg2")
        .on_queue(h.queue.clone())
        .await
        .expect("push");
    assert!(
        eventually(std::time::Duration::from_secs(5), || !ledger::of(
            &h.key, "run"
        )
        .is_empty())
        .await
    );
    let latency = ledger::of(&h.key, "run")[0].at.duration_since(sent);
    assert!(
        latency < std::time::Duration::from_secs(2),
        "woken by NOTIFY, not the 30 s poll: {latency:?}"
    );
    worker.await.expect("joins").expect("runs");
}

/// A claim rules out sorting for itself alone (on connections of the driver's own): a pool shared
/// with the application keeps PostgreSQL's settings, and claims still go by priority, then FIFO.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_claim_leaves_a_shared_pool_as_it_was() {
    let Some(url) = postgres_url() else { return };
    let pool = routemq::sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("connects");
    let jit_before: String = routemq::sqlx::query_scalar("SHOW jit")
        .fetch_one(&pool)
        .await
        .expect("show");
    let driver = Arc::new(PostgresDriver::from_pool(pool.clone()));
    driver.migrate().await.expect("migrate");
    let manager = QueueManager::new(routemq::Settings::default());
    manager.register("pg", driver.clone());
    let key = unique_key("pg-claim");
    let queue = format!("t-{key}");
    let mut ids = Vec::new();
    for n in 0..3 {
        let record = Record {
            key: key.clone(),
            n,
        };
        let dispatch = manager
            .push(record)
            .on_connection("pg")
            .on_queue(queue.clone());
        let priority = if n == 2 { 5 } else { 0 };
        ids.push(dispatch.priority(priority).await.expect("push"));
    }
    let claimed = driver
        .reserve(std::slice::from_ref(&queue), 2)
        .await
        .expect("reserve");
    let mut claimed: Vec<&str> = claimed.iter().map(|job| job.lease.id.as_str()).collect();
    claimed.sort_unstable();
    assert_eq!(
        claimed,
        [&ids[0], &ids[2]],
        "the prioritized job, then the oldest"
    );
    let sort: String = routemq::sqlx::query_scalar("SHOW enable_sort")
        .fetch_one(&pool)
        .await
        .expect("show");
    assert_eq!(sort, "on", "the claim's setting stayed off the shared pool");
    let jit: String = routemq::sqlx::query_scalar("SHOW jit")
        .fetch_one(&pool)
        .await
        .expect("show");
    assert_eq!(
        jit, jit_before,
        "the claim's setting stayed off the shared pool"
    );
}

/// A MySQL claim never holds a row of another queue. InnoDB locks the first record past a range
/// scan; a locking claim on an empty queue (every idle worker's poll) would lock the head job of
/// the queue after it in index order, and a claim there would skip it, finding nothing. Here
/// two pollers claim from an empty queue without pause while the next queue's only job is
/// claimed and given back 300 times: it must be found every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_claim_on_an_empty_queue_leaves_the_next_queues_head_free() {
    let Some(url) = mysql_url() else { return };
    let driver = Arc::new(MySqlDriver::connect(&url).await.expect("connects"));
    driver.migrate().await.expect("migrate");
    let key = unique_key("my-neighbour");
    let (empty, busy) = (format!("t-{key}-a"), format!("t-{key}-b"));
    let manager = QueueManager::new(routemq::Settings::default());
    manager.register("my", driver.clone());
    let id = manager
        .push(Record {
            key: key.clone(),
            n: 0,
        })
        .on_connection("my")
        .on_queue(busy.clone())
        .await
        .expect("push");
    let polling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut pollers = Vec::new();
    for _ in 0..2 {
        let (driver, empty, polling) = (driver.clone(), empty.clone(), polling.clone());
        pollers.push(tokio::spawn(async move {
            let mut polls = 0u32;
            while polling.load(std::sync::atomic::Ordering::Relaxed) {
                let got = driver
                    .reserve(std::slice::from_ref(&empty), 10)
                    .await
                    .expect("poll");
                assert!(got.is_empty(), "the polled queue is empty");
                polls += 1;
            }
            polls
        }));
    }
    let mut missed = 0;
    for _ in 0..300 {
        let got = driver
            .reserve(std::slice::from_ref(&busy), 1)
            .await
            .expect("reserve");
        let Some(job) = got.first() else {
            missed += 1;
            continue;
        };
        assert_eq!(job.lease.id, id);
        assert!(
            driver
                .release(&job.lease, std::time::Duration::ZERO, true)
                .await
                .expect("release")
        );
    }
    polling.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut polls = 0;
    for poller in pollers {
        polls += poller.await.expect("poller");
    }
    assert!(polls > 0, "the pollers ran");
    assert_eq!(
        missed, 0,
        "claims missed the only job {missed} times of 300 ({polls} polls beside)"
    );
}

/// MariaDB 11.6.2 and later turn `innodb_snapshot_isolation` on by default: a locking read of a
/// row changed since the transaction's snapshot fails there. A claim's unlocked read of its
/// candidates runs outside its transaction, so four claimers on two pools racing for one queue
/// with the setting on get every job once and never an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_racing_claims_never_fail_under_snapshot_isolation() {
    let Some(url) = mysql_url() else { return };
    let mut drivers = Vec::new();
    for _ in 0..2 {
        let pool = routemq::sqlx::mysql::MySqlPoolOptions::new()
            .max_connections(4)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    routemq::sqlx::query("SET SESSION innodb_snapshot_isolation = ON")
                        .execute(conn)
                        .await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .expect("connects with innodb_snapshot_isolation (MariaDB 10.6.18+)");
        drivers.push(Arc::new(
            MySqlDriver::from_pool(pool).await.expect("driver"),
        ));
    }
    drivers[0].migrate().await.expect("migrate");
    let key = unique_key("my-snapshot");
    let queue = format!("t-{key}");
    let manager = QueueManager::new(routemq::Settings::default());
    manager.register("my", drivers[0].clone());
    let total = 400;
    manager
        .bulk((0..total).map(|n| Record {
            key: key.clone(),
            n,
        }))
        .on_connection("my")
        .on_queue(queue.clone())
        .await
        .expect("bulk");
    let mut claimers = tokio::task::JoinSet::new();
    for driver in drivers.iter().cycle().take(4) {
        let (driver, queue) = (driver.clone(), queue.clone());
        claimers.spawn(async move {
            let mut ids = Vec::new();
            loop {
                let jobs = driver
                    .reserve(std::slice::from_ref(&queue), 5)
                    .await
                    .expect("a claim never fails");
                if jobs.is_empty() {
                    return ids;
                }
                let leases: Vec<_> = jobs.iter().map(|job| job.lease.clone()).collect();
                driver.ack(&leases).await.expect("ack");
                ids.extend(leases.into_iter().map(|lease| lease.id));
            }
        });
    }
    let mut claimed = Vec::new();
    while let Some(ids) = claimers.join_next().await {
        claimed.extend(ids.expect("claimer"));
    }
    let count = claimed.len();
    claimed.sort_unstable();
    claimed.dedup();
    assert_eq!((count, claimed.len()), (total as usize, total as usize));
}
