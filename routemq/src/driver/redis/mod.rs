//! The Redis driver: RouteMQ's keys and records, with atomic Lua scripts and FIFO pops.
//!
//! Ready jobs are RouteMQ records (`{"id", "payload", "attempts", "created_at"}`) in the list
//! `routemq:queue:{q}`, delayed jobs in the sorted set `routemq:queue:{q}:delayed` (score = due time
//! in epoch seconds), failed jobs in `routemq:queue:failed:{q}`, so RouteMQ (Python) and routemq share
//! queues both ways. Unlike RouteMQ, pops take the list's head (FIFO), ids come from a per-queue
//! counter (unique across processes and hosts), and every multi-step change (push, reserve, ack,
//! release, fail, heartbeat, reap, retry) is one Lua script that touches only one queue's keys.
//! Leases live in a hash plus a sorted set by heartbeat, so renewing or expiring one is O(log n).
//!
//! Idle workers are woken through pub/sub (`routemq:queue:wake`) within a millisecond of a push;
//! a delayed job is promoted by the first reservation after its due time, and idle workers sleep
//! exactly until the earliest due time (plus 1 ms), so it becomes visible within a few
//! milliseconds of being due.
//!
//! See [`keys`] for the key layout, including the Redis Cluster hash-tag option, and [`config`] for
//! the connection variables.

mod batches;
mod bulk;
pub mod config;
mod connection;
pub mod keys;
mod lease;
mod remove;
mod replicas;
mod rewrite;
mod scripts;
mod slot_reads;
mod workers;

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use serde::Deserialize;
use tokio::sync::watch;

pub use keys::KeyLayout;

use super::slots::{Slot, ttl_micros};
use super::wake::{WakeFeed, WakeSignal, reconnect_pause};
use super::{
    BatchPrune, BatchRow, BatchWrite, DriverError, Editor, FailedJob, Failure, Lease, NewJob,
    QueueDriver, QueueStats, Reaped, Removal, ReservedJob, Rewritten, WorkerRow, out_of_tries,
};
use crate::envelope::push_str_literal;
use crate::time::{iso_utc, parse_utc};
use connection::Connection;
use lease::{count_field, read_lease};
pub use replicas::MAX_WAIT;
use replicas::{RESPONSE_TIMEOUT, Replicated};

/// Most leases reaped per queue in one pass.
const REAP_BATCH: isize = 500;

/// Jobs in Redis: on one server (with its replicas), or on a Redis Cluster
/// ([`connect_cluster`](Self::connect_cluster)).
pub struct RedisDriver {
    /// The servers the wake-up subscription may use, tried in turn (a cluster forwards every
    /// `PUBLISH` to all its nodes, so any one of them will do).
    subscribe_via: Vec<redis::Client>,
    /// A cluster's node URLs, as given.
    cluster_nodes: Option<Vec<String>>,
    connection: Connection,
    layout: KeyLayout,
    target: String,
    wake: WakeSignal,
    subscriber: WakeFeed,
    durability: Option<Replicated>,
}

impl std::fmt::Debug for RedisDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDriver")
            .field("target", &self.target)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct RecordIn {
    payload: String,
}

#[derive(Deserialize)]
struct FailedIn {
    id: String,
    #[serde(default)]
    connection: String,
    #[serde(default)]
    queue: String,
    payload: String,
    #[serde(default)]
    exception: String,
    #[serde(default)]
    failed_at: String,
}

fn epoch(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A string as a JSON literal in Python's layout (what RouteMQ's records hold).
fn json_literal(text: &str) -> String {
    let mut out = String::new();
    push_str_literal(&mut out, text);
    out
}

/// The envelope inside a RouteMQ record (`{"id", "payload", ...}`). A record that is not one is
/// returned whole, so that the worker fails it as an invalid payload instead of losing it.
pub fn parse_record(record: &str) -> String {
    serde_json::from_str::<RecordIn>(record).map_or_else(|_| record.to_owned(), |r| r.payload)
}

fn failed_job(record: &str, queue: &str) -> Option<FailedJob> {
    let parsed: FailedIn = serde_json::from_str(record).ok()?;
    Some(FailedJob {
        id: parsed.id,
        connection: parsed.connection,
        queue: if parsed.queue.is_empty() {
            queue.to_owned()
        } else {
            parsed.queue
        },
        payload: parsed.payload,
        exception: parsed.exception,
        failed_at: parse_utc(&parsed.failed_at).unwrap_or(SystemTime::UNIX_EPOCH),
    })
}

/// The positions of `leases` grouped by queue (each script call acts on one queue's keys).
fn by_queue(leases: &[Lease]) -> std::collections::BTreeMap<&str, Vec<usize>> {
    let mut groups: std::collections::BTreeMap<&str, Vec<usize>> =
        std::collections::BTreeMap::new();
    for (i, lease) in leases.iter().enumerate() {
        groups.entry(lease.queue.as_str()).or_default().push(i);
    }
    groups
}

/// One step of a `ZSCAN` or `HSCAN` (`command`) of `key` from `cursor`, `count` entries asked
/// for: the next cursor (0 at the end) and the entries, flat (member, score or field, value).
async fn scan_step(
    con: &mut Connection,
    command: &str,
    key: &str,
    cursor: u64,
    count: isize,
    operation: &'static str,
) -> Result<(u64, Vec<String>), DriverError> {
    redis::cmd(command)
        .arg(key)
        .arg(cursor)
        .arg("COUNT")
        .arg(count)
        .query_async(con)
        .await
        .map_err(backend(operation))
}

fn backend(operation: &'static str) -> impl Fn(redis::RedisError) -> DriverError {
    move |error| DriverError::backend(operation, error)
}

/// Most jobs one push script stores (a bulk dispatch is split into calls of this size).
const PUSH_CHUNK: usize = 1_000;

/// Most failed records one retry-all script call moves.
const RETRY_CHUNK: u64 = 500;

impl RedisDriver {
    /// Connects to `url` (`redis://`, or `rediss://` with the `redis-tls` feature).
    pub async fn connect(url: &str, layout: KeyLayout) -> Result<Self, DriverError> {
        let target = config::redact(url);
        let connect = |source: redis::RedisError| DriverError::Connect {
            target: target.clone(),
            source: source.into(),
        };
        let client = redis::Client::open(url).map_err(connect)?;
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2));
        let connection = ConnectionManager::new_with_config(client.clone(), settings)
            .await
            .map_err(connect)?;
        Ok(Self::with_target(
            vec![client],
            Connection::Single(connection),
            layout,
            target,
        ))
    }

    /// Connects to a Redis Cluster through any of its `nodes` (`redis://host:port` URLs; the
    /// client learns the rest of the cluster from them). The layout is made hash-tagged whatever
    /// `layout` says, so that each queue's keys share one slot. The cluster client follows
    /// `MOVED` and `ASK` redirections, and after a failover finds the promoted replica.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), routemq::DriverError> {
    /// use routemq::driver::redis::{KeyLayout, RedisDriver};
    ///
    /// let nodes = ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"];
    /// let driver = RedisDriver::connect_cluster(&nodes, KeyLayout::default()).await?;
    /// assert!(driver.layout().hash_tags());
    /// # Ok(()) }
    /// ```
    pub async fn connect_cluster(
        nodes: &[impl AsRef<str>],
        layout: KeyLayout,
    ) -> Result<Self, DriverError> {
        let urls: Vec<&str> = nodes.iter().map(AsRef::as_ref).collect();
        let target = format!(
            "redis cluster {}",
            urls.iter()
                .map(|url| config::redact(url))
                .collect::<Vec<_>>()
                .join(",")
        );
        let connect = |source: redis::RedisError| DriverError::Connect {
            target: target.clone(),
            source: source.into(),
        };
        if urls.is_empty() {
            return Err(DriverError::Connect {
                target: target.clone(),
                source: "no cluster node given".into(),
            });
        }
        let clients = urls
            .iter()
            .map(|url| redis::Client::open(*url))
            .collect::<Result<Vec<_>, _>>()
            .map_err(connect)?;
        if layout.prefix().contains(['{', '}']) {
            return Err(DriverError::Connect {
                target: target.clone(),
                source: "a cluster's key prefix (REDIS_PREFIX) cannot hold `{` or `}`: the queue \
                         name's hash tag must be the first in every key"
                    .into(),
            });
        }
        let nodes: Vec<String> = urls.iter().map(|url| (*url).to_owned()).collect();
        let connection = ClusterClient::builder(nodes.iter().map(String::as_str))
            .connection_timeout(Duration::from_secs(5))
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(8)
            .max_retry_wait(2_000)
            .build()
            .map_err(connect)?
            .get_async_connection()
            .await
            .map_err(connect)?;
        let mut driver = Self::with_target(
            clients,
            Connection::Cluster(connection),
            layout.with_hash_tags(),
            target,
        );
        driver.cluster_nodes = Some(nodes);
        Ok(driver)
    }

    /// A driver on your application's own `ConnectionManager`, so jobs and the app share one
    /// multiplexed connection (use `routemq::redis`, the redis-rs routemq is built with). `client`
    /// is the one the manager was made from: idle workers open their wake-up subscription with it.
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// use routemq::driver::redis::{KeyLayout, RedisDriver};
    /// use routemq::redis::aio::ConnectionManager;
    ///
    /// let client = routemq::redis::Client::open("redis://127.0.0.1:6379")?;
    /// let manager = ConnectionManager::new(client.clone()).await?; // the app's own
    /// let driver = RedisDriver::from_connection_manager(client, manager, KeyLayout::default());
    /// routemq::queue().register("redis", Arc::new(driver));
    /// # Ok(()) }
    /// ```
    pub fn from_connection_manager(
        client: redis::Client,
        connection: ConnectionManager,
        layout: KeyLayout,
    ) -> Self {
        let target = format!("redis://{}", client.get_connection_info().addr());
        Self::with_target(vec![client], Connection::Single(connection), layout, target)
    }

    fn with_target(
        subscribe_via: Vec<redis::Client>,
        connection: Connection,
        layout: KeyLayout,
        target: String,
    ) -> Self {
        Self {
            subscribe_via,
            cluster_nodes: None,
            connection,
            layout,
            target,
            wake: WakeSignal::new(),
            subscriber: WakeFeed::default(),
            durability: None,
        }
    }

    /// Makes each dispatch wait until `replicas` replicas have it (`WAIT`, at most `timeout`,
    /// itself at most [`MAX_WAIT`]) before it counts as stored. Redis replicates asynchronously:
    /// without this, a primary that fails right after acknowledging a dispatch can take it with
    /// it when a replica is promoted. A dispatch that fewer replicas confirmed in time returns an
    /// error, though the primary has stored it (dispatching it again may then queue it twice).
    /// Dispatches then go through plain connections of their own, one per primary, each pinned
    /// to its write and its `WAIT` (see the module `replicas`). Zero replicas turns it off.
    #[must_use]
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.durability = (replicas > 0).then(|| Replicated::new(replicas, timeout));
        self
    }

    /// Connects with the environment's settings: the URL from [`config::url_from_env`], the key
    /// prefix `REDIS_PREFIX` (default `routemq:queue:`), `REDIS_HASH_TAGS=true` for the cluster
    /// layout, and `REDIS_WAIT_REPLICAS` / `REDIS_WAIT_TIMEOUT_MS` (see
    /// [`wait_for_replicas`](Self::wait_for_replicas)).
    pub async fn from_env() -> Result<Self, DriverError> {
        use crate::config::{bool_var, env_var};
        let url = config::url_from_env()?;
        let hash_tags = bool_var(env_var, "REDIS_HASH_TAGS", false)?;
        let replicas = config::replicas(env_var)?;
        let layout = KeyLayout::new(config::prefix(env_var), hash_tags);
        Ok(Self::connect(&url, layout).await?.replicated(replicas))
    }

    /// Connects to the Redis Cluster of `REDIS_CLUSTER_NODES` (comma-separated `redis://` URLs
    /// of some of its nodes), with `REDIS_PREFIX` and `REDIS_WAIT_REPLICAS` /
    /// `REDIS_WAIT_TIMEOUT_MS` as [`from_env`](Self::from_env) reads them; the `redis-cluster`
    /// connection.
    pub async fn cluster_from_env() -> Result<Self, DriverError> {
        use crate::config::env_var;
        let nodes = config::cluster_nodes(env_var)?;
        let replicas = config::replicas(env_var)?;
        let layout = KeyLayout::new(config::prefix(env_var), true);
        Ok(Self::connect_cluster(&nodes, layout)
            .await?
            .replicated(replicas))
    }

    fn replicated(self, replicas: Option<(u32, Duration)>) -> Self {
        match replicas {
            Some((replicas, timeout)) => self.wait_for_replicas(replicas, timeout),
            None => self,
        }
    }

    /// The server, password hidden.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The key layout.
    pub fn layout(&self) -> &KeyLayout {
        &self.layout
    }

    fn con(&self) -> Connection {
        self.connection.clone()
    }

    /// Stores `jobs` (one run of one queue's) and waits until enough replicas have them, on a
    /// plain connection to the queue's primary (see [`replicas`]).
    async fn store_replicated(
        &self,
        replicated: &Replicated,
        jobs: &[NewJob],
    ) -> Result<Vec<String>, DriverError> {
        let client = self
            .subscribe_via
            .first()
            .ok_or_else(|| DriverError::backend("push", "the driver was made without a client"))?;
        let Some(queue) = jobs.first().map(|job| job.queue.as_str()) else {
            return Ok(Vec::new());
        };
        let key = self.layout.queue(queue).ready;
        let (template, address) = match &self.cluster_nodes {
            Some(nodes) => (
                nodes.first().map(String::as_str),
                replicas::primary_of(&mut self.con(), &key).await?,
            ),
            None => (None, String::new()),
        };
        let mut con = replicated.link(client, template, &address).await?;
        let stored = self.store(&mut con, jobs).await;
        let confirmed = match &stored {
            Ok(_) => Self::confirm(&mut con, replicated).await,
            Err(_) => Ok(()),
        };
        if stored.is_err() || confirmed.is_err() {
            // Perhaps the connection's fault: the next dispatch opens a new one.
            replicated.forget(&address).await;
        }
        confirmed?;
        stored
    }

    /// Waits until enough replicas have the writes `con` (a plain connection to one server) made
    /// so far.
    async fn confirm(con: &mut Connection, replicated: &Replicated) -> Result<(), DriverError> {
        let (replicas, timeout) = (replicated.replicas, replicated.timeout);
        let acknowledged = con
            .wait_for_replicas(replicas, timeout)
            .await
            .map_err(|error| {
                DriverError::backend(
                    "push",
                    format!("stored on the primary, but waiting for its replicas failed: {error}"),
                )
            })?;
        if acknowledged < replicas {
            return Err(DriverError::backend(
                "push",
                format!(
                    "stored on the primary, but {acknowledged} of the {replicas} replicas asked \
                     for confirmed it within {} ms (REDIS_WAIT_REPLICAS)",
                    timeout.as_millis()
                ),
            ));
        }
        Ok(())
    }

    /// Gives `queue`'s counter its expiry if the queue holds nothing any more (see
    /// `lua/retire.lua`): after an operation that may have emptied it. Best effort: the
    /// operation has happened, and a counter left without its expiry only stays.
    async fn retire_seq(&self, queue: &str) {
        let keys = self.layout.queue(queue);
        let retired: Result<i64, _> = scripts::RETIRE_SEQ
            .key(&keys.seq)
            .key(&keys.ready)
            .key(&keys.delayed)
            .key(&keys.prio)
            .key(&keys.inflight)
            .key(&keys.leases)
            .key(&keys.failed)
            .invoke_async(&mut self.con())
            .await;
        if let Err(error) = retired {
            tracing::warn!(%queue, %error, "could not set the expiry of an emptied queue's counter");
        }
    }

    /// Stores `jobs` through `con`: one script call per run of jobs for one queue (a script
    /// touches one queue's keys), in dispatch order.
    async fn store(
        &self,
        con: &mut Connection,
        jobs: &[NewJob],
    ) -> Result<Vec<String>, DriverError> {
        let now = SystemTime::now();
        let created_at = iso_utc(now);
        let mut ids = Vec::with_capacity(jobs.len());
        let mut start = 0;
        while start < jobs.len() {
            let queue = &jobs[start].queue;
            // At most PUSH_CHUNK jobs per script call: a huge bulk dispatch must not block Redis.
            let end = jobs[start..]
                .iter()
                .take(PUSH_CHUNK)
                .position(|j| &j.queue != queue)
                .map_or((start + PUSH_CHUNK).min(jobs.len()), |n| start + n);
            if end - start >= bulk::MIN_RUN {
                // A long run for one queue: to the end of the run, not of the chunk.
                let end = jobs[start..]
                    .iter()
                    .position(|j| &j.queue != queue)
                    .map_or(jobs.len(), |n| start + n);
                let run = &jobs[start..end];
                ids.extend(bulk::push_run(self, con.clone(), queue, run, now, &created_at).await?);
                start = end;
                continue;
            }
            let keys = self.layout.queue(queue);
            let mut invocation = scripts::PUSH.prepare_invoke();
            invocation
                .key(&keys.ready)
                .key(&keys.delayed)
                .key(&keys.seq)
                .key(&keys.prio)
                .arg(queue)
                .arg(&created_at)
                .arg(epoch(now))
                .arg(self.layout.wake_channel());
            for job in &jobs[start..end] {
                invocation
                    .arg(json_literal(&job.payload))
                    .arg(crate::limits::clamp(job.delay).as_secs_f64())
                    .arg(job.priority);
            }
            let chunk: Vec<String> = invocation
                .invoke_async(con)
                .await
                .map_err(backend("push"))?;
            ids.extend(chunk);
            start = end;
        }
        Ok(ids)
    }

    /// Starts the pub/sub listener that turns `wake` messages into the watch counter; it
    /// reconnects with backoff when Redis goes away, and wakes workers after it reconnects.
    fn start_subscriber(&self) {
        let clients = self.subscribe_via.clone();
        let channel = self.layout.wake_channel();
        let wake = self.wake.clone();
        let target = self.target.clone();
        self.subscriber.start_once(|| async move {
            let mut failures = 0u32;
            // A cluster's nodes in turn, from the next one after a failure.
            for client in clients.iter().cycle() {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                        Ok(()) => {
                            if failures > 0 {
                                tracing::info!(target = %target, "redis wake-up channel reconnected");
                            }
                            failures = 0;
                            wake.notify();
                            let mut messages = pubsub.into_on_message();
                            while messages.next().await.is_some() {
                                wake.notify();
                            }
                        }
                        Err(error) => tracing::warn!(target = %target, %error, "redis subscribe failed"),
                    },
                    Err(error) => tracing::warn!(target = %target, %error, "redis wake-up channel lost"),
                }
                failures += 1;
                tokio::time::sleep(reconnect_pause(failures)).await;
            }
        });
    }

    /// Leases up to `max` ready jobs; `count` adds the attempt now (else a prefetched lease).
    async fn lease_ready(
        &self,
        queues: &[String],
        max: usize,
        count: bool,
    ) -> Result<Vec<ReservedJob>, DriverError> {
        let mut out = Vec::new();
        for queue in queues {
            if out.len() >= max {
                break;
            }
            let keys = self.layout.queue(queue);
            // Bytes, not strings: a record that is not UTF-8 must not block the queue; it is
            // decoded lossily and then fails as an invalid payload.
            let flat: Vec<Vec<u8>> = scripts::RESERVE
                .key(&keys.ready)
                .key(&keys.delayed)
                .key(&keys.inflight)
                .key(&keys.leases)
                .key(&keys.seq)
                .key(&keys.prio)
                .key(&keys.leased)
                .arg(max - out.len())
                .arg(epoch(SystemTime::now()))
                .arg(u8::from(count))
                .invoke_async(&mut self.con())
                .await
                .map_err(backend("reserve"))?;
            for job in flat.chunks_exact(3) {
                let text = |bytes: &[u8]| match std::str::from_utf8(bytes) {
                    Ok(text) => text.to_owned(),
                    Err(_) => String::from_utf8_lossy(bytes).into_owned(),
                };
                let record = text(&job[2]);
                let lease = Lease {
                    id: text(&job[0]),
                    queue: queue.clone(),
                    attempts: count_field(&record, "attempts").saturating_add(u32::from(count)),
                    token: text(&job[1]),
                };
                let payload = parse_record(&record);
                out.push(if count {
                    ReservedJob::counted(lease, payload)
                } else {
                    ReservedJob::prefetched(lease, payload, count_field(&record, "stalls"))
                });
            }
        }
        Ok(out)
    }

    async fn release_with(
        &self,
        lease: &Lease,
        delay: Duration,
        refund: bool,
        max_heartbeat: Option<f64>,
    ) -> Result<bool, DriverError> {
        let keys = self.layout.queue(&lease.queue);
        let released: i64 = scripts::RELEASE
            .key(&keys.ready)
            .key(&keys.delayed)
            .key(&keys.inflight)
            .key(&keys.leases)
            .key(&keys.prio)
            .key(&keys.leased)
            .arg(&lease.id)
            .arg(&lease.token)
            .arg(crate::limits::clamp(delay).as_secs_f64())
            .arg(epoch(SystemTime::now()))
            .arg(u8::from(refund && !super::is_prefetched(lease)))
            .arg(self.layout.wake_channel())
            .arg(&lease.queue)
            .arg(max_heartbeat.map(|m| m.to_string()).unwrap_or_default())
            .invoke_async(&mut self.con())
            .await
            .map_err(backend("release"))?;
        Ok(released == 1)
    }

    async fn fail_with(
        &self,
        lease: &Lease,
        failure: &Failure,
        max_heartbeat: Option<f64>,
    ) -> Result<bool, DriverError> {
        let keys = self.layout.queue(&lease.queue);
        let moved: i64 = scripts::FAIL
            .key(&keys.inflight)
            .key(&keys.leases)
            .key(&keys.failed)
            .key(&keys.seq)
            .key(&keys.leased)
            .arg(&lease.id)
            .arg(&lease.token)
            .arg(&lease.queue)
            .arg(json_literal(&failure.connection))
            .arg(json_literal(&failure.exception))
            .arg(iso_utc(SystemTime::now()))
            .arg(max_heartbeat.map(|m| m.to_string()).unwrap_or_default())
            .invoke_async(&mut self.con())
            .await
            .map_err(backend("fail"))?;
        Ok(moved == 1)
    }

    async fn failed_records(&self, queue: &str) -> Result<Vec<String>, DriverError> {
        self.failed_records_in(queue, 0, -1).await
    }

    /// A queue's failed records from index `start` to `stop` (`LRANGE`'s; oldest first).
    async fn failed_records_in(
        &self,
        queue: &str,
        start: isize,
        stop: isize,
    ) -> Result<Vec<String>, DriverError> {
        let keys = self.layout.queue(queue);
        let raw: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(&keys.failed)
            .arg(start)
            .arg(stop)
            .query_async(&mut self.con())
            .await
            .map_err(backend("list failed jobs"))?;
        Ok(raw
            .into_iter()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .collect())
    }
}

#[async_trait]
impl QueueDriver for RedisDriver {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn acquire_slot(
        &self,
        name: &str,
        holder: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<Slot, DriverError> {
        let (taken, free_in): (i64, i64) = scripts::SLOT_ACQUIRE
            .key(self.layout.slot(name))
            .arg(holder)
            .arg(limit)
            .arg(ttl_micros(ttl))
            .invoke_async(&mut self.con())
            .await
            .map_err(backend("acquire slot"))?;
        Ok(if taken == 1 {
            Slot::TAKEN
        } else {
            Slot::refused(Duration::from_micros(u64::try_from(free_in).unwrap_or(0)))
        })
    }

    async fn release_slot(&self, name: &str, holder: Option<&str>) -> Result<(), DriverError> {
        let key = self.layout.slot(name);
        let mut con = self.con();
        let command = match holder {
            Some(holder) => redis::cmd("ZREM").arg(&key).arg(holder).clone(),
            None => redis::cmd("DEL").arg(&key).clone(),
        };
        let _: i64 = command
            .query_async(&mut con)
            .await
            .map_err(backend("release slot"))?;
        Ok(())
    }

    async fn held_slots(&self, names: &[String]) -> Result<Vec<bool>, DriverError> {
        slot_reads::held_slots(self, names).await
    }

    async fn batch_create(&self, batch: &BatchRow) -> Result<(), DriverError> {
        batches::create(self, batch).await
    }

    async fn batch_read(
        &self,
        id: &str,
        job: Option<&str>,
    ) -> Result<Option<(BatchRow, Option<String>)>, DriverError> {
        batches::read(self, id, job).await
    }

    async fn batch_write(&self, write: &BatchWrite<'_>) -> Result<bool, DriverError> {
        batches::write(self, write).await
    }

    async fn batch_list(&self, limit: usize) -> Result<Vec<BatchRow>, DriverError> {
        batches::list(self, limit).await
    }

    async fn batch_prune(&self, prune: BatchPrune) -> Result<u64, DriverError> {
        batches::prune(self, prune).await
    }

    async fn worker_beat(&self, row: &WorkerRow) -> Result<bool, DriverError> {
        workers::beat(self, row).await
    }

    async fn worker_rows(&self, since: i64) -> Result<Option<Vec<WorkerRow>>, DriverError> {
        workers::rows(self, since).await
    }

    async fn worker_prune(&self, before: i64) -> Result<u64, DriverError> {
        workers::prune(self, before).await
    }

    async fn failed_recent(
        &self,
        queue: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FailedJob>, DriverError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Failed records are appended: a queue's newest are at the end of its list.
        let start = -isize::try_from(limit).unwrap_or(isize::MAX);
        let queues = super::queue_or_all(self, queue).await?;
        let mut jobs = Vec::new();
        for queue in queues {
            let newest = self.failed_records_in(&queue, start, -1).await?;
            jobs.extend(newest.iter().rev().filter_map(|r| failed_job(r, &queue)));
        }
        // Stable: jobs failed at the same time stay newest first.
        jobs.sort_by_key(|job| std::cmp::Reverse(job.failed_at));
        jobs.truncate(limit);
        Ok(jobs)
    }

    async fn rewrite_payloads(&self, edit: Editor<'_>) -> Result<Rewritten, DriverError> {
        rewrite::rewrite(self, edit).await
    }

    async fn remove(&self, id: &str) -> Result<Removal, DriverError> {
        remove::remove(self, id).await
    }

    async fn slot_holders(&self, name: &str) -> Result<Vec<(String, Duration)>, DriverError> {
        slot_reads::holders(self, name).await
    }

    async fn renew_slot(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, DriverError> {
        let renewed: i64 = scripts::SLOT_RENEW
            .key(self.layout.slot(name))
            .arg(holder)
            .arg(ttl_micros(ttl))
            .invoke_async(&mut self.con())
            .await
            .map_err(backend("renew slot"))?;
        Ok(renewed == 1)
    }

    async fn push(&self, jobs: &[NewJob]) -> Result<Vec<String>, DriverError> {
        let Some(replicated) = &self.durability else {
            return self.store(&mut self.con(), jobs).await;
        };
        // Each run of one queue's jobs on its primary, in dispatch order.
        let mut ids = Vec::with_capacity(jobs.len());
        for run in jobs.chunk_by(|a, b| a.queue == b.queue) {
            ids.extend(self.store_replicated(replicated, run).await?);
        }
        Ok(ids)
    }

    async fn reserve(
        &self,
        queues: &[String],
        max: usize,
    ) -> Result<Vec<ReservedJob>, DriverError> {
        self.lease_ready(queues, max, true).await
    }

    async fn prefetch(
        &self,
        queues: &[String],
        max: usize,
    ) -> Result<Vec<ReservedJob>, DriverError> {
        self.lease_ready(queues, max, false).await
    }

    async fn start(&self, leases: &[Lease]) -> Result<Vec<Option<Lease>>, DriverError> {
        self.ack_and_start(&[], leases).await
    }

    async fn ack(&self, leases: &[Lease]) -> Result<(), DriverError> {
        self.ack_and_start(leases, &[]).await.map(drop)
    }

    async fn ack_and_start(
        &self,
        finished: &[Lease],
        starting: &[Lease],
    ) -> Result<Vec<Option<Lease>>, DriverError> {
        let now = epoch(SystemTime::now());
        let mut queues = by_queue(finished);
        let starts = by_queue(starting);
        for queue in starts.keys() {
            queues.entry(queue).or_default();
        }
        let mut started = vec![None; starting.len()];
        for (queue, acks) in queues {
            let keys = self.layout.queue(queue);
            let mut invocation = scripts::ACK_START.prepare_invoke();
            invocation
                .key(&keys.inflight)
                .key(&keys.leases)
                .key(&keys.leased)
                .key(&keys.seq)
                .key(&keys.ready)
                .key(&keys.delayed)
                .key(&keys.prio)
                .key(&keys.failed)
                .arg(now)
                .arg(acks.len());
            for i in acks {
                invocation.arg(&finished[i].id).arg(&finished[i].token);
            }
            let to_start = starts.get(queue).map_or(&[][..], Vec::as_slice);
            for &i in to_start {
                invocation.arg(&starting[i].id).arg(&starting[i].token);
            }
            let held: Vec<u8> = invocation
                .invoke_async(&mut self.con())
                .await
                .map_err(backend("ack"))?;
            for (&i, held) in to_start.iter().zip(held) {
                let lease = &starting[i];
                started[i] = (held == 1).then(|| lease.started(lease.attempts.saturating_add(1)));
            }
        }
        Ok(started)
    }

    async fn release(
        &self,
        lease: &Lease,
        delay: Duration,
        refund_attempt: bool,
    ) -> Result<bool, DriverError> {
        self.release_with(lease, delay, refund_attempt, None).await
    }

    async fn fail(&self, lease: &Lease, failure: &Failure) -> Result<bool, DriverError> {
        self.fail_with(lease, failure, None).await
    }

    async fn extend(&self, leases: &[Lease]) -> Result<usize, DriverError> {
        let now = epoch(SystemTime::now());
        let mut held = 0;
        for (queue, indexes) in by_queue(leases) {
            let keys = self.layout.queue(queue);
            let mut invocation = scripts::EXTEND.prepare_invoke();
            invocation.key(&keys.inflight).key(&keys.leases).arg(now);
            for i in indexes {
                invocation.arg(&leases[i].id).arg(&leases[i].token);
            }
            let count: i64 = invocation
                .invoke_async(&mut self.con())
                .await
                .map_err(backend("extend"))?;
            held += usize::try_from(count).unwrap_or(0);
        }
        Ok(held)
    }

    async fn reap(
        &self,
        queues: &[String],
        visibility_timeout: Duration,
        max_tries_override: Option<u32>,
        connection: &str,
    ) -> Result<Reaped, DriverError> {
        let cutoff = epoch(SystemTime::now()) - visibility_timeout.as_secs_f64();
        let mut reaped = Reaped::default();
        for queue in queues {
            let keys = self.layout.queue(queue);
            let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                .arg(&keys.leases)
                .arg("-inf")
                .arg(format!("({cutoff}"))
                .arg("LIMIT")
                .arg(0)
                .arg(REAP_BATCH)
                .query_async(&mut self.con())
                .await
                .map_err(backend("reap"))?;
            if ids.is_empty() {
                continue;
            }
            // Read together (MULTI): a token and its record, as of one moment.
            let (values, records): (Vec<Option<Vec<u8>>>, Vec<Option<Vec<u8>>>) = redis::pipe()
                .atomic()
                .cmd("HMGET")
                .arg(&keys.inflight)
                .arg(&ids)
                .cmd("HMGET")
                .arg(&keys.leased)
                .arg(&ids)
                .query_async(&mut self.con())
                .await
                .map_err(backend("reap"))?;
            for ((id, value), record) in ids.iter().zip(values).zip(records) {
                let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
                let (value, record) = (value.map(text), record.map(text));
                let lease = value
                    .as_deref()
                    .and_then(|value| read_lease(value, record.as_deref()));
                let Some((token, attempts, record)) = lease else {
                    // A lease without its job (a key evicted, or released since it was read):
                    // drop what is left, if it is still as read.
                    let _: i64 = scripts::ORPHAN
                        .key(&keys.inflight)
                        .key(&keys.leased)
                        .key(&keys.leases)
                        .arg(id)
                        .arg(value.as_deref().unwrap_or(""))
                        .invoke_async(&mut self.con())
                        .await
                        .map_err(backend("reap"))?;
                    continue;
                };
                let lease = Lease {
                    id: id.clone(),
                    queue: queue.clone(),
                    attempts,
                    token,
                };
                let payload = parse_record(&record);
                if out_of_tries(&payload, attempts, max_tries_override) {
                    let failure = Failure {
                        connection: connection.to_owned(),
                        exception: super::reservation_expired_message(visibility_timeout),
                    };
                    if self.fail_with(&lease, &failure, Some(cutoff)).await? {
                        reaped.failed += 1;
                        reaped.expired.push(ReservedJob::counted(lease, payload));
                    }
                } else {
                    reaped.requeued += u64::from(
                        self.release_with(&lease, Duration::ZERO, false, Some(cutoff))
                            .await?,
                    );
                }
            }
        }
        Ok(reaped)
    }

    async fn size(&self, queue: &str) -> Result<u64, DriverError> {
        let keys = self.layout.queue(queue);
        let (ready, prioritized, delayed): (u64, u64, u64) = redis::pipe()
            .cmd("LLEN")
            .arg(&keys.ready)
            .cmd("ZCARD")
            .arg(&keys.prio)
            .cmd("ZCARD")
            .arg(&keys.delayed)
            .query_async(&mut self.con())
            .await
            .map_err(backend("size"))?;
        Ok(ready + prioritized + delayed)
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, DriverError> {
        let keys = self.layout.queue(queue);
        let now = epoch(SystemTime::now());
        let (ready, prioritized, reserved, delayed, due, failed, head, first): (
            u64,
            u64,
            u64,
            u64,
            u64,
            u64,
            Option<String>,
            Vec<String>,
        ) = redis::pipe()
            .cmd("LLEN")
            .arg(&keys.ready)
            .cmd("ZCARD")
            .arg(&keys.prio)
            .cmd("HLEN")
            .arg(&keys.inflight)
            .cmd("ZCARD")
            .arg(&keys.delayed)
            .cmd("ZCOUNT")
            .arg(&keys.delayed)
            .arg("-inf")
            .arg(now)
            .cmd("LLEN")
            .arg(&keys.failed)
            .cmd("LINDEX")
            .arg(&keys.ready)
            .arg(0)
            .cmd("ZRANGE")
            .arg(&keys.prio)
            .arg(0)
            .arg(0)
            .query_async(&mut self.con())
            .await
            .map_err(backend("stats"))?;
        // The list's head is its oldest job; the prioritized set's first, the next to run, stands
        // in for its own (an approximation: the set is ordered by priority).
        let created = |record: &str| {
            #[derive(Deserialize)]
            struct Created {
                created_at: Option<String>,
            }
            let created = serde_json::from_str::<Created>(record).ok()?.created_at?;
            parse_utc(&created)
        };
        let oldest = head
            .as_deref()
            .and_then(created)
            .into_iter()
            .chain(first.first().and_then(|record| created(record)))
            .min();
        Ok(QueueStats {
            queue: queue.to_owned(),
            // Delayed jobs that are due count as ready: the next reservation promotes them.
            ready: ready + prioritized + due,
            reserved,
            delayed: delayed.saturating_sub(due),
            failed,
            oldest_ready_age_seconds: oldest
                .and_then(|at| SystemTime::now().duration_since(at).ok())
                .map_or(0.0, |age| age.as_secs_f64()),
        })
    }

    async fn queues(&self) -> Result<Vec<String>, DriverError> {
        let keys = self
            .con()
            .scan_keys(&self.layout.scan_pattern())
            .await
            .map_err(backend("list queues"))?;
        let names: std::collections::BTreeSet<String> = keys
            .iter()
            .filter(|k| !k.ends_with(":seq"))
            .filter_map(|k| self.layout.queue_of(k))
            .collect();
        Ok(names.into_iter().collect())
    }

    async fn next_due(&self, queues: &[String]) -> Result<Option<Duration>, DriverError> {
        let mut pipe = redis::pipe();
        for queue in queues {
            pipe.cmd("ZRANGE")
                .arg(self.layout.queue(queue).delayed)
                .arg(0)
                .arg(0)
                .arg("WITHSCORES");
        }
        let firsts: Vec<Vec<(String, f64)>> = self
            .con()
            .spread(&pipe)
            .await
            .map_err(backend("next due"))?;
        let now = epoch(SystemTime::now());
        Ok(firsts
            .iter()
            .filter_map(|first| first.first().map(|(_, score)| *score))
            .reduce(f64::min)
            .map(|due| crate::limits::clamped_secs(due - now)))
    }

    fn wake_signal(&self) -> Option<watch::Receiver<u64>> {
        self.start_subscriber();
        Some(self.wake.subscribe())
    }

    async fn failed_list(&self, queue: Option<&str>) -> Result<Vec<FailedJob>, DriverError> {
        let queues = super::queue_or_all(self, queue).await?;
        let mut jobs = Vec::new();
        for queue in queues {
            jobs.extend(
                self.failed_records(&queue)
                    .await?
                    .iter()
                    .filter_map(|r| failed_job(r, &queue)),
            );
        }
        Ok(jobs)
    }

    async fn failed_get(&self, id: &str) -> Result<Option<FailedJob>, DriverError> {
        let queue =
            keys::queue_of_failed_id(id).ok_or_else(|| DriverError::InvalidId(id.to_owned()))?;
        Ok(self
            .failed_records(queue)
            .await?
            .iter()
            .filter_map(|r| failed_job(r, queue))
            .find(|job| job.id == id))
    }

    async fn failed_retry(&self, id: &str) -> Result<Option<String>, DriverError> {
        let queue =
            keys::queue_of_failed_id(id).ok_or_else(|| DriverError::InvalidId(id.to_owned()))?;
        let keys = self.layout.queue(queue);
        scripts::RETRY_FAILED
            .key(&keys.failed)
            .key(&keys.ready)
            .key(&keys.seq)
            .key(&keys.prio)
            .arg(id)
            .arg(queue)
            .arg(iso_utc(SystemTime::now()))
            .arg(self.layout.wake_channel())
            .invoke_async(&mut self.con())
            .await
            .map_err(backend("retry failed job"))
    }

    async fn failed_retry_all(&self, queue: Option<&str>) -> Result<u64, DriverError> {
        let queues = super::queue_or_all(self, queue).await?;
        let mut retried = 0;
        for queue in queues {
            let keys = self.layout.queue(&queue);
            let mut left: u64 = redis::cmd("LLEN")
                .arg(&keys.failed)
                .query_async(&mut self.con())
                .await
                .map_err(backend("retry failed jobs"))?;
            while left > 0 {
                let (moved, examined): (u64, u64) = scripts::RETRY_FAILED_BATCH
                    .key(&keys.failed)
                    .key(&keys.ready)
                    .key(&keys.seq)
                    .key(&keys.prio)
                    .arg(&queue)
                    .arg(iso_utc(SystemTime::now()))
                    .arg(self.layout.wake_channel())
                    .arg(left.min(RETRY_CHUNK))
                    .invoke_async(&mut self.con())
                    .await
                    .map_err(backend("retry failed jobs"))?;
                retried += moved;
                if examined == 0 {
                    break;
                }
                left = left.saturating_sub(examined);
            }
        }
        Ok(retried)
    }

    async fn failed_forget(&self, id: &str) -> Result<bool, DriverError> {
        let queue =
            keys::queue_of_failed_id(id).ok_or_else(|| DriverError::InvalidId(id.to_owned()))?;
        let removed: i64 = scripts::FORGET_FAILED
            .key(self.layout.queue(queue).failed)
            .arg(id)
            .invoke_async(&mut self.con())
            .await
            .map_err(backend("forget failed job"))?;
        if removed > 0 {
            self.retire_seq(queue).await;
        }
        Ok(removed > 0)
    }

    async fn failed_flush(&self, queue: Option<&str>) -> Result<u64, DriverError> {
        let queues = super::queue_or_all(self, queue).await?;
        let mut flushed = 0;
        for queue in queues {
            let count: u64 = scripts::FLUSH_FAILED
                .key(self.layout.queue(&queue).failed)
                .invoke_async(&mut self.con())
                .await
                .map_err(backend("flush failed jobs"))?;
            self.retire_seq(&queue).await;
            flushed += count;
        }
        Ok(flushed)
    }

    async fn failed_trim(&self, queue: Option<&str>, keep: u64) -> Result<u64, DriverError> {
        let queues = super::queue_or_all(self, queue).await?;
        let mut trimmed = 0;
        for queue in queues {
            // The failed list grows at its tail: keep the last `keep` records, atomically.
            let failed_key = self.layout.queue(&queue).failed;
            let keep = i64::try_from(keep).unwrap_or(i64::MAX);
            let (before, (), after): (u64, (), u64) = redis::pipe()
                .atomic()
                .cmd("LLEN")
                .arg(&failed_key)
                .cmd("LTRIM")
                .arg(&failed_key)
                .arg(if keep == 0 { 1 } else { -keep })
                .arg(if keep == 0 { 0 } else { -1 })
                .cmd("LLEN")
                .arg(&failed_key)
                .query_async(&mut self.con())
                .await
                .map_err(backend("trim failed jobs"))?;
            self.retire_seq(&queue).await;
            trimmed += before.saturating_sub(after);
        }
        Ok(trimmed)
    }

    async fn failed_prune(
        &self,
        queue: Option<&str>,
        older_than: Duration,
    ) -> Result<u64, DriverError> {
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let queues = super::queue_or_all(self, queue).await?;
        let mut pruned = 0;
        for queue in queues {
            let failed_key = self.layout.queue(&queue).failed;
            for record in self.failed_records(&queue).await? {
                let old = failed_job(&record, &queue).is_some_and(|job| job.failed_at < cutoff);
                if old {
                    let removed: u64 = redis::cmd("LREM")
                        .arg(&failed_key)
                        .arg(1)
                        .arg(&record)
                        .query_async(&mut self.con())
                        .await
                        .map_err(backend("prune failed jobs"))?;
                    pruned += removed;
                }
            }
            self.retire_seq(&queue).await;
        }
        Ok(pruned)
    }
}
