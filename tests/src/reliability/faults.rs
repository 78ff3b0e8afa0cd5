//! Fault injection against the real servers, aimed at this run's connections where the server
//! allows it.

use super::Target;

/// Drops client connections: Redis `CLIENT KILL TYPE normal`, PostgreSQL `pg_terminate_backend`
/// for this run's `application_name`, MariaDB/MySQL `KILL` for connections to the test database.
/// Returns how many were dropped.
pub(super) async fn drop_connections(target: &Target, tag: &str) -> Result<u64, String> {
    match target.driver.as_str() {
        "redis" => {
            let client =
                redis::Client::open(target.location.as_str()).map_err(|e| e.to_string())?;
            let mut admin = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| e.to_string())?;
            let killed: i64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("normal")
                .query_async(&mut admin)
                .await
                .map_err(|e| e.to_string())?;
            Ok(u64::try_from(killed).unwrap_or(0))
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

/// Puts a record that is not UTF-8 on a Redis queue, as a broken producer could.
pub(super) async fn push_invalid_utf8(url: &str, queue: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let record: Vec<u8> =
        [b"{\"id\": \"bad:1\", \"payload\": \"\xff\xfe\", \"attempts\": 0}".as_slice()].concat();
    redis::cmd("RPUSH")
        .arg(format!("routemq-reliability:{queue}"))
        .arg(record)
        .query_async::<()>(&mut con)
        .await
        .map_err(|e| e.to_string())
}
