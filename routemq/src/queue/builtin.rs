//! The built-in connections, each configured from the environment on first use.
//!
//! | name | driver | configured by |
//! |---|---|---|
//! | `memory` | in-process | nothing |
//! | `sqlite` | SQLite file | `QUEUE_SQLITE_PATH`, or `DATABASE_URL=sqlite://path` |
//! | `postgres` | PostgreSQL | `DATABASE_URL`, or `DB_HOST`/`DB_PORT`/`DB_NAME`/`DB_USER`/`DB_PASSWORD` |
//! | `mysql` | MySQL / MariaDB | the same |
//! | `database` | RouteMQ's name: PostgreSQL, MySQL or SQLite | the kind of `DATABASE_URL`, else `DB_CONNECTION` (default `mysql`) |
//! | `redis` | Redis | `REDIS_URL`, or `REDIS_HOST`/`REDIS_PORT`/`REDIS_DB`/`REDIS_PASSWORD`/`REDIS_USERNAME` |
//! | `redis-cluster` | Redis Cluster | `REDIS_CLUSTER_NODES` |

use std::sync::Arc;

use crate::config::SqlKind;
use crate::driver::memory::MemoryDriver;
use crate::driver::{DriverError, QueueDriver};

/// The connection names compiled into this build.
pub(super) const NAMES: &[&str] = &[
    "memory",
    #[cfg(feature = "sqlite")]
    "sqlite",
    #[cfg(feature = "postgres")]
    "postgres",
    #[cfg(feature = "mysql")]
    "mysql",
    #[cfg(feature = "_sql")]
    "database",
    #[cfg(feature = "redis")]
    "redis",
    #[cfg(feature = "redis")]
    "redis-cluster",
];

/// Connects the built-in connection `name` with the environment's settings.
pub(super) async fn connect(name: &str) -> Result<Arc<dyn QueueDriver>, DriverError> {
    match name {
        "memory" => Ok(Arc::new(MemoryDriver::new())),
        "sqlite" => connect_sql(SqlKind::Sqlite, name).await,
        "postgres" => connect_sql(SqlKind::Postgres, name).await,
        "mysql" => connect_sql(SqlKind::Mysql, name).await,
        "database" => {
            let kind = crate::config::database_kind(crate::config::env_var)?;
            connect_sql(kind, name).await
        }
        #[cfg(feature = "redis")]
        "redis" => Ok(Arc::new(
            crate::driver::redis::RedisDriver::from_env().await?,
        )),
        #[cfg(feature = "redis")]
        "redis-cluster" => Ok(Arc::new(
            crate::driver::redis::RedisDriver::cluster_from_env().await?,
        )),
        other => Err(not_built(
            other,
            other.strip_suffix("-cluster").unwrap_or(other),
        )),
    }
}

async fn connect_sql(kind: SqlKind, name: &str) -> Result<Arc<dyn QueueDriver>, DriverError> {
    match kind {
        #[cfg(feature = "sqlite")]
        SqlKind::Sqlite => Ok(Arc::new(
            crate::driver::sqlite::SqliteDriver::from_env().await?,
        )),
        #[cfg(feature = "postgres")]
        SqlKind::Postgres => Ok(Arc::new(
            crate::driver::postgres::PostgresDriver::from_env().await?,
        )),
        #[cfg(feature = "mysql")]
        SqlKind::Mysql => Ok(Arc::new(
            crate::driver::mysql::MySqlDriver::from_env().await?,
        )),
        #[allow(unreachable_patterns)]
        other => Err(not_built(name, other.connection_name())),
    }
}

fn not_built(name: &str, feature: &str) -> DriverError {
    DriverError::Connect {
        target: name.to_owned(),
        source: format!(
            "this build has no {feature} driver (enable routemq's `{feature}` feature)"
        )
        .into(),
    }
}
