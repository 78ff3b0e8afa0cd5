//! 64-bit ids on PostgreSQL and MariaDB: `queue-migrate` widens RouteMQ's 32-bit `id` columns
//! (keeping their rows), and every operation works past 2^31 (ids that `SERIAL` / `INT` could not
//! hold). Each test works in a database of its own, made for the run and dropped after it.

use std::time::Duration;

use routemq::driver::mysql::MySqlDriver;
use routemq::driver::postgres::PostgresDriver;
use routemq::driver::{Failure, NewJob, QueueDriver};
use routemq::sqlx::{self, Connection};
use routemq_tests::databases::{Server, TempDatabase, create_routemq_tables};
use routemq_tests::services::{mysql_url, postgres_url};

/// Beyond `i32::MAX`.
const FAR: i64 = 3_000_000_000;

const PAYLOAD: &str = r#"{"class": "conformance.Record", "data": {"key": "ids", "n": 1}, "max_tries": 3, "timeout": 60, "retry_after": 0, "queue": "ids"}"#;

fn job() -> NewJob {
    NewJob::new("ids", PAYLOAD, Duration::ZERO)
}

/// Push, reserve, extend, release, fail, retry from the failed store and ack, all with ids past
/// 2^31; every id the driver hands out is one it can act on.
async fn works_past_two_to_the_31(driver: &dyn QueueDriver) {
    let ids = driver.push(&[job(), job()]).await.expect("push");
    for id in &ids {
        assert!(id.parse::<i64>().expect("numeric") >= FAR, "{ids:?}");
    }
    let reserved = driver
        .reserve(&["ids".to_owned()], 2)
        .await
        .expect("reserve");
    assert_eq!(reserved.len(), 2);
    let leases: Vec<_> = reserved.iter().map(|j| j.lease.clone()).collect();
    assert_eq!(driver.extend(&leases).await.expect("extend"), 2);
    assert!(
        driver
            .release(&leases[0], Duration::ZERO, true)
            .await
            .expect("release")
    );
    let failure = Failure {
        connection: "ids".to_owned(),
        exception: "Failed: boom".to_owned(),
    };
    assert!(driver.fail(&leases[1], &failure).await.expect("fail"));
    let failed = driver.failed_list(Some("ids")).await.expect("failed");
    assert_eq!(failed.len(), 1);
    assert!(failed[0].id.parse::<i64>().expect("numeric") >= FAR);
    let retried = driver
        .failed_retry(&failed[0].id)
        .await
        .expect("retry")
        .expect("found");
    assert!(retried.parse::<i64>().expect("numeric") >= FAR);
    let again = driver
        .reserve(&["ids".to_owned()], 5)
        .await
        .expect("reserve");
    assert_eq!(again.len(), 2, "the released job and the retried one");
    let leases: Vec<_> = again.iter().map(|j| j.lease.clone()).collect();
    driver.ack(&leases).await.expect("ack");
    assert_eq!(driver.size("ids").await.expect("size"), 0);
    let stats = driver.stats("ids").await.expect("stats");
    assert_eq!(stats.reserved, 0, "acknowledged: {stats:?}");
    // A lease id that is not a row id is an error, not a silent skip.
    let mut bogus = leases[0].clone();
    bogus.id = "not-a-row".to_owned();
    assert!(driver.ack(&[bogus.clone()]).await.is_err());
    assert!(driver.release(&bogus, Duration::ZERO, false).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrate_widens_routemq_ids_and_ids_pass_two_to_the_31() {
    let Some(base) = postgres_url() else { return };
    let database = TempDatabase::create(Server::Postgres, &base, "ids_pg").await;
    let url = database.url();
    database
        .run(async move {
            create_routemq_tables(Server::Postgres, &url).await;
            let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
            sqlx::query(
                "INSERT INTO queue_jobs (queue, payload, attempts, available_at, created_at)
                 VALUES ('ids', 'kept', 0, now(), now())",
            )
            .execute(&mut conn)
            .await
            .expect("a RouteMQ row");
            let driver = PostgresDriver::connect(&url).await.expect("driver");
            driver.migrate().await.expect("migrate");
            for table in ["queue_jobs", "queue_failed_jobs"] {
                let kind: String = sqlx::query_scalar(
                    "SELECT data_type FROM information_schema.columns WHERE table_name = $1 AND column_name = 'id'",
                )
                .bind(table)
                .fetch_one(&mut conn)
                .await
                .expect("column");
                assert_eq!(kind, "bigint", "{table}");
                sqlx::query(&format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), {FAR})"
                ))
                .execute(&mut conn)
                .await
                .expect("setval past 2^31");
            }
            let kept: String = sqlx::query_scalar("SELECT payload FROM queue_jobs WHERE id = 1")
                .fetch_one(&mut conn)
                .await
                .expect("the RouteMQ row survived");
            assert_eq!(kept, "kept");
            sqlx::query("DELETE FROM queue_jobs")
                .execute(&mut conn)
                .await
                .expect("clear");
            driver.migrate().await.expect("migrate again is a no-op");
            works_past_two_to_the_31(&driver).await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_migrate_widens_routemq_ids_and_ids_pass_two_to_the_31() {
    let Some(base) = mysql_url() else { return };
    let database = TempDatabase::create(Server::Mysql, &base, "ids_my").await;
    let url = database.url();
    database
        .run(async move {
            create_routemq_tables(Server::Mysql, &url).await;
            let mut conn = sqlx::MySqlConnection::connect(&url).await.expect("connect");
            let driver = MySqlDriver::connect(&url).await.expect("driver");
            driver.migrate().await.expect("migrate");
            for table in ["queue_jobs", "queue_failed_jobs"] {
                let kind: String = sqlx::query_scalar(
                    "SELECT CAST(DATA_TYPE AS CHAR) FROM information_schema.COLUMNS
                     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = 'id'",
                )
                .bind(table)
                .fetch_one(&mut conn)
                .await
                .expect("column");
                assert_eq!(kind, "bigint", "{table}");
                sqlx::query(&format!("ALTER TABLE {table} AUTO_INCREMENT = {FAR}"))
                    .execute(&mut conn)
                    .await
                    .expect("past 2^31");
            }
            driver.migrate().await.expect("migrate again is a no-op");
            works_past_two_to_the_31(&driver).await;
        })
        .await;
}
