//! A small HTTP endpoint for Prometheus: `GET /metrics` (and `GET /health`).
//!
//! Before each scrape it refreshes the per-queue gauges from the driver, so they are current
//! without a background poll.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::metrics;
use crate::driver::QueueDriver;

/// A running metrics endpoint; dropping it stops the server.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
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
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let driver = Arc::clone(&driver);
                let queues = queues.clone();
                tokio::spawn(async move {
                    if let Err(error) = serve(stream, driver.as_ref(), &queues).await {
                        tracing::debug!(%error, "metrics request failed");
                    }
                });
            }
        });
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

async fn serve(
    mut stream: TcpStream,
    driver: &dyn QueueDriver,
    queues: &[String],
) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..read]);
    }
    let line = String::from_utf8_lossy(&request);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => {
            for queue in queues {
                match driver.stats(queue).await {
                    Ok(stats) => metrics().queue_stats(&stats),
                    Err(error) => tracing::warn!(%queue, %error, "queue stats for metrics failed"),
                }
            }
            (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                metrics().render(),
            )
        }
        ("GET", "/health") => ("200 OK", "text/plain", "ok\n".to_owned()),
        _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
