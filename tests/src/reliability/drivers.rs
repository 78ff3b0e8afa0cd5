//! Which drivers the suite runs on, and how a worker process reaches the same store.

use std::sync::Arc;

use routemq::driver::QueueDriver;

/// One driver under test: its name and how to open it (the same way in every process).
#[derive(Debug, Clone)]
pub struct Target {
    /// `sqlite`, `postgres`, `mysql`, `redis` or `redis-cluster`.
    pub driver: String,
    /// A file path (SQLite), a server URL, or a cluster's node URLs, comma-separated.
    pub location: String,
}

impl Target {
    /// The targets for `--driver` (`all` or one name), from the test variables. A server without
    /// its variable is skipped, or an error under `ROUTEMQ_TEST_REQUIRE_SERVICES=1`.
    pub fn select(which: &str) -> Result<Vec<Target>, String> {
        let names: Vec<&str> = if which == "all" {
            vec!["sqlite", "postgres", "mysql", "redis", "redis-cluster"]
        } else {
            vec![which]
        };
        let required = std::env::var("ROUTEMQ_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
        let mut targets = Vec::new();
        for name in names {
            let location = match name {
                "sqlite" => {
                    let dir = std::env::temp_dir().join("routemq-reliability");
                    let _ = std::fs::create_dir_all(&dir);
                    Some(
                        dir.join(format!(
                            "run-{}-{:08x}.sqlite",
                            std::process::id(),
                            fastrand::u32(..)
                        ))
                        .to_string_lossy()
                        .into_owned(),
                    )
                }
                "postgres" => std::env::var("ROUTEMQ_TEST_POSTGRES_URL").ok(),
                "mysql" => std::env::var("ROUTEMQ_TEST_MYSQL_URL").ok(),
                "redis" => std::env::var("ROUTEMQ_TEST_REDIS_URL").ok(),
                // `start`: the six loopback nodes of `redis_cluster`, up for the whole run.
                "redis-cluster" => std::env::var(crate::redis_cluster::VARIABLE)
                    .ok()
                    .and_then(|_| crate::redis_cluster::cluster_nodes())
                    .map(|nodes| nodes.join(",")),
                other => {
                    return Err(format!(
                        "unknown driver `{other}` (sqlite, postgres, mysql, redis, redis-cluster or all)"
                    ));
                }
            };
            match location {
                Some(location) => targets.push(Target {
                    driver: name.to_owned(),
                    location,
                }),
                None if required => {
                    return Err(format!("{name}: its ROUTEMQ_TEST_* variable is not set"));
                }
                None if name == "redis-cluster" => {
                    eprintln!("skipped {name}: set {}", crate::redis_cluster::VARIABLE);
                }
                None => eprintln!(
                    "skipped {name}: set ROUTEMQ_TEST_{}_URL",
                    name.to_uppercase()
                ),
            }
        }
        Ok(targets)
    }

    /// The location with a Postgres `application_name`, so that fault injection can find this
    /// run's connections.
    pub fn tagged(&self, tag: &str) -> String {
        if self.driver == "postgres" {
            let separator = if self.location.contains('?') {
                '&'
            } else {
                '?'
            };
            format!("{}{separator}application_name={tag}", self.location)
        } else {
            self.location.clone()
        }
    }

    /// Opens the driver (creating tables on SQL servers).
    pub async fn open(driver: &str, location: &str) -> Result<Arc<dyn QueueDriver>, String> {
        let opened: Arc<dyn QueueDriver> = match driver {
            "sqlite" => Arc::new(
                routemq::driver::sqlite::SqliteDriver::open(location)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
            "postgres" => Arc::new(
                routemq::driver::postgres::PostgresDriver::connect(location)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
            "mysql" => Arc::new(
                routemq::driver::mysql::MySqlDriver::connect(location)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
            "redis" => {
                let layout = routemq::driver::redis::KeyLayout::new("routemq-reliability:", false);
                Arc::new(
                    routemq::driver::redis::RedisDriver::connect(location, layout)
                        .await
                        .map_err(|e| e.to_string())?,
                )
            }
            "redis-cluster" => {
                let layout = routemq::driver::redis::KeyLayout::new("routemq-reliability:", true);
                let nodes: Vec<&str> = location.split(',').collect();
                Arc::new(
                    routemq::driver::redis::RedisDriver::connect_cluster(&nodes, layout)
                        .await
                        .map_err(|e| e.to_string())?,
                )
            }
            other => return Err(format!("unknown driver {other}")),
        };
        opened.migrate().await.map_err(|e| e.to_string())?;
        Ok(opened)
    }
}
