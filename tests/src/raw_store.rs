//! Everything a store holds, as raw text, to search for what must never be stored (the plaintext
//! of an encrypted job): the SQLite file and its write-ahead log byte for byte, every row of the
//! SQL tables routemq writes, every value under a Redis key prefix.

use routemq::sqlx::Row;

use crate::process_env::Env;

fn var<'a>(env: &'a Env, name: &str) -> &'a str {
    env.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{name} is not in the environment"))
}

/// `$sql(pool, slot columns)` on the SQL store `env` points at (SQLite's database, not its
/// file), or `$redis(urls, prefix)` on Redis (a cluster's: every node's).
macro_rules! per_store {
    ($connection:expr, $env:expr, $sql:ident, $redis:ident) => {{
        let env = $env;
        match $connection {
            "sqlite" => {
                let url = format!("sqlite://{}", var(env, "QUEUE_SQLITE_PATH"));
                let pool = routemq::sqlx::SqlitePool::connect(&url)
                    .await
                    .expect("open the database");
                $sql(&pool, ["name", "holder"]).await
            }
            "postgres" => {
                let pool = routemq::sqlx::PgPool::connect(var(env, "DATABASE_URL"))
                    .await
                    .expect("connect");
                $sql(&pool, ["name", "holder"]).await
            }
            "mysql" => {
                let pool = routemq::sqlx::MySqlPool::connect(var(env, "DATABASE_URL"))
                    .await
                    .expect("connect");
                // Slot names and holders are VARBINARY there.
                $sql(&pool, ["CAST(name AS CHAR)", "CAST(holder AS CHAR)"]).await
            }
            "redis" => $redis(&[var(env, "REDIS_URL")], var(env, "REDIS_PREFIX")).await,
            "redis-cluster" => {
                let nodes: Vec<&str> = var(env, "REDIS_CLUSTER_NODES").split(',').collect();
                $redis(&nodes, var(env, "REDIS_PREFIX")).await
            }
            other => panic!("no store reader for {other}"),
        }
    }};
}

/// The raw contents of the store `env` points a process at (`connection` names its kind): for
/// SQLite the database file and its write-ahead log byte for byte, else [`rows`].
///
/// # Panics
/// When the store cannot be read.
pub async fn dump(connection: &str, env: &Env) -> String {
    if connection != "sqlite" {
        return rows(connection, env).await;
    }
    let path = var(env, "QUEUE_SQLITE_PATH");
    let mut bytes = std::fs::read(path).expect("read the database file");
    bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What the store holds now, as text: every text column of routemq's tables, or every value
/// under the Redis prefix. For SQLite its rows, not its file (a file keeps old versions of changed
/// rows in its free pages and its log until they are reused).
///
/// # Panics
/// When the store cannot be read.
pub async fn rows(connection: &str, env: &Env) -> String {
    per_store!(connection, env, sql_rows, redis_values)
}

/// Every text column of every table routemq writes (`slots`: the slot table's two columns, as
/// text).
async fn sql_rows<DB: routemq::sqlx::Database>(
    pool: &routemq::sqlx::Pool<DB>,
    slots: [&str; 2],
) -> String
where
    for<'c> &'c routemq::sqlx::Pool<DB>: routemq::sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as routemq::sqlx::Database>::Arguments<'q>: routemq::sqlx::IntoArguments<'q, DB>,
    for<'r> String: routemq::sqlx::Decode<'r, DB> + routemq::sqlx::Type<DB>,
    usize: routemq::sqlx::ColumnIndex<DB::Row>,
{
    let mut queries = vec![
        "SELECT payload FROM queue_jobs".to_owned(),
        "SELECT payload FROM queue_failed_jobs".to_owned(),
        "SELECT exception FROM queue_failed_jobs".to_owned(),
        "SELECT doc FROM queue_batches".to_owned(),
    ];
    queries.extend(slots.map(|column| format!("SELECT {column} FROM queue_slots")));
    let mut out = String::new();
    for query in &queries {
        let rows = routemq::sqlx::query(query)
            .fetch_all(pool)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        for row in rows {
            let text: String = row.try_get(0).expect("a text column");
            out.push_str(&text);
            out.push('\n');
        }
    }
    out
}

/// For each primary among `urls` (one server, or a cluster's nodes: a replica's keys are
/// copies), a connection to it and every key under `prefix` it holds.
async fn redis_keys(
    urls: &[&str],
    prefix: &str,
) -> Vec<(redis::aio::MultiplexedConnection, Vec<String>)> {
    let mut out = Vec::new();
    for url in urls {
        let client = redis::Client::open(*url).expect("redis url");
        let mut con = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let role: Vec<redis::Value> = redis::cmd("ROLE")
            .query_async(&mut con)
            .await
            .expect("role");
        if role.first() != Some(&redis::Value::BulkString(b"master".to_vec())) {
            continue;
        }
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut con)
            .await
            .expect("keys");
        out.push((con, keys));
    }
    out
}

/// Every value of every key under `prefix`, read by type.
async fn redis_values(urls: &[&str], prefix: &str) -> String {
    let mut out = String::new();
    for (con, keys) in redis_keys(urls, prefix).await {
        out.push_str(&keys.join("\n"));
        out.push_str(&redis_node_values(con, keys).await);
    }
    out
}

async fn redis_node_values(
    mut con: redis::aio::MultiplexedConnection,
    keys: Vec<String>,
) -> String {
    let mut out = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut con)
            .await
            .expect("type");
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![
                redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut con)
                    .await
                    .expect("get"),
            ],
            "list" => redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(&mut con)
                .await
                .expect("lrange"),
            "zset" => redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(&mut con)
                .await
                .expect("zrange"),
            "hash" => redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut con)
                .await
                .expect("hgetall"),
            "set" => redis::cmd("SMEMBERS")
                .arg(&key)
                .query_async(&mut con)
                .await
                .expect("smembers"),
            _ => Vec::new(),
        };
        for value in values {
            out.push('\n');
            out.push_str(&String::from_utf8_lossy(&value));
        }
    }
    out
}

/// One thing a store still holds, and when it removes itself (`None`: never, by itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// A table and its row count, a slot row, or a Redis key.
    pub what: String,
    /// How long until it expires.
    pub expires_in: Option<std::time::Duration>,
}

fn micros_from_now(at: i64) -> Option<std::time::Duration> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let at = u128::try_from(at).ok()?;
    (at > now)
        .then(|| std::time::Duration::from_micros(u64::try_from(at - now).unwrap_or(u64::MAX)))
}

/// Everything the store `env` points at still holds: each SQL table's rows (slots one by one,
/// with their expiry), or each Redis key under the prefix with its time to live.
///
/// # Panics
/// When the store cannot be read.
pub async fn leftovers(connection: &str, env: &Env) -> Vec<Leftover> {
    per_store!(connection, env, sql_leftovers, redis_leftovers)
}

async fn sql_leftovers<DB: routemq::sqlx::Database>(
    pool: &routemq::sqlx::Pool<DB>,
    slots: [&str; 2],
) -> Vec<Leftover>
where
    for<'c> &'c routemq::sqlx::Pool<DB>: routemq::sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as routemq::sqlx::Database>::Arguments<'q>: routemq::sqlx::IntoArguments<'q, DB>,
    for<'r> String: routemq::sqlx::Decode<'r, DB> + routemq::sqlx::Type<DB>,
    for<'r> i64: routemq::sqlx::Decode<'r, DB> + routemq::sqlx::Type<DB>,
    usize: routemq::sqlx::ColumnIndex<DB::Row>,
{
    let mut out = Vec::new();
    for table in [
        "queue_jobs",
        "queue_failed_jobs",
        "queue_batches",
        "queue_batch_jobs",
    ] {
        let query = format!("SELECT COUNT(*) FROM {table}");
        let row = routemq::sqlx::query(&query)
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        let count: i64 = row.try_get(0).expect("a count");
        if count > 0 {
            out.push(Leftover {
                what: format!("{table}: {count} rows"),
                expires_in: None,
            });
        }
    }
    let [name, holder] = slots;
    let query = format!("SELECT {name}, {holder}, expires_at FROM queue_slots");
    for row in routemq::sqlx::query(&query)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
    {
        let (name, holder): (String, String) = (
            row.try_get(0).expect("name"),
            row.try_get(1).expect("holder"),
        );
        let expires_at: i64 = row.try_get(2).expect("expires_at");
        out.push(Leftover {
            what: format!("queue_slots: {name} / {holder}"),
            expires_in: if holder.is_empty() {
                None
            } else {
                micros_from_now(expires_at)
            },
        });
    }
    out
}

async fn redis_leftovers(urls: &[&str], prefix: &str) -> Vec<Leftover> {
    let mut out = Vec::new();
    for (con, keys) in redis_keys(urls, prefix).await {
        out.extend(redis_node_leftovers(con, keys).await);
    }
    out
}

async fn redis_node_leftovers(
    mut con: redis::aio::MultiplexedConnection,
    keys: Vec<String>,
) -> Vec<Leftover> {
    let mut out = Vec::new();
    for key in keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut con)
            .await
            .expect("pttl");
        out.push(Leftover {
            what: key,
            expires_in: u64::try_from(ttl)
                .ok()
                .map(std::time::Duration::from_millis),
        });
    }
    out
}
