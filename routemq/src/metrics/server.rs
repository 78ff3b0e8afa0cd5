//! The Prometheus endpoint alone: `GET /metrics` and `GET /health` (`ok`), as
//! `queue-work --metrics-addr` serves them. The [dashboard](crate::dashboard) serves the same two
//! routes beside its pages.
//!
//! Before each scrape it refreshes the per-queue gauges from the driver, so they are current
//! without a background poll. It runs on the same hardened server as the dashboard: at most
//! [`MAX_CONNECTIONS`] connections at once, headers within [`HEADER_TIMEOUT`], connections
//! closed after [`CONNECTION_TIMEOUT`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::dashboard::serve::{self, Server};
pub use crate::dashboard::serve::{CONNECTION_TIMEOUT, HEADER_TIMEOUT, MAX_CONNECTIONS};

use super::metrics;
use crate::driver::QueueDriver;

/// A running metrics endpoint; dropping it stops the server.
#[derive(Debug)]
#[must_use = "the endpoint stops when this is dropped"]
pub struct MetricsServer {
    server: Server,
}

/// Where the gauges come from.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) driver: Arc<dyn QueueDriver>,
    /// The queues whose gauges are refreshed (empty: every queue the driver knows).
    pub(crate) queues: Vec<String>,
}

impl MetricsServer {
    /// Binds `addr` and serves `/metrics`, refreshing the gauges of `queues` from `driver` first.
    pub async fn start(
        addr: SocketAddr,
        driver: Arc<dyn QueueDriver>,
        queues: Vec<String>,
    ) -> std::io::Result<Self> {
        let router = routes().with_state(Arc::new(Source { driver, queues }));
        let server = serve::start(addr, router).await?;
        tracing::info!(addr = %server.addr, "serving Prometheus metrics at /metrics");
        Ok(Self { server })
    }

    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }
}

/// `/metrics` and `/health`, for a router whose state is a [`Source`].
pub(crate) fn routes<S>() -> Router<S>
where
    Arc<Source>: axum::extract::FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/metrics", get(scrape))
        .route("/health", get(health))
}

/// `GET /health`: the process serves requests.
pub(crate) async fn health() -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/plain")], "ok\n")
}

async fn scrape(State(source): State<Arc<Source>>) -> impl IntoResponse {
    let queues = match source.queues.is_empty() {
        true => source.driver.queues().await.unwrap_or_default(),
        false => source.queues.clone(),
    };
    for queue in &queues {
        match source.driver.stats(queue).await {
            Ok(stats) => metrics().queue_stats(&stats),
            Err(error) => tracing::warn!(%queue, %error, "queue stats for metrics failed"),
        }
    }
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        metrics().render(),
    )
}
