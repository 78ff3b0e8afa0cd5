//! Test servers: their URLs come from environment variables, and a test without its server says
//! so plainly ("skipped: set X"), or fails under `ROUTEMQ_TEST_REQUIRE_SERVICES=1` (CI).

use std::io::Write;

/// The URL in `var`, or `None` after printing why the test is skipped.
///
/// # Panics
/// When the variable is unset and `ROUTEMQ_TEST_REQUIRE_SERVICES=1`.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            let required = std::env::var("ROUTEMQ_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "{var} is not set, and ROUTEMQ_TEST_REQUIRE_SERVICES=1 requires the service"
            );
            // Written to the real stderr (not captured by the test harness) so that skips are visible.
            let _ = writeln!(
                std::io::stderr(),
                "skipped: set {var} to run this test against a real server"
            );
            None
        }
    }
}

/// The test Redis URL (`ROUTEMQ_TEST_REDIS_URL`).
pub fn redis_url() -> Option<String> {
    service_url("ROUTEMQ_TEST_REDIS_URL")
}

/// The test PostgreSQL URL (`ROUTEMQ_TEST_POSTGRES_URL`).
pub fn postgres_url() -> Option<String> {
    service_url("ROUTEMQ_TEST_POSTGRES_URL")
}

/// The test MySQL/MariaDB URL (`ROUTEMQ_TEST_MYSQL_URL`).
pub fn mysql_url() -> Option<String> {
    service_url("ROUTEMQ_TEST_MYSQL_URL")
}

/// Deletes every key under `prefix` on the Redis at `url` (a test's own keys), ignoring errors;
/// one at a time, since a cluster node refuses a `DEL` of keys in different slots.
pub async fn delete_redis_keys(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut con) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut con)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("DEL").arg(key).ignore();
        }
        let _: Result<(), _> = pipe.query_async(&mut con).await;
    }
}
