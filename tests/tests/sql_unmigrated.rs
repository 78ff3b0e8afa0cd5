//! A RouteMQ table that `queue-migrate` has not upgraded (no `unstarted` or `priority` column):
//! prefetching falls back to reserving (the attempt counts at once, as before) and claims go by
//! id, nothing fails but a dispatch with a priority or a batch, which says to migrate; after the migration,
//! prefetches count no attempt until the job starts. Each test has a database of its own.

use std::time::Duration;

use routemq::driver::mysql::MySqlDriver;
use routemq::driver::postgres::PostgresDriver;
use routemq::driver::{Edit, NewJob, QueueDriver};
use routemq_tests::databases::{Server, TempDatabase, create_routemq_tables};
use routemq_tests::services::{mysql_url, postgres_url};

const PAYLOAD: &str = r#"{"class": "conformance.Record", "data": {"key": "unmigrated", "n": 1}, "max_tries": 3, "queue": "q"}"#;

fn job() -> NewJob {
    NewJob::new("q", PAYLOAD, Duration::ZERO)
}

/// On the RouteMQ table as it is, then after `migrate`.
async fn prefetch_before_and_after_migrating(driver: &dyn QueueDriver) {
    let queues = ["q".to_owned()];
    let mut urgent = job();
    urgent.priority = 5;
    let error = driver
        .push(&[urgent])
        .await
        .expect_err("no priority column to store it in");
    assert!(error.to_string().contains("queue-migrate"), "{error}");
    let error = routemq::batch::list(driver, 10)
        .await
        .expect_err("no batch tables yet");
    assert!(error.to_string().contains("queue-migrate"), "{error}");
    driver.push(&[job(), job()]).await.expect("push");
    let jobs = driver
        .prefetch(&queues, 1)
        .await
        .expect("prefetch falls back");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].prefetched, None, "reserved, not prefetched");
    assert_eq!(jobs[0].lease.attempts, 1, "the attempt counted at once");
    // Rewriting payloads (queue-reencrypt) reads RouteMQ's 32-bit ids too.
    let edit = |payload: &str| {
        if payload.contains(r#""n": 1"#) {
            Edit::Replace(payload.replace(r#""n": 1"#, r#""n": 2"#))
        } else {
            Edit::Keep
        }
    };
    let rewritten = driver.rewrite_payloads(&edit).await.expect("rewrite");
    assert_eq!((rewritten.jobs, rewritten.leased), (1, 1), "{rewritten:?}");
    driver.ack(&[jobs[0].lease.clone()]).await.expect("ack");

    driver.migrate().await.expect("one migrate adds the column");
    assert!(
        routemq::batch::list(driver, 10)
            .await
            .expect("listed")
            .is_empty()
    );
    let queued = driver.prefetch(&queues, 1).await.expect("prefetch");
    // This worker keeps reserving until it restarts; a new one prefetches.
    assert_eq!(queued[0].prefetched, None);
    assert_eq!(queued[0].lease.attempts, 1);
    assert!(
        driver
            .release(&queued[0].lease, Duration::ZERO, true)
            .await
            .expect("release")
    );
}

/// A driver connected after the migration prefetches.
async fn prefetches_once_migrated(driver: &dyn QueueDriver) {
    let jobs = driver
        .prefetch(&["q".to_owned()], 1)
        .await
        .expect("prefetch");
    let prefetched = jobs[0].prefetched.as_ref().expect("prefetched");
    assert_eq!(jobs[0].lease.attempts, 0, "no attempt used yet");
    assert_eq!(prefetched.started.attempts, 1);
    let started = driver
        .start(std::slice::from_ref(&jobs[0].lease))
        .await
        .expect("start");
    assert_eq!(started, [Some(prefetched.started.clone())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_prefetches_on_an_unmigrated_routemq_table() {
    let Some(base) = postgres_url() else { return };
    let database = TempDatabase::create(Server::Postgres, &base, "unmig_pg").await;
    let url = database.url();
    database
        .run(async move {
            create_routemq_tables(Server::Postgres, &url).await;
            let driver = PostgresDriver::connect(&url).await.expect("driver");
            prefetch_before_and_after_migrating(&driver).await;
            let fresh = PostgresDriver::connect(&url).await.expect("driver");
            prefetches_once_migrated(&fresh).await;
            fresh.migrate().await.expect("migrate again is a no-op");
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_prefetches_on_an_unmigrated_routemq_table() {
    let Some(base) = mysql_url() else { return };
    let database = TempDatabase::create(Server::Mysql, &base, "unmig_my").await;
    let url = database.url();
    database
        .run(async move {
            create_routemq_tables(Server::Mysql, &url).await;
            let driver = MySqlDriver::connect(&url).await.expect("driver");
            prefetch_before_and_after_migrating(&driver).await;
            let fresh = MySqlDriver::connect(&url).await.expect("driver");
            prefetches_once_migrated(&fresh).await;
            fresh.migrate().await.expect("migrate again is a no-op");
        })
        .await;
}
