//! Broker outages: the server drops the worker's connections (Redis `CLIENT KILL`, PostgreSQL
//! `pg_terminate_backend`, MariaDB `KILL`) several times mid-run; the worker recovers by itself and
//! every job completes. (Its own test binary: the kills would cut other tests' connections.)

use std::sync::Arc;

use routemq::driver::mysql::MySqlDriver;
use routemq::driver::postgres::PostgresDriver;
use routemq::driver::redis::{KeyLayout, RedisDriver};
use routemq_tests::outage::drain_through_kills;
use routemq_tests::services::{mysql_url, postgres_url, redis_url};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_worker_recovers_when_its_connections_are_killed() {
    let Some(url) = redis_url() else { return };
    let driver = Arc::new(
        RedisDriver::connect(&url, KeyLayout::new("routemq-test:", false))
            .await
            .expect("connects"),
    );
    let admin = redis::Client::open(url.as_str()).expect("url");
    drain_through_kills(driver, "redis-outage", || {
        let admin = admin.clone();
        async move {
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
            u64::try_from(killed).unwrap_or(0)
        }
    })
    .await;
}
