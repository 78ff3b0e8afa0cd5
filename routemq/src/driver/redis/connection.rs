//! The driver's connection: one Redis server through a connection manager, or a Redis Cluster
//! through redis-rs's cluster client, which follows `MOVED` and `ASK` redirections and finds a
//! failed primary's replacement by itself.
//!
//! Every script and every `MULTI` touches one queue's keys (one slot, with the hash-tag layout
//! a cluster connection forces). What reads several queues at once (the next due time of
//! several queues, which slot names have holders) goes through [`Connection::spread`], and the
//! key scan of [`Connection::scan_keys`] visits every primary.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value};

/// One server or a cluster; cheap to clone (both multiplex one connection per server).
#[derive(Clone)]
pub(super) enum Connection {
    /// One server (or a primary that replicas follow), through a connection manager.
    Single(ConnectionManager),
    /// One server, on one connection that does not reconnect by itself (dispatches that wait
    /// for replicas: see `RedisDriver::wait_for_replicas`).
    Multiplexed(MultiplexedConnection),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(con) => con.req_packed_command(cmd),
            Self::Multiplexed(con) => con.req_packed_command(cmd),
            Self::Cluster(con) => con.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(con) => con.req_packed_commands(pipeline, offset, count),
            Self::Multiplexed(con) => con.req_packed_commands(pipeline, offset, count),
            Self::Cluster(con) => con.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(con) => con.get_db(),
            Self::Multiplexed(con) => con.get_db(),
            Self::Cluster(con) => con.get_db(),
        }
    }
}

impl Connection {
    /// Whether this is a cluster.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// Runs the commands of `pipe` (not `MULTI`), whose keys may lie in different slots: as one
    /// pipeline on one server; on a cluster, each command on its own, all at once, since a
    /// cluster pipeline must stay within one slot.
    pub(super) async fn spread<T: FromRedisValue>(&mut self, pipe: &Pipeline) -> RedisResult<T> {
        match self {
            Self::Cluster(con) => {
                let replies = pipe.cmd_iter().map(|cmd| {
                    let mut con = con.clone();
                    async move { cmd.query_async::<Value>(&mut con).await }
                });
                let values = futures_util::future::try_join_all(replies).await?;
                Ok(T::from_redis_value(Value::Array(values))?)
            }
            con => pipe.query_async(con).await,
        }
    }

    /// Every key that matches `pattern` (a `SCAN` pattern), on every primary of a cluster.
    pub(super) async fn scan_keys(&mut self, pattern: &str) -> RedisResult<Vec<String>> {
        let routes = match self {
            Self::Cluster(con) => primaries(con).await?.into_iter().map(Some).collect(),
            _ => vec![None],
        };
        let mut keys = Vec::new();
        for route in routes {
            let mut cursor: u64 = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000);
                let (next, found): (u64, Vec<String>) = self.on(route.as_ref(), &scan).await?;
                keys.extend(found);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(keys)
    }

    /// Waits until `replicas` replicas have every write made so far on this connection
    /// (`WAIT`), at most `timeout`; returns how many did. Only meaningful on a connection to one
    /// server that does not reconnect by itself (see `replicas`).
    pub(super) async fn wait_for_replicas(
        &mut self,
        replicas: u32,
        timeout: Duration,
    ) -> RedisResult<u32> {
        redis::cmd("WAIT")
            .arg(replicas)
            .arg(
                u64::try_from(timeout.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            )
            .query_async(self)
            .await
    }

    /// `cmd` on the server `route` names (a cluster), or on the connection's one server.
    async fn on<T: FromRedisValue>(
        &mut self,
        route: Option<&SingleNodeRoutingInfo>,
        cmd: &Cmd,
    ) -> RedisResult<T> {
        match (self, route) {
            (Self::Cluster(con), Some(route)) => {
                let routing = RoutingInfo::SingleNode(route.clone());
                let value = con.route_command(cmd.clone(), routing).await?;
                Ok(T::from_redis_value(value)?)
            }
            (con, _) => cmd.query_async(con).await,
        }
    }
}

/// A range of a cluster's slots and the primary that serves it.
pub(super) struct SlotRange {
    /// The first and the last slot.
    pub(super) slots: std::ops::RangeInclusive<i64>,
    /// The primary's host, as the cluster announces it.
    pub(super) host: String,
    /// The primary's port.
    pub(super) port: u16,
}

/// `CLUSTER SLOTS` on `con`: each range of slots, with its primary.
pub(super) async fn slot_ranges(con: &mut impl ConnectionLike) -> RedisResult<Vec<SlotRange>> {
    let slots: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(con).await?;
    let mut ranges = Vec::new();
    for range in slots {
        // [start, end, [host, port, id, ...], replicas...]
        let Value::Array(fields) = range else {
            continue;
        };
        let (Some(start), Some(end), Some(Value::Array(primary))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            continue;
        };
        let (Some(host), Some(port)) = (primary.first(), primary.get(1)) else {
            continue;
        };
        ranges.push(SlotRange {
            slots: i64::from_redis_value_ref(start)?..=i64::from_redis_value_ref(end)?,
            host: String::from_redis_value_ref(host)?,
            port: u16::from_redis_value_ref(port)?,
        });
    }
    Ok(ranges)
}

/// The cluster's primaries, one route to each (by address, from `CLUSTER SLOTS`).
async fn primaries(con: &mut ClusterConnection) -> RedisResult<Vec<SingleNodeRoutingInfo>> {
    let mut routes: Vec<SingleNodeRoutingInfo> = Vec::new();
    for SlotRange { host, port, .. } in slot_ranges(con).await? {
        let route = SingleNodeRoutingInfo::ByAddress { host, port };
        if !routes.contains(&route) {
            routes.push(route);
        }
    }
    Ok(routes)
}
