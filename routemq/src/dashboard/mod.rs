//! The web dashboard: queues, workers, failed jobs, job types, batches and schedules in a
//! browser, on every driver, with no other service to run.
//!
//! `queue-dashboard --addr 127.0.0.1:8080` serves it from any binary that calls
//! `routemq::cli::main()` (the `cli` feature), and `queue-work --dashboard ADDR` beside a worker.
//! In code:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use routemq::dashboard::{Auth, Dashboard};
//!
//! let driver = routemq::queue().connection("sqlite").await?;
//! let server = Dashboard::new(driver, "sqlite")
//!     .auth(Auth::from_env()?)
//!     .serve("127.0.0.1:8080".parse()?)
//!     .await?;
//! println!("dashboard at http://{}/", server.addr());
//! tokio::signal::ctrl_c().await?; // it serves until `server` is dropped
//! # Ok(()) }
//! ```
//!
//! The pages are HTML, CSS and JavaScript compiled into the binary (no CDN: it works offline),
//! and read a small JSON API (the overview every 2 s, job types and batches every 4 s; the
//! failed-job pages when opened, filtered or acted on). Times are ISO 8601 text, except in
//! worker records (milliseconds since the Unix epoch):
//!
//! | route | what it gives |
//! |---|---|
//! | `GET /api/session` | `{csrf, read_only, connection, driver, version}` |
//! | `GET /api/overview` | per-queue counts, the workers of the last hour, jobs per minute over the last hour |
//! | `GET /api/failed?queue=&job=&q=&hours=&page=&per_page=` | failed jobs, newest first, filtered and paginated |
//! | `GET /api/failed/{id}` | one failed job: envelope and data pretty-printed, exception, time |
//! | `POST /api/failed/{id}/retry`, `POST /api/failed/{id}/forget` | as `queue-retry ID`, `queue-forget ID` |
//! | `POST /api/failed/retry-all`, `POST /api/failed/flush` | as `queue-retry --all`, `queue-flush` (body `{"queue": ..}` or `{}`) |
//! | `GET /api/job-types` | `{items, workers_error}`: the job types linked in, their `#[job]` options, recent runs, failure rate, p50/p95 runtimes |
//! | `GET /api/batches`, `GET /api/schedules` | batches with their progress; schedules with their next and last run |
//! | `GET /metrics`, `GET /health` | Prometheus metrics, and `ok` |
//!
//! # Security
//! - It binds to loopback unless told otherwise; any other address needs [`Auth`] (a token or
//!   a user and password, from `ROUTEMQ_DASHBOARD_TOKEN` or `ROUTEMQ_DASHBOARD_USER` and
//!   `ROUTEMQ_DASHBOARD_PASSWORD`), and [`Dashboard::serve`] refuses to start without it.
//!   Browsers ask for it as HTTP basic auth (a token is the password, any user name); API clients
//!   may send `Authorization: Bearer TOKEN`. `/health` needs none.
//! - Without auth (loopback), requests must name a loopback host (`Host: localhost:8080`), so a
//!   web page cannot reach the dashboard through DNS rebinding.
//! - Actions are `POST` requests carrying the session's CSRF token in `X-CSRF-Token`; a read-only
//!   dashboard ([`Dashboard::read_only`]) hides them and refuses every `POST`.
//! - Pages put job data into the document only as text, never as markup, under a
//!   `Content-Security-Policy` that runs no inline script.

mod api;
mod assets;
mod failed;
mod overview;
mod security;
pub(crate) mod serve;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;

pub use security::Auth;

use crate::driver::QueueDriver;
use crate::metrics::server::Source;

/// A dashboard to serve: built with [`Dashboard::new`], started with [`Dashboard::serve`].
#[derive(Debug)]
pub struct Dashboard {
    driver: Arc<dyn QueueDriver>,
    connection: String,
    auth: Auth,
    read_only: bool,
    #[cfg(feature = "schedule")]
    scheduler: Option<crate::schedule::Scheduler<'static>>,
}

/// A running dashboard; dropping it stops the server.
#[derive(Debug)]
#[must_use = "the dashboard stops when this is dropped"]
pub struct DashboardServer {
    server: serve::Server,
}

impl DashboardServer {
    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }
}

/// Why a dashboard did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DashboardError {
    /// A non-loopback address without [`Auth`].
    #[error(
        "refusing to serve the dashboard on {addr} without authentication: set ROUTEMQ_DASHBOARD_TOKEN \
         (or ROUTEMQ_DASHBOARD_USER and ROUTEMQ_DASHBOARD_PASSWORD), or bind to 127.0.0.1"
    )]
    AuthRequired {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The address could not be bound.
    #[error("cannot serve the dashboard on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
}

/// Refuses a non-loopback `addr` without authentication.
pub(crate) fn check_auth(addr: SocketAddr, auth: &Auth) -> Result<(), DashboardError> {
    if addr.ip().is_loopback() || *auth != Auth::None {
        Ok(())
    } else {
        Err(DashboardError::AuthRequired { addr })
    }
}

/// What every request handler reads.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) driver: Arc<dyn QueueDriver>,
    pub(crate) connection: String,
    pub(crate) auth: Auth,
    pub(crate) read_only: bool,
    /// Whether requests must name a loopback host (served without auth).
    pub(crate) loopback_hosts_only: bool,
    /// The token every `POST` must carry.
    pub(crate) csrf: String,
    pub(crate) metrics: Arc<Source>,
    #[cfg(feature = "schedule")]
    pub(crate) scheduler: Option<crate::schedule::Scheduler<'static>>,
}

/// The router's state.
#[derive(Debug, Clone)]
pub(crate) struct Shared(pub(crate) Arc<Context>);

impl FromRef<Shared> for Arc<Source> {
    fn from_ref(shared: &Shared) -> Self {
        Arc::clone(&shared.0.metrics)
    }
}

impl Dashboard {
    /// A dashboard of `driver`'s store, which the pages call `connection`: read-write, without
    /// authentication (so it serves loopback addresses only).
    pub fn new(driver: Arc<dyn QueueDriver>, connection: impl Into<String>) -> Self {
        Self {
            driver,
            connection: connection.into(),
            auth: Auth::None,
            read_only: false,
            #[cfg(feature = "schedule")]
            scheduler: None,
        }
    }

    /// Requires this authentication ([`Auth::from_env`] reads it from the environment). An
    /// empty token, user or password counts as none.
    #[must_use]
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth.checked();
        self
    }

    /// Hides retry, forget and flush, and refuses every `POST`.
    #[must_use]
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Lists these schedules on the Schedules page.
    #[cfg(feature = "schedule")]
    #[cfg_attr(docsrs, doc(cfg(feature = "schedule")))]
    #[must_use]
    pub fn schedules(mut self, scheduler: crate::schedule::Scheduler<'static>) -> Self {
        self.scheduler = Some(scheduler);
        self
    }

    /// Binds `addr` and serves the dashboard. A non-loopback address without [`Auth`] is refused.
    pub async fn serve(self, addr: SocketAddr) -> Result<DashboardServer, DashboardError> {
        check_auth(addr, &self.auth)?;
        let router = self.router(addr.ip().is_loopback());
        let server = serve::start(addr, router)
            .await
            .map_err(|source| DashboardError::Bind { addr, source })?;
        tracing::info!(addr = %server.addr, "serving the dashboard at http://{}/", server.addr);
        Ok(DashboardServer { server })
    }

    fn router(self, loopback: bool) -> Router {
        let mut csrf = [0_u8; 24];
        // Without the system's randomness the token is still unguessable enough for a
        // loopback-only server; log it, as such a system has bigger trouble.
        if let Err(error) = getrandom::getrandom(&mut csrf) {
            tracing::warn!(%error, "no system randomness for the dashboard's CSRF token");
            csrf.iter_mut().for_each(|b| *b = fastrand::u8(..));
        }
        let context = Context {
            metrics: Arc::new(Source {
                driver: Arc::clone(&self.driver),
                queues: Vec::new(),
            }),
            driver: self.driver,
            connection: self.connection,
            loopback_hosts_only: loopback && matches!(self.auth, Auth::None),
            auth: self.auth,
            read_only: self.read_only,
            csrf: csrf.iter().map(|b| format!("{b:02x}")).collect(),
            #[cfg(feature = "schedule")]
            scheduler: self.scheduler,
        };
        let shared = Shared(Arc::new(context));
        api::routes()
            .merge(assets::routes())
            .merge(crate::metrics::server::routes())
            .layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                security::guard,
            ))
            .with_state(shared)
    }
}
