//! The hardened accept loop every routemq HTTP endpoint runs on (the dashboard, `/metrics`),
//! serving an axum [`Router`] over HTTP/1.1 with hyper.
//!
//! Built for an endpoint that anything on the network may reach: at most [`MAX_CONNECTIONS`]
//! connections at once (more wait in the kernel's backlog), request headers must arrive within
//! [`HEADER_TIMEOUT`], a connection is closed after [`CONNECTION_TIMEOUT`] (gracefully: a
//! request in flight is answered first), and a failing `accept` (out of file descriptors, say)
//! backs off instead of spinning.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may stay open (keep-alive included) before it is closed.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request in flight at [`CONNECTION_TIMEOUT`] may take to finish.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// A running HTTP server; dropping it stops it, open connections included.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` and serves `router` on it.
pub(crate) async fn start(addr: SocketAddr, router: Router) -> std::io::Result<Server> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(accept_loop(listener, router));
    Ok(Server { addr, task })
}

async fn accept_loop(listener: TcpListener, router: Router) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Dropped with this task (when the server is): every connection ends with it.
    let mut connections = JoinSet::new();
    let mut failures: u32 = 0;
    loop {
        while connections.try_join_next().is_some() {}
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                failures = 0;
                connections.spawn(serve(stream, router.clone(), slot));
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let pause = crate::worker::backoff(failures);
                tracing::warn!(%error, retry_in = ?pause, "HTTP endpoint cannot accept connections");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Serves one connection within the limits, then frees its slot.
async fn serve(stream: TcpStream, router: Router, _slot: OwnedSemaphorePermit) {
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    let mut connection = std::pin::pin!(connection);
    let ended = match tokio::time::timeout(CONNECTION_TIMEOUT, connection.as_mut()).await {
        Ok(ended) => ended,
        Err(_) => {
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(CLOSE_GRACE, connection).await {
                Ok(ended) => ended,
                Err(_) => return,
            }
        }
    };
    if let Err(error) = ended {
        tracing::debug!(%error, "HTTP connection failed");
    }
}
