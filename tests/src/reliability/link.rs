//! A TCP link between a worker and its broker that the suite can slow down, make lossy or cut:
//! a proxy on a loopback port of its own. (This machine's kernel has no `netem` queueing
//! discipline, so latency and loss are made here, in user space, per chunk of bytes.)
//!
//! - latency: each chunk waits before it is passed on, in both directions;
//! - loss: a chunk is held for a TCP retransmission timeout (200 to 400 ms) now and then, which
//!   is what a lost packet costs a TCP connection;
//! - partition: nothing passes in either direction and connections stay open, as when packets
//!   are dropped on the way; what was sent arrives once the link heals, if the peers are still
//!   waiting.
//!
//! Apart from the mode, the link can hold the client's writes that contain given bytes (a
//! statement's text, say) until told otherwise: a client cut off at a chosen point of its
//! conversation with the server, for tests that need that point exactly.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the link does to the bytes it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Passes them on at once.
    Clear,
    /// Passes each chunk on after this long.
    Latency(Duration),
    /// Holds a chunk for a retransmission timeout with this chance, in percent.
    Loss(u8),
    /// Passes nothing.
    Partition,
}

#[derive(Debug, Default)]
struct State {
    kind: AtomicU8,
    value: AtomicU64,
    /// The client's writes containing any of these are held.
    holds: Mutex<Vec<Vec<u8>>>,
    /// How many client writes have been held so far.
    held: AtomicU64,
}

impl State {
    fn set(&self, mode: Mode) {
        let (kind, value) = match mode {
            Mode::Clear => (0, 0),
            Mode::Latency(delay) => (1, u64::try_from(delay.as_micros()).unwrap_or(u64::MAX)),
            Mode::Loss(percent) => (2, u64::from(percent)),
            Mode::Partition => (3, 0),
        };
        self.value.store(value, Ordering::SeqCst);
        self.kind.store(kind, Ordering::SeqCst);
    }

    fn get(&self) -> Mode {
        let value = self.value.load(Ordering::SeqCst);
        match self.kind.load(Ordering::SeqCst) {
            1 => Mode::Latency(Duration::from_micros(value)),
            2 => Mode::Loss(u8::try_from(value).unwrap_or(100)),
            3 => Mode::Partition,
            _ => Mode::Clear,
        }
    }

    fn holds(&self, chunk: &[u8]) -> bool {
        let holds = self
            .holds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        holds
            .iter()
            .any(|pattern| chunk.windows(pattern.len()).any(|window| window == pattern))
    }
}

/// The proxy; it stops, and drops every connection, when dropped.
#[derive(Debug)]
pub struct FaultyLink {
    port: u16,
    state: Arc<State>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl FaultyLink {
    /// A link to `upstream` (`host:port`) on a spare loopback port.
    pub async fn start(upstream: String) -> Result<Self, String> {
        Self::start_at("127.0.0.1", upstream).await
    }

    /// A link to `upstream` on a spare port of the local address `address` (a bridge's, for
    /// hosts in network namespaces: see [`netns`](super::netns)).
    pub async fn start_at(address: &str, upstream: String) -> Result<Self, String> {
        let listener = TcpListener::bind((address, 0))
            .await
            .map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let state = Arc::new(State::default());
        let acceptor = {
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let mut connections = tokio::task::JoinSet::new();
                while let Ok((client, _)) = listener.accept().await {
                    let (state, upstream) = (Arc::clone(&state), upstream.clone());
                    connections.spawn(async move {
                        if let Ok(server) = TcpStream::connect(&upstream).await {
                            carry(client, server, state).await;
                        }
                    });
                }
            })
        };
        Ok(Self {
            port,
            state,
            acceptor,
        })
    }

    /// The port to connect to instead of the broker's.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Changes what the link does, for every connection, from now on.
    pub fn set(&self, mode: Mode) {
        self.state.set(mode);
    }

    /// From now on, holds each write from a client that contains one of `patterns` (none: lets
    /// everything through), including writes already held: a held write that matches none of
    /// the new patterns goes on.
    pub fn hold(&self, patterns: &[&[u8]]) {
        *self
            .state
            .holds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            patterns.iter().map(|pattern| pattern.to_vec()).collect();
    }

    /// How many writes from clients have been held so far (whether or not they went on since).
    pub fn held(&self) -> u64 {
        self.state.held.load(Ordering::SeqCst)
    }
}

impl Drop for FaultyLink {
    fn drop(&mut self) {
        // Aborting the acceptor drops its set of connections, which aborts each of them.
        self.acceptor.abort();
    }
}

/// Carries both directions of one connection until either side closes it.
async fn carry(client: TcpStream, server: TcpStream, state: Arc<State>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = pump(client_read, server_write, Arc::clone(&state), true) => {}
        () = pump(server_read, client_write, state, false) => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: Arc<State>,
    from_client: bool,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if from_client && state.holds(&buffer[..read]) {
            state.held.fetch_add(1, Ordering::SeqCst);
            while state.holds(&buffer[..read]) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        loop {
            match state.get() {
                Mode::Clear => break,
                Mode::Latency(delay) => {
                    tokio::time::sleep(delay).await;
                    break;
                }
                Mode::Loss(percent) => {
                    if fastrand::u8(..100) < percent {
                        let rto = Duration::from_millis(fastrand::u64(200..=400));
                        tokio::time::sleep(rto).await;
                    }
                    break;
                }
                Mode::Partition => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// `url` with its `127.0.0.1:PORT` pointed at `port` instead.
pub fn through(url: &str, port: u16) -> Option<String> {
    via(url, "127.0.0.1", port)
}

/// `url` with its `127.0.0.1:PORT` pointed at `host:port` instead.
pub fn via(url: &str, host: &str, port: u16) -> Option<String> {
    let at = url.find("127.0.0.1:")?;
    let after = at + "127.0.0.1:".len();
    let digits = url[after..].bytes().take_while(u8::is_ascii_digit).count();
    Some(format!(
        "{}{host}:{port}{}",
        &url[..at],
        &url[after + digits..]
    ))
}

/// The `host:port` a URL on 127.0.0.1 points at.
pub fn upstream(url: &str) -> Option<String> {
    let at = url.find("127.0.0.1:")?;
    let rest = &url[at + "127.0.0.1:".len()..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    Some(format!("127.0.0.1:{}", &rest[..digits]))
}
