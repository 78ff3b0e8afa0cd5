//! The HTTP endpoint for Prometheus: `GET /metrics`, and `GET /health` (`ok`), served with hyper.
//!
//! Before each scrape it refreshes the per-queue gauges from the driver, so they are current
//! without a background poll. Hardened for an endpoint that anything on the network may reach: at
//! most [`MAX_CONNECTIONS`] connections at once (more wait in the kernel's backlog), request
//! headers must arrive within [`HEADER_TIMEOUT`], a connection lives at most
//! [`CONNECTION_TIMEOUT`], one request per connection, and a failing `accept` (out of file
//! descriptors, say) backs off instead of spinning.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::metrics;
use crate::driver::QueueDriver;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may last, request and response included.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// A running metrics endpoint; dropping it stops the server.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

/// What a request needs: where the gauges come from.
#[derive(Debug)]
struct Source {
    driver: Arc<dyn QueueDriver>,
    queues: Vec<String>,
}

impl MetricsServer {
    /// Binds `addr` and serves `/metrics`, refreshing the gauges of `queues` from `driver` first.
    pub async fn start(
        addr: SocketAddr,
        driver: Arc<dyn QueueDriver>,
        queues: Vec<String>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "serving Prometheus metrics at /metrics");
        let source = Arc::new(Source { driver, queues });
        let task = tokio::spawn(accept_loop(listener, source));
        Ok(Self { addr, task })
    }

    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, source: Arc<Source>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut failures: u32 = 0;
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                failures = 0;
                tokio::spawn(serve(stream, Arc::clone(&source), slot));
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let pause = crate::worker::backoff(failures);
                tracing::warn!(%error, retry_in = ?pause, "metrics endpoint cannot accept connections");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Serves one connection within the limits, then frees its slot.
async fn serve(stream: TcpStream, source: Arc<Source>, _slot: OwnedSemaphorePermit) {
    let service = hyper::service::service_fn(move |request| {
        let source = Arc::clone(&source);
        async move { Ok::<_, Infallible>(respond(&request, &source).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%error, "metrics connection failed"),
        Err(_) => tracing::debug!("metrics connection timed out"),
    }
}

async fn respond(request: &Request<Incoming>, source: &Source) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            for queue in &source.queues {
                match source.driver.stats(queue).await {
                    Ok(stats) => metrics().queue_stats(&stats),
                    Err(error) => tracing::warn!(%queue, %error, "queue stats for metrics failed"),
                }
            }
            (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics().render(),
            )
        }
        (&Method::GET, "/health") => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}
