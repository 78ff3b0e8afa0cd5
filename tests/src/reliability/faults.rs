//! Fault injection against the real servers, aimed at this run's connections where the server
//! allows it.

use super::Target;

/// Drops client connections: Redis `CLIENT KILL TYPE normal` (on every node of a cluster),
/// PostgreSQL `pg_terminate_backend` for this run's `application_name`, MariaDB/MySQL `KILL` for
/// connections to the test database. Returns how many were dropped.
pub(super) async fn drop_connections(target: &Target, tag: &str) -> Result<u64, String> {
    match target.driver.as_str() {
        "redis" | "redis-cluster" => {
            let mut killed = 0;
            for node in target.location.split(',') {
                let client = redis::Client::open(node).map_err(|e| e.to_string())?;
                let mut admin = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| e.to_string())?;
                let dropped: i64 = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("normal")
                    .query_async(&mut admin)
                    .await
                    .map_err(|e| e.to_string())?;
                killed += u64::try_from(dropped).unwrap_or(0);
            }
            Ok(killed)
        }
        "postgres" => {
            let admin = routemq::sqlx::PgPool::connect(&target.location)
                .await
                .map_err(|e| e.to_string())?;
            let killed: Vec<bool> =
                routemq::sqlx::query_scalar("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1")
                    .bind(tag)
                    .fetch_all(&admin)
                    .await
                    .map_err(|e| e.to_string())?;
            admin.close().await;
            Ok(killed.into_iter().filter(|k| *k).count() as u64)
        }
        "mysql" => {
            let admin = routemq::sqlx::MySqlPool::connect(&target.location)
                .await
                .map_err(|e| e.to_string())?;
            let mut conn = admin.acquire().await.map_err(|e| e.to_string())?;
            let ids: Vec<i64> = routemq::sqlx::query_scalar(
                "SELECT id FROM information_schema.processlist WHERE db = DATABASE() AND id <> CONNECTION_ID() AND command <> 'Daemon'",
            )
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| e.to_string())?;
            let mut killed = 0;
            for id in ids {
                if routemq::sqlx::query(&format!("KILL CONNECTION {id}"))
                    .execute(&mut *conn)
                    .await
                    .is_ok()
                {
                    killed += 1;
                }
            }
            Ok(killed)
        }
        _ => Ok(0),
    }
}

/// Puts a record that is not UTF-8 on a Redis queue (or a cluster's, comma-separated node URLs
/// in `location`), as a broken producer could.
pub(super) async fn push_invalid_utf8(target: &Target, queue: &str) -> Result<(), String> {
    let record: Vec<u8> =
        [b"{\"id\": \"bad:1\", \"payload\": \"\xff\xfe\", \"attempts\": 0}".as_slice()].concat();
    let mut rpush = redis::cmd("RPUSH");
    if target.driver == "redis-cluster" {
        rpush
            .arg(format!("routemq-reliability:{{{queue}}}"))
            .arg(record);
        let nodes: Vec<&str> = target.location.split(',').collect();
        let client = redis::cluster::ClusterClient::new(nodes).map_err(|e| e.to_string())?;
        let mut con = client
            .get_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        return rpush.query_async(&mut con).await.map_err(|e| e.to_string());
    }
    rpush
        .arg(format!("routemq-reliability:{queue}"))
        .arg(record);
    let client = redis::Client::open(target.location.as_str()).map_err(|e| e.to_string())?;
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    rpush.query_async(&mut con).await.map_err(|e| e.to_string())
}
