//! Dispatches that wait for replicas (`REDIS_WAIT_REPLICAS`): each is written, and then waited
//! for with `WAIT`, on one plain connection to the primary that holds its queue.
//!
//! `WAIT` confirms the writes made so far *on its own connection*, and holds that connection up
//! until it returns. So these dispatches do not use the driver's shared connection (their `WAIT`
//! would hold up every reservation, heartbeat and acknowledgement behind it), nor any connection
//! that could reconnect, or send a request elsewhere, between the write and its `WAIT`: a
//! connection manager reconnects by itself, and a cluster client sends a request to another node
//! while it repairs a connection or after a failover, where a `WAIT` confirms nothing about the
//! write. A plain connection to one server does neither: if it breaks, the dispatch fails. On a
//! cluster, the queue's primary is looked up (`CLUSTER SLOTS`) for each dispatch; a write that
//! reaches a node no longer serving the slot is refused (`MOVED`), and the dispatch fails.

use std::collections::HashMap;
use std::time::Duration;

use super::connection::{Connection, slot_ranges};
use crate::driver::DriverError;

/// The longest `WAIT` a dispatch makes.
pub const MAX_WAIT: Duration = Duration::from_secs(25);

/// How long a command may take: the longest `WAIT` ([`MAX_WAIT`]) and then some.
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// How many replicas must have a dispatch, for how long a dispatch waits, and the plain
/// connections dispatches go through, by primary (`host:port`; `""` for one server).
pub(super) struct Replicated {
    pub(super) replicas: u32,
    pub(super) timeout: Duration,
    links: tokio::sync::Mutex<HashMap<String, Connection>>,
}

impl Replicated {
    pub(super) fn new(replicas: u32, timeout: Duration) -> Self {
        Self {
            replicas,
            timeout: timeout.min(MAX_WAIT),
            links: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The plain connection to the server of `client` (one server: `address` is `""`), or to the
    /// cluster node at `address` (`host:port`, reached with the scheme and credentials of the
    /// node URL `template`), opened on first use.
    pub(super) async fn link(
        &self,
        client: &redis::Client,
        template: Option<&str>,
        address: &str,
    ) -> Result<Connection, DriverError> {
        let mut links = self.links.lock().await;
        if let Some(con) = links.get(address) {
            return Ok(con.clone());
        }
        let failed = |error: redis::RedisError| DriverError::backend("push", error);
        let client = match template {
            Some(template) => redis::Client::open(at_address(template, address)).map_err(failed)?,
            None => client.clone(),
        };
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let con = Connection::Multiplexed(
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(failed)?,
        );
        links.insert(address.to_owned(), con.clone());
        Ok(con)
    }

    /// Forgets the connection to `address` (after a dispatch through it failed: the next one
    /// opens a new connection).
    pub(super) async fn forget(&self, address: &str) {
        self.links.lock().await.remove(address);
    }
}

/// The `host:port` of the primary that serves `key`'s slot, from `CLUSTER SLOTS` on `cluster`.
pub(super) async fn primary_of(cluster: &mut Connection, key: &str) -> Result<String, DriverError> {
    let slot = i64::from(key_slot(key.as_bytes()));
    let ranges = slot_ranges(cluster)
        .await
        .map_err(|error| DriverError::backend("push", error))?;
    ranges
        .into_iter()
        .find(|range| range.slots.contains(&slot))
        .map(|range| format!("{}:{}", range.host, range.port))
        .ok_or_else(|| {
            DriverError::backend(
                "push",
                format!("no primary serves the slot of {key} (CLUSTER SLOTS)"),
            )
        })
}

/// `url` (`redis://[credentials@]host:port[/…]`) with its `host:port` replaced by `address`.
fn at_address(url: &str, address: &str) -> String {
    let start = url.find("://").map_or(0, |at| at + 3);
    let end = url[start..].find('/').map_or(url.len(), |at| start + at);
    let start = url[start..end]
        .rfind('@')
        .map_or(start, |at| start + at + 1);
    // An IPv6 host from `CLUSTER SLOTS` comes without its brackets.
    let address = match address.rsplit_once(':') {
        Some((host, port)) if host.contains(':') && !host.starts_with('[') => {
            format!("[{host}]:{port}")
        }
        _ => address.to_owned(),
    };
    format!("{}{address}{}", &url[..start], &url[end..])
}

/// The cluster slot of `key`: CRC16 (XMODEM) of its hash tag, or of the whole key without one,
/// modulo 16384, as Redis computes it.
fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|b| *b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|b| *b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    let mut crc: u16 = 0;
    for byte in tagged.unwrap_or(key) {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16_384
}

#[cfg(test)]
mod tests {
    use super::{at_address, key_slot};

    #[test]
    fn node_urls_keep_their_scheme_and_credentials() {
        assert_eq!(
            at_address("rediss://app:pw@10.0.0.1:6379/0", "10.0.0.2:7000"),
            "rediss://app:pw@10.0.0.2:7000/0"
        );
        assert_eq!(at_address("redis://h:1", "k:2"), "redis://k:2");
        assert_eq!(at_address("redis://h:1", "::1:7000"), "redis://[::1]:7000");
    }

    #[test]
    fn slots_are_those_redis_computes() {
        // `CLUSTER KEYSLOT` of each, on Redis 7.0.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"routemq:queue:{emails}"), key_slot(b"emails"));
        assert_eq!(
            key_slot(b"a{}b"),
            key_slot(b"a{}b"),
            "an empty tag is no tag"
        );
        assert_ne!(key_slot(b"a{}b"), key_slot(b""));
    }
}
