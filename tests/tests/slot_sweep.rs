//! The slot sweep on PostgreSQL and MySQL, each in a database of its own: expired holders and the
//! head rows of names with no holder left are deleted; live ones stay.

use std::time::Duration;

use routemq::driver::QueueDriver;
use routemq::driver::mysql::MySqlDriver;
use routemq::driver::postgres::PostgresDriver;
use routemq_tests::databases::{Server, TempDatabase};
use routemq_tests::services::{mysql_url, postgres_url};

/// Three names used once and left to expire, one still held: the sweep leaves only the held
/// one's rows (its holder and its head).
async fn sweep_leaves_only_live_names(driver: &dyn QueueDriver) -> u64 {
    driver.migrate().await.expect("migrate");
    for i in 0..3 {
        let slot = driver
            .acquire_slot(&format!("once-{i}"), "h", 1, Duration::from_millis(200))
            .await
            .expect("acquire");
        assert!(slot.taken);
    }
    assert!(
        driver
            .acquire_slot("live", "h", 1, Duration::from_secs(60))
            .await
            .expect("acquire")
            .taken
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    let swept = driver.sweep_slots().await.expect("sweep");
    assert_eq!(swept, 3);
    // A swept name works as new, and the live one is still held.
    assert!(
        driver
            .acquire_slot("once-0", "again", 1, Duration::from_secs(60))
            .await
            .expect("again")
            .taken
    );
    assert!(
        !driver
            .acquire_slot("live", "other", 1, Duration::from_secs(60))
            .await
            .expect("live")
            .taken
    );
    swept
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sweep_deletes_expired_holders_and_empty_heads() {
    let Some(base) = postgres_url() else { return };
    let database = TempDatabase::create(Server::Postgres, &base, "sweep_pg").await;
    let url = database.url();
    database
        .run(async move {
            let driver = PostgresDriver::connect(&url).await.expect("connect");
            sweep_leaves_only_live_names(&driver).await;
            let names: Vec<String> =
                routemq::sqlx::query_scalar("SELECT name FROM queue_slots ORDER BY name, holder")
                    .fetch_all(driver.pool())
                    .await
                    .expect("rows");
            assert_eq!(names, ["live", "live", "once-0", "once-0"]);
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_sweep_deletes_expired_holders_and_empty_heads() {
    let Some(base) = mysql_url() else { return };
    let database = TempDatabase::create(Server::Mysql, &base, "sweep_my").await;
    let url = database.url();
    database
        .run(async move {
            let driver = MySqlDriver::connect(&url).await.expect("connect");
            sweep_leaves_only_live_names(&driver).await;
            let names: Vec<Vec<u8>> =
                routemq::sqlx::query_scalar("SELECT name FROM queue_slots ORDER BY name, holder")
                    .fetch_all(driver.pool())
                    .await
                    .expect("rows");
            let names: Vec<String> = names
                .into_iter()
                .map(|n| String::from_utf8_lossy(&n).into_owned())
                .collect();
            assert_eq!(names, ["live", "live", "once-0", "once-0"]);
            // Names compare byte for byte: case matters.
            assert!(
                driver
                    .acquire_slot("LIVE", "other", 1, Duration::from_secs(60))
                    .await
                    .expect("case")
                    .taken
            );
        })
        .await;
}
