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

/// The raw contents of the store `env` points a process at (`connection` names its kind).
///
/// # Panics
/// When the store cannot be read.
pub async fn dump(connection: &str, env: &Env) -> String {
    match connection {
        "sqlite" => {
            let path = var(env, "QUEUE_SQLITE_PATH");
            let mut bytes = std::fs::read(path).expect("read the database file");
            bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
            String::from_utf8_lossy(&bytes).into_owned()
        }
        "postgres" => {
            let pool = routemq::sqlx::PgPool::connect(var(env, "DATABASE_URL"))
                .await
                .expect("connect");
            sql_rows(&pool, ["name", "holder"]).await
        }
        "mysql" => {
            let pool = routemq::sqlx::MySqlPool::connect(var(env, "DATABASE_URL"))
                .await
                .expect("connect");
            // Slot names and holders are VARBINARY there.
            sql_rows(&pool, ["CAST(name AS CHAR)", "CAST(holder AS CHAR)"]).await
        }
        "redis" => redis_values(var(env, "REDIS_URL"), var(env, "REDIS_PREFIX")).await,
        other => panic!("no raw dump for {other}"),
    }
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

/// Every value of every key under `prefix`, read by type.
async fn redis_values(url: &str, prefix: &str) -> String {
    let client = redis::Client::open(url).expect("redis url");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut con)
        .await
        .expect("keys");
    let mut out = keys.join("\n");
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
