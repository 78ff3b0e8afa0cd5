//! PostgreSQL claims run on connections of their own, opened with the claim's planner settings as
//! startup options; behind a proxy that refuses startup options (as PgBouncer does by default)
//! or drops them silently, they fall back to a transaction of their own on the shared pool, and
//! still claim correctly.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use routemq::driver::QueueDriver;
use routemq::driver::postgres::PostgresDriver;
use routemq::prelude::*;
use routemq::sqlx::Executor;
use routemq::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use routemq_tests::jobs::Record;
use routemq_tests::ledger::unique_key;
use routemq_tests::services::postgres_url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// PostgreSQL's `SSLRequest` and `GSSENCRequest` codes (answered "no" by the proxy).
const ENCRYPTION_REQUESTS: [u32; 2] = [80_877_103, 80_877_104];

/// What the proxy does with a startup packet that names `options`.
#[derive(Clone, Copy, PartialEq)]
enum Options {
    /// Forwards it.
    Pass,
    /// Refuses the connection, as PgBouncer does by default.
    Refuse,
    /// Drops the parameter, as PgBouncer does with `ignore_startup_parameters = options`.
    Drop,
}

/// What the proxy saw.
#[derive(Default)]
struct Seen {
    /// Startup packets naming `options`.
    options: AtomicUsize,
    /// Claims scoped to a transaction of their own (`SET LOCAL enable_sort`).
    set_local: AtomicUsize,
}

/// A proxy on loopback in front of the test server; returns its port and what it sees.
async fn proxy(url: &str, mode: Options) -> (PgConnectOptions, Arc<Seen>) {
    let direct: PgConnectOptions = url.parse().expect("a postgres URL");
    let upstream = (direct.get_host().to_owned(), direct.get_port());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let port = listener.local_addr().expect("address").port();
    let seen = Arc::new(Seen::default());
    let counters = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let seen = Arc::clone(&counters);
            tokio::spawn(async move {
                let _ = serve(client, upstream, mode, &seen).await;
            });
        }
    });
    (direct.port(port), seen)
}

async fn serve(
    mut client: TcpStream,
    upstream: (String, u16),
    mode: Options,
    seen: &Seen,
) -> std::io::Result<()> {
    let mut body = loop {
        let length = usize::try_from(client.read_u32().await?).unwrap_or(0);
        let mut body = vec![0; length.saturating_sub(4)];
        client.read_exact(&mut body).await?;
        let code = body
            .get(..4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        if !ENCRYPTION_REQUESTS.contains(&code) {
            break body;
        }
        client.write_all(b"N").await?;
    };
    // key\0value\0 pairs after the protocol version, then a final \0.
    let pairs: Vec<Vec<u8>> = body[4..].split(|b| *b == 0).map(<[u8]>::to_vec).collect();
    if pairs.chunks(2).any(|pair| pair[0] == b"options") {
        seen.options.fetch_add(1, Ordering::SeqCst);
        match mode {
            Options::Pass => {}
            Options::Refuse => return refuse(&mut client).await,
            Options::Drop => {
                let mut kept = body[..4].to_vec();
                for pair in pairs.chunks(2).filter(|pair| pair.len() == 2) {
                    if pair[0] != b"options" && !pair[0].is_empty() {
                        for part in pair {
                            kept.extend_from_slice(part);
                            kept.push(0);
                        }
                    }
                }
                kept.push(0);
                body = kept;
            }
        }
    }
    let mut server = TcpStream::connect((upstream.0.as_str(), upstream.1)).await?;
    let length = u32::try_from(body.len() + 4).unwrap_or(0);
    server.write_all(&length.to_be_bytes()).await?;
    server.write_all(&body).await?;
    let (mut from_server, mut to_server) = server.into_split();
    let (mut from_client, mut to_client) = client.into_split();
    let down = tokio::spawn(async move { tokio::io::copy(&mut from_server, &mut to_client).await });
    let needle = b"SET LOCAL enable_sort";
    let mut carried: Vec<u8> = Vec::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = from_client.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        to_server.write_all(&buffer[..read]).await?;
        carried.extend_from_slice(&buffer[..read]);
        let found = carried
            .windows(needle.len())
            .filter(|w| w == needle)
            .count();
        seen.set_local.fetch_add(found, Ordering::SeqCst);
        let keep = carried.len().min(needle.len() - 1);
        carried.drain(..carried.len() - keep);
    }
    down.abort();
    Ok(())
}

/// Answers a startup packet with PgBouncer's refusal.
async fn refuse(client: &mut TcpStream) -> std::io::Result<()> {
    let mut fields = Vec::new();
    for (tag, text) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "08P01"),
        (b'M', "unsupported startup parameter: options"),
    ] {
        fields.push(tag);
        fields.extend_from_slice(text.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut message = vec![b'E'];
    let size = u32::try_from(fields.len() + 4).expect("small");
    message.extend_from_slice(&size.to_be_bytes());
    message.extend_from_slice(&fields);
    client.write_all(&message).await
}

/// Pushes three jobs to a new queue (the last with priority 5); returns the queue and the ids.
async fn three_jobs(driver: Arc<PostgresDriver>, name: &str) -> (String, Vec<String>) {
    driver.migrate().await.expect("migrate");
    let manager = QueueManager::new(routemq::Settings::default());
    manager.register("pg", driver);
    let key = unique_key(name);
    let queue = format!("t-{key}");
    let mut ids = Vec::new();
    for n in 0..3 {
        let dispatch = manager
            .push(Record {
                key: key.clone(),
                n,
            })
            .on_connection("pg")
            .on_queue(queue.clone());
        let priority = if n == 2 { 5 } else { 0 };
        ids.push(dispatch.priority(priority).await.expect("push"));
    }
    (queue, ids)
}

async fn claim(driver: &PostgresDriver, queue: &str, max: usize) -> Vec<String> {
    let jobs = driver
        .reserve(&[queue.to_owned()], max)
        .await
        .expect("reserve");
    let mut ids: Vec<String> = jobs.into_iter().map(|job| job.lease.id).collect();
    ids.sort_by_key(|id| id.parse::<i64>().expect("a numeric id"));
    ids
}

/// Claims through a proxy in `mode`: the driver shares an application pool of two connections;
/// every claim returns the right jobs. Returns what the proxy saw.
async fn claims_through(mode: Options, name: &str) -> Option<Arc<Seen>> {
    let url = postgres_url()?;
    let (options, seen) = proxy(&url, mode).await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .expect("connects through the proxy");
    let driver = Arc::new(PostgresDriver::from_pool(pool));
    let (queue, ids) = three_jobs(Arc::clone(&driver), name).await;
    assert_eq!(seen.options.load(Ordering::SeqCst), 0, "no claim yet");
    assert_eq!(
        claim(&driver, &queue, 2).await,
        [ids[0].clone(), ids[2].clone()],
        "the prioritized job, then the oldest"
    );
    assert_eq!(claim(&driver, &queue, 2).await, [ids[1].clone()]);
    assert!(claim(&driver, &queue, 2).await.is_empty());
    Some(seen)
}

/// Claims run on connections of the driver's own, opened with the settings as startup options:
/// no claim needs a transaction to scope them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_run_on_connections_opened_with_the_settings() {
    let Some(seen) = claims_through(Options::Pass, "pg-claims-pass").await else {
        return;
    };
    // A connection goes back to its pool in the background: a claim right after another may
    // open a second one.
    let opened = seen.options.load(Ordering::SeqCst);
    assert!((1..=3).contains(&opened), "{opened} claim connections");
    assert_eq!(
        seen.set_local.load(Ordering::SeqCst),
        0,
        "no claim transaction"
    );
}

/// Claims through a proxy in `mode` fall back to transactions of their own, one per claim, after
/// the proxy saw one claim connection (`seen_once` says why no more came).
async fn claims_fall_back(mode: Options, name: &str, seen_once: &str) {
    let Some(seen) = claims_through(mode, name).await else {
        return;
    };
    assert_eq!(seen.options.load(Ordering::SeqCst), 1, "{seen_once}");
    assert_eq!(
        seen.set_local.load(Ordering::SeqCst),
        3,
        "every claim in a transaction"
    );
}

/// Behind a proxy that refuses startup options, claims fall back to transactions of their own
/// (one per claim), after one refused connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_fall_back_when_startup_options_are_refused() {
    claims_fall_back(
        Options::Refuse,
        "pg-claims-refused",
        "refused once, not retried",
    )
    .await;
}

/// Behind a proxy that drops startup options silently, claims notice and fall back too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_fall_back_when_startup_options_are_dropped() {
    claims_fall_back(Options::Drop, "pg-claims-dropped", "one claim connection").await;
}

/// A pool whose `after_connect` hook sets the `search_path`: claim connections, opened without
/// the hook, would read another schema's `queue_jobs`, so claims run on the pool itself and find
/// this schema's jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_follow_a_search_path_set_after_connecting() {
    let Some(url) = postgres_url() else { return };
    let schema = format!("routemq_path_{}", std::process::id());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("connects");
    for statement in [
        format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        format!("CREATE SCHEMA {schema}"),
    ] {
        routemq::sqlx::query(&statement)
            .execute(&admin)
            .await
            .expect("schema");
    }
    let path = format!("SET search_path TO {schema}");
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .after_connect(move |conn, _| {
            let path = path.clone();
            Box::pin(async move {
                conn.execute(path.as_str()).await?;
                Ok(())
            })
        })
        .connect(&url)
        .await
        .expect("connects");
    let driver = Arc::new(PostgresDriver::from_pool(pool));
    let (queue, ids) = three_jobs(Arc::clone(&driver), "pg-claims-path").await;
    assert_eq!(
        claim(&driver, &queue, 2).await,
        [ids[0].clone(), ids[2].clone()],
        "the schema's jobs, the prioritized one first"
    );
    assert_eq!(claim(&driver, &queue, 2).await, [ids[1].clone()]);
    routemq::sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .expect("drop schema");
}
