//! The raw broker loops of the shared harness, in this binary so that the broker's CPU per job is
//! measured the same way for them and for routemq: minimal queues written straight against the
//! broker, a speed floor without a job queue's guarantees.
//!
//! - `raw-redis`: `LPUSH`; each worker task acknowledges the previous job (`LREM` from a
//!   processing list) and takes the next (`LMOVE`) in one pipelined round trip.
//! - `raw-postgres`: `DELETE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT k) RETURNING`.
//! - `raw-mysql`: the same claim in a transaction (`SELECT … FOR UPDATE SKIP LOCKED`, `DELETE`).
//! - `raw-sqlite`: `DELETE … WHERE id IN (SELECT … LIMIT k) RETURNING` on a WAL database.
//!
//! Bulk enqueue sends one JSON array per 1,000 jobs (SQL) or pipelines 500 `LPUSH`es (Redis).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use routemq::redis::AsyncCommands;
use routemq::sqlx::{self, Row};
use serde_json::json;

use crate::broker::{Broker, measure};
use crate::sql_pool;
use crate::{Args, BoxError, now_us, url};

/// `--pad`: the size raw payloads are padded to (0: the harness's payload as it is).
pub(crate) static PAD: AtomicUsize = AtomicUsize::new(0);

/// The harness's payload, as raw loops store it (padded to `--pad` bytes).
fn payload(i: usize) -> String {
    let mut value =
        json!({"name": format!("job-{i}"), "n": i, "tags": ["a", "b", "c"], "ts": now_us()});
    let pad = PAD.load(Ordering::Relaxed);
    if pad == 0 {
        return value.to_string();
    }
    let plain = value.to_string().len();
    // `,"pad":""` adds 9 bytes around the padding.
    if pad > plain + 9 {
        value["pad"] = json!("x".repeat(pad - plain - 9));
    }
    value.to_string()
}

fn handle(text: &str) -> Result<(), BoxError> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    std::hint::black_box(value);
    Ok(())
}

/// Runs `raw-<kind>` for `args` and returns its JSON line's fields.
pub(crate) async fn run(kind: &str, args: &Args) -> Result<serde_json::Value, BoxError> {
    let broker = Broker::find(kind).await?;
    let mut out = json!({});
    match kind {
        "redis" => redis(args, &broker, &mut out).await?,
        "postgres" | "mysql" | "sqlite" => sql(kind, args, &broker, &mut out).await?,
        other => return Err(format!("no raw loop for {other}").into()),
    }
    let pad = PAD.load(Ordering::Relaxed);
    if pad > 0 {
        out["pad_bytes"] = json!(pad);
    }
    Ok(out)
}

async fn redis(args: &Args, broker: &Broker, out: &mut serde_json::Value) -> Result<(), BoxError> {
    let queue = format!("bench:raw:{}:{}", std::process::id(), now_us());
    let processing = format!("{queue}:processing");
    let client = routemq::redis::Client::open(url("redis"))?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let bulk = |mut con: routemq::redis::aio::MultiplexedConnection, queue: String, n: usize| async move {
        let mut i = 0;
        while i < n {
            let mut pipe = routemq::redis::pipe();
            for j in i..(i + 500).min(n) {
                pipe.lpush(&queue, payload(j)).ignore();
            }
            let () = pipe.query_async(&mut con).await?;
            i += 500;
        }
        Ok::<_, BoxError>(())
    };
    match args.workload.as_str() {
        "drain" => {
            bulk(con.clone(), queue.clone(), args.n).await?;
            let done = Arc::new(AtomicUsize::new(0));
            let drain = async {
                let mut tasks = Vec::new();
                for _ in 0..args.concurrency {
                    let mut con = client.get_multiplexed_async_connection().await?;
                    let (queue, processing, done) =
                        (queue.clone(), processing.clone(), done.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut previous: Option<String> = None;
                        loop {
                            let mut pipe = routemq::redis::pipe();
                            if let Some(job) = &previous {
                                pipe.lrem(&processing, 1, job).ignore();
                            }
                            pipe.cmd("LMOVE")
                                .arg(&queue)
                                .arg(&processing)
                                .arg("RIGHT")
                                .arg("LEFT");
                            let (next,): (Option<String>,) = pipe.query_async(&mut con).await?;
                            if previous.take().is_some() {
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            let Some(job) = next else {
                                return Ok::<_, BoxError>(());
                            };
                            handle(&job)?;
                            previous = Some(job);
                        }
                    }));
                }
                for task in tasks {
                    task.await??;
                }
                Ok(())
            };
            let ((), seconds) = measure(broker, args.n, "", out, drain).await?;
            let (left, held): (usize, usize) = routemq::redis::pipe()
                .llen(&queue)
                .llen(&processing)
                .query_async(&mut con)
                .await?;
            let done = done.load(Ordering::Relaxed);
            if (left, held, done) != (0, 0, args.n) {
                return Err(format!("raw drain: {left} left, {held} held, {done} done").into());
            }
            out["seconds"] = json!(seconds);
        }
        "enqueue" => {
            let mut single = con.clone();
            let single = async {
                for i in 0..args.n {
                    let () = single.lpush(&queue, payload(i)).await?;
                }
                Ok(())
            };
            measure(broker, args.n, "single_", out, single).await?;
            let () = con.del(&queue).await?;
            let bulk = bulk(con.clone(), queue.clone(), args.n);
            measure(broker, args.n, "bulk_", out, bulk).await?;
            let stored: usize = con.llen(&queue).await?;
            let () = con.del(&queue).await?;
            if stored != args.n {
                return Err(format!("raw enqueue stored {stored} of {}", args.n).into());
            }
        }
        other => return Err(format!("raw loops run drain and enqueue, not {other}").into()),
    }
    Ok(())
}

/// The SQL a raw loop runs on one database.
struct Statements {
    create: String,
    insert: String,
    insert_many: String,
    claim: Vec<String>,
    count: String,
    drop: String,
}

fn statements(kind: &str, table: &str) -> Statements {
    let claim_pg = format!(
        "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY id FOR UPDATE SKIP LOCKED LIMIT $1) RETURNING payload::text"
    );
    let (create, insert, insert_many, claim) = match kind {
        "postgres" => (
            format!(
                "CREATE TABLE {table} (id BIGSERIAL PRIMARY KEY, payload JSONB NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            ),
            format!("INSERT INTO {table} (payload) VALUES ($1::jsonb)"),
            format!(
                "INSERT INTO {table} (payload) SELECT x::jsonb FROM jsonb_array_elements_text($1::jsonb) AS x"
            ),
            vec![claim_pg],
        ),
        "mysql" => (
            format!(
                "CREATE TABLE {table} (id BIGINT AUTO_INCREMENT PRIMARY KEY, payload LONGTEXT NOT NULL, created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP) ENGINE=InnoDB"
            ),
            format!("INSERT INTO {table} (payload) VALUES (?)"),
            format!(
                "INSERT INTO {table} (payload) SELECT x FROM JSON_TABLE(?, '$[*]' COLUMNS (x LONGTEXT PATH '$')) AS t"
            ),
            vec![
                format!(
                    "SELECT id, payload FROM {table} ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED"
                ),
                format!("DELETE FROM {table} WHERE id BETWEEN ? AND ?"),
            ],
        ),
        _ => (
            format!(
                "CREATE TABLE {table} (id INTEGER PRIMARY KEY AUTOINCREMENT, payload TEXT NOT NULL, created_at INTEGER NOT NULL DEFAULT (unixepoch()))"
            ),
            format!("INSERT INTO {table} (payload) VALUES (?1)"),
            format!("INSERT INTO {table} (payload) SELECT value FROM json_each(?1)"),
            vec![format!(
                "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY id LIMIT ?1) RETURNING payload"
            )],
        ),
    };
    Statements {
        create,
        insert,
        insert_many,
        claim,
        count: format!("SELECT count(*) FROM {table}"),
        drop: format!("DROP TABLE {table}"),
    }
}

async fn sql(
    kind: &str,
    args: &Args,
    broker: &Broker,
    out: &mut serde_json::Value,
) -> Result<(), BoxError> {
    let table = format!("bench_raw_{}_{}", std::process::id(), now_us() % 1_000_000);
    let sql = Arc::new(statements(kind, &table));
    let pool = sql_pool::connect(kind, u32::try_from(args.concurrency + 2)?).await?;
    sqlx::query(&sql.create).execute(&pool).await?;
    let result = sql_workload(args, &pool, &sql, broker, out).await;
    sqlx::query(&sql.drop).execute(&pool).await?;
    pool.close().await;
    result
}

async fn insert_many(pool: &sqlx::AnyPool, sql: &Statements, n: usize) -> Result<(), BoxError> {
    let mut i = 0;
    while i < n {
        let chunk: Vec<String> = (i..(i + 1000).min(n)).map(payload).collect();
        sqlx::query(&sql.insert_many)
            .bind(serde_json::to_string(&chunk)?)
            .execute(pool)
            .await?;
        i += 1000;
    }
    Ok(())
}

/// Claims and deletes up to `k` jobs; returns how many it handled.
async fn claim(pool: &sqlx::AnyPool, sql: &Statements, k: i64) -> Result<usize, BoxError> {
    if let [delete] = &sql.claim[..] {
        let rows = sqlx::query(delete).bind(k).fetch_all(pool).await?;
        for row in &rows {
            handle(&row.try_get::<String, _>(0)?)?;
        }
        return Ok(rows.len());
    }
    // MariaDB: no DELETE … RETURNING with a subquery on the same table.
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(&sql.claim[0])
        .bind(k)
        .fetch_all(&mut *tx)
        .await?;
    let ids: Vec<i64> = rows
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    for row in &rows {
        // The Any driver sees MariaDB's text as a BLOB.
        handle(std::str::from_utf8(&row.try_get::<Vec<u8>, _>(1)?)?)?;
    }
    if let (Some(first), Some(last)) = (ids.first(), ids.last()) {
        // The locked rows are consecutive ids only when no other claimer skipped into them:
        // delete exactly the locked ones.
        if last - first + 1 == i64::try_from(ids.len())? {
            sqlx::query(&sql.claim[1])
                .bind(first)
                .bind(last)
                .execute(&mut *tx)
                .await?;
        } else {
            for id in &ids {
                sqlx::query(&sql.claim[1])
                    .bind(id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(rows.len())
}

async fn sql_workload(
    args: &Args,
    pool: &sqlx::AnyPool,
    sql: &Arc<Statements>,
    broker: &Broker,
    out: &mut serde_json::Value,
) -> Result<(), BoxError> {
    let count = |pool: sqlx::AnyPool, sql: Arc<Statements>| async move {
        let count: i64 = sqlx::query_scalar(&sql.count).fetch_one(&pool).await?;
        Ok::<_, BoxError>(usize::try_from(count)?)
    };
    match args.workload.as_str() {
        "drain" => {
            insert_many(pool, sql, args.n).await?;
            let done = Arc::new(AtomicUsize::new(0));
            let drain = async {
                let tasks: Vec<_> = (0..args.concurrency)
                    .map(|_| {
                        let (pool, sql, done, k) =
                            (pool.clone(), sql.clone(), done.clone(), args.k);
                        tokio::spawn(async move {
                            loop {
                                let claimed = claim(&pool, &sql, k).await?;
                                if claimed == 0 {
                                    return Ok::<_, BoxError>(());
                                }
                                done.fetch_add(claimed, Ordering::Relaxed);
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await??;
                }
                Ok(())
            };
            let ((), seconds) = measure(broker, args.n, "", out, drain).await?;
            let (left, done) = (
                count(pool.clone(), sql.clone()).await?,
                done.load(Ordering::Relaxed),
            );
            if (left, done) != (0, args.n) {
                return Err(format!("raw drain: {left} left, {done} done").into());
            }
            out["seconds"] = json!(seconds);
        }
        "enqueue" => {
            let single = async {
                for i in 0..args.n {
                    sqlx::query(&sql.insert)
                        .bind(payload(i))
                        .execute(pool)
                        .await?;
                }
                Ok(())
            };
            measure(broker, args.n, "single_", out, single).await?;
            measure(broker, args.n, "bulk_", out, insert_many(pool, sql, args.n)).await?;
            let stored = count(pool.clone(), sql.clone()).await?;
            if stored != 2 * args.n {
                return Err(format!("raw enqueue stored {stored} of {}", 2 * args.n).into());
            }
        }
        other => return Err(format!("raw loops run drain and enqueue, not {other}").into()),
    }
    Ok(())
}
