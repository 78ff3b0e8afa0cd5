//! Delayed jobs kept apart from ready ones on the SQL drivers (routemq's `bands_sql`): a job
//! dispatched or released with a delay is stored in the scheduled band (`priority` = -1 - p), a
//! claim reads the ready band and the due scheduled rows and takes them by priority, then id,
//! and a claimed job gets its priority back. Tables without the split (RouteMQ's, before
//! `queue-migrate`; MySQL's before its due-time column) still take delayed jobs and run them
//! when due. What was stored is read back with plain SQL.

use std::time::Duration;

use routemq::driver::mysql::MySqlDriver;
use routemq::driver::postgres::PostgresDriver;
use routemq::driver::sqlite::SqliteDriver;
use routemq::driver::{NewJob, QueueDriver};
use routemq::sqlx::{self, Connection};
use routemq_tests::databases::{Server, TempDatabase, create_routemq_tables, with_fresh_database};
use routemq_tests::services::{mysql_url, postgres_url};
use routemq_tests::sqlite_files::fresh_path;

const QUEUE: &str = "bands";

fn job(n: u32, delay: Duration, priority: u8) -> NewJob {
    let payload = format!(
        r#"{{"class": "conformance.Record", "data": {{"key": "bands", "n": {n}}}, "max_tries": 3, "queue": "bands"}}"#
    );
    let mut job = NewJob::new(QUEUE, payload, delay);
    job.priority = priority;
    job
}

/// Plain SQL on the driver's database.
enum Raw {
    Postgres(String),
    Mysql(String),
    Sqlite(String),
}

impl Raw {
    /// The stored `priority` of job `id`.
    async fn priority(&self, id: &str) -> i64 {
        let id: i64 = id.parse().expect("numeric id");
        match self {
            Self::Postgres(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
                sqlx::query_scalar("SELECT CAST(priority AS BIGINT) FROM queue_jobs WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut conn)
                    .await
                    .expect("row")
            }
            Self::Mysql(url) => {
                let mut conn = sqlx::MySqlConnection::connect(url).await.expect("connect");
                sqlx::query_scalar("SELECT CAST(priority AS SIGNED) FROM queue_jobs WHERE id = ?")
                    .bind(id)
                    .fetch_one(&mut conn)
                    .await
                    .expect("row")
            }
            Self::Sqlite(url) => {
                let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
                sqlx::query_scalar("SELECT priority FROM queue_jobs WHERE id = ?")
                    .bind(id)
                    .fetch_one(&mut conn)
                    .await
                    .expect("row")
            }
        }
    }
}

fn queues() -> Vec<String> {
    vec![QUEUE.to_owned()]
}

/// The ids `reserve` hands out, in order.
async fn reserve(driver: &dyn QueueDriver, max: usize) -> Vec<routemq::driver::ReservedJob> {
    driver.reserve(&queues(), max).await.expect("reserve")
}

fn ids(jobs: &[routemq::driver::ReservedJob]) -> Vec<String> {
    jobs.iter().map(|job| job.lease.id.clone()).collect()
}

/// Delayed jobs wait in the scheduled band, ready ones are claimed past them, a due one is
/// claimed by priority, then id, against ready ones, and a release for later puts it back.
async fn delayed_jobs_wait_apart(driver: &dyn QueueDriver, raw: &Raw) {
    let later: Vec<NewJob> = (0..300)
        .map(|n| job(n, Duration::from_secs(3600), 0))
        .collect();
    let far = driver.push(&later).await.expect("push delayed");
    let ready = driver
        .push(&[job(1000, Duration::ZERO, 0), job(1001, Duration::ZERO, 0)])
        .await
        .expect("push ready");
    let soon = driver
        .push(&[job(2000, Duration::from_millis(300), 4)])
        .await
        .expect("push soon");
    assert_eq!(
        raw.priority(&far[0]).await,
        -1,
        "scheduled band, priority 0"
    );
    assert_eq!(raw.priority(&far[299]).await, -1);
    assert_eq!(raw.priority(&ready[0]).await, 0, "ready band");
    assert_eq!(
        raw.priority(&soon[0]).await,
        -5,
        "scheduled band, priority 4"
    );

    // Only the ready jobs are claimable, past 300 delayed ones with lower ids.
    let claimed = reserve(driver, 10).await;
    assert_eq!(ids(&claimed), ready);
    let due = driver.next_due(&queues()).await.expect("next due");
    let due = due.expect("a delayed job is waiting");
    assert!(due <= Duration::from_millis(300), "{due:?}");

    tokio::time::sleep(Duration::from_millis(400)).await;
    let claimed = reserve(driver, 10).await;
    assert_eq!(ids(&claimed), soon, "due: claimed from the scheduled band");
    assert_eq!(raw.priority(&soon[0]).await, 4, "its priority back");

    // Released for later: back to the scheduled band; released now: stays ready.
    let lease = claimed[0].lease.clone();
    assert!(
        driver
            .release(&lease, Duration::from_millis(200), false)
            .await
            .expect("release")
    );
    assert_eq!(raw.priority(&soon[0]).await, -5);
    assert!(reserve(driver, 10).await.is_empty(), "not due yet");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Due again, it goes before a ready job of the same priority dispatched after it (by id),
    // and after a ready job of a higher one.
    let newer = driver
        .push(&[job(3000, Duration::ZERO, 4), job(3001, Duration::ZERO, 9)])
        .await
        .expect("push");
    let claimed = reserve(driver, 1).await;
    assert_eq!(ids(&claimed), [newer[1].clone()]);
    let claimed = reserve(driver, 1).await;
    assert_eq!(ids(&claimed), soon);
    assert!(
        driver
            .release(&claimed[0].lease, Duration::ZERO, false)
            .await
            .expect("release")
    );
    assert_eq!(raw.priority(&soon[0]).await, 4, "released now: ready band");
    let claimed = reserve(driver, 5).await;
    assert_eq!(ids(&claimed), [soon[0].clone(), newer[0].clone()]);
    let stats = driver.stats(QUEUE).await.expect("stats");
    assert_eq!((stats.ready, stats.delayed), (0, 300), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_delayed_jobs_apart() {
    let path = fresh_path("bands");
    let path = path.to_str().expect("utf-8 path");
    let driver = SqliteDriver::open(path).await.expect("open");
    delayed_jobs_wait_apart(&driver, &Raw::Sqlite(format!("sqlite:{path}"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_delayed_jobs_apart() {
    with_fresh_database(Server::Postgres, "bands_pg", |driver, url| async move {
        delayed_jobs_wait_apart(driver.as_ref(), &Raw::Postgres(url)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_keeps_delayed_jobs_apart() {
    with_fresh_database(Server::Mysql, "bands_my", |driver, url| async move {
        delayed_jobs_wait_apart(driver.as_ref(), &Raw::Mysql(url)).await;
    })
    .await;
}

/// On a table without the split, a delayed job is stored as RouteMQ stores it (ready band, a
/// future due time) and runs when due; after `queue-migrate`, a new driver still finds it and
/// stores new delayed jobs apart. (RouteMQ's MySQL tables keep whole seconds: hence the delay of
/// 1.5 s and a second's slack.)
async fn delayed_jobs_without_the_split(driver: &dyn QueueDriver, migrated: &dyn QueueDriver) {
    let delay = Duration::from_millis(1500);
    let slack = Duration::from_secs(1);
    let pushed = driver
        .push(&[job(1, delay, 0)])
        .await
        .expect("a delayed push needs no migration");
    assert!(reserve(driver, 5).await.is_empty(), "not due yet");
    let due = driver.next_due(&queues()).await.expect("next due");
    assert!(due.expect("waiting") <= delay + slack, "{due:?}");
    tokio::time::sleep(delay + slack + Duration::from_millis(100)).await;
    let claimed = reserve(driver, 5).await;
    assert_eq!(ids(&claimed), pushed);
    assert!(
        driver
            .release(&claimed[0].lease, delay, false)
            .await
            .expect("release for later")
    );

    migrated.migrate().await.expect("migrate");
    let due = migrated.next_due(&queues()).await.expect("next due");
    assert!(
        due.expect("the unsplit row is seen") <= delay + slack,
        "{due:?}"
    );
    tokio::time::sleep(delay + slack + Duration::from_millis(100)).await;
    let claimed = reserve(migrated, 5).await;
    assert_eq!(
        ids(&claimed),
        pushed,
        "a row without the split runs when due"
    );
    migrated
        .ack(&[claimed[0].lease.clone()])
        .await
        .expect("ack");
}

/// [`delayed_jobs_without_the_split`] on RouteMQ's own tables in a database of its own; the
/// driver that migrated stores new delayed jobs apart.
async fn on_routemq_tables(server: Server, base: Option<String>, prefix: &str) {
    let Some(base) = base else { return };
    let database = TempDatabase::create(server, &base, prefix).await;
    let url = database.url();
    database
        .run(async move {
            create_routemq_tables(server, &url).await;
            let connect = || async {
                let driver: Box<dyn QueueDriver> = match server {
                    Server::Postgres => {
                        Box::new(PostgresDriver::connect(&url).await.expect("driver"))
                    }
                    Server::Mysql => Box::new(MySqlDriver::connect(&url).await.expect("driver")),
                };
                driver
            };
            let (driver, migrated) = (connect().await, connect().await);
            delayed_jobs_without_the_split(driver.as_ref(), migrated.as_ref()).await;
            let later = migrated
                .push(&[job(2, Duration::from_secs(60), 0)])
                .await
                .expect("push");
            let raw = match server {
                Server::Postgres => Raw::Postgres(url.clone()),
                Server::Mysql => Raw::Mysql(url.clone()),
            };
            assert_eq!(raw.priority(&later[0]).await, -1);
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_runs_delayed_jobs_on_an_unmigrated_table() {
    on_routemq_tables(Server::Postgres, postgres_url(), "bands_unmig_pg").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_runs_delayed_jobs_on_an_unmigrated_table() {
    on_routemq_tables(Server::Mysql, mysql_url(), "bands_unmig_my").await;
}

/// A MySQL table an earlier routemq migrated (priorities, no due-time column): delayed jobs stay
/// in the ready band, where claims find them by priority, until `queue-migrate` adds the column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_claims_before_the_due_time_column_is_added() {
    let Some(base) = mysql_url() else { return };
    let database = TempDatabase::create(Server::Mysql, &base, "bands_nodue_my").await;
    let url = database.url();
    database
        .run(async move {
            let driver = MySqlDriver::connect(&url).await.expect("driver");
            driver.migrate().await.expect("migrate");
            let mut conn = sqlx::MySqlConnection::connect(&url).await.expect("connect");
            sqlx::query("ALTER TABLE queue_jobs DROP INDEX routemq_queue_jobs_scheduled, DROP COLUMN routemq_due")
                .execute(&mut conn)
                .await
                .expect("as an earlier routemq left it");
            let earlier = MySqlDriver::connect(&url).await.expect("driver");
            let pushed = earlier
                .push(&[job(1, Duration::from_millis(200), 3), job(2, Duration::ZERO, 0)])
                .await
                .expect("push");
            assert_eq!(
                Raw::Mysql(url.clone()).priority(&pushed[0]).await,
                3,
                "kept in the ready band"
            );
            assert_eq!(ids(&reserve(&earlier, 5).await), [pushed[1].clone()]);
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(ids(&reserve(&earlier, 5).await), [pushed[0].clone()]);
            earlier.migrate().await.expect("migrate adds the column");
            let more = earlier
                .push(&[job(3, Duration::from_millis(100), 0)])
                .await
                .expect("push");
            assert_eq!(
                Raw::Mysql(url.clone()).priority(&more[0]).await,
                -1,
                "the migrating driver splits at once"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            let fresh = MySqlDriver::connect(&url).await.expect("driver");
            assert_eq!(ids(&reserve(&fresh, 5).await), more);
        })
        .await;
}
