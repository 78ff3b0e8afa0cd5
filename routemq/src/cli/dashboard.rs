//! `queue-dashboard`, and the dashboard `queue-work --dashboard` serves beside a worker.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Args;

use super::Failure;
use crate::dashboard::{Auth, Dashboard, DashboardError, DashboardServer};
use crate::driver::QueueDriver;
use crate::queue;
use crate::schedule::Schedule;
use crate::worker::Shutdown;

/// `queue-dashboard` flags.
#[derive(Debug, Clone, Args)]
pub struct DashboardArgs {
    /// Where to serve it: HOST:PORT (port 0: any free port; the address is printed on stdout).
    /// Loopback by default; any other address needs ROUTEMQ_DASHBOARD_TOKEN (or
    /// ROUTEMQ_DASHBOARD_USER and ROUTEMQ_DASHBOARD_PASSWORD).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Hide retry, forget and flush, and refuse every POST.
    #[arg(long)]
    pub read_only: bool,
    /// The connection to show (default: QUEUE_CONNECTION, else sqlite).
    #[arg(long)]
    pub connection: Option<String>,
}

/// Serves the dashboard until SIGTERM or SIGINT.
pub(super) async fn run(args: DashboardArgs, schedule: Schedule) -> Result<(), Failure> {
    let addr = resolve("--addr", &args.addr).await?;
    // Refused before anything else (even an unreachable store): exit code 2.
    crate::dashboard::check_auth(addr, &Auth::from_env()?).map_err(|error| Failure {
        message: error.to_string(),
        code: 2,
    })?;
    let settings = queue().settings()?;
    let connection = args
        .connection
        .clone()
        .unwrap_or_else(|| settings.default_connection.clone());
    let driver = queue().connection(&connection).await?;
    let _server = serve(addr, driver, connection, args.read_only, schedule).await?;
    let shutdown = Shutdown::new();
    let signals = tokio::spawn(shutdown.clone().on_signals());
    shutdown.drained().await;
    signals.abort();
    Ok(())
}

/// Starts a dashboard of `driver` on `addr`, with the authentication the environment gives and
/// the binary's schedules.
pub(super) async fn serve(
    addr: SocketAddr,
    driver: Arc<dyn QueueDriver>,
    connection: String,
    read_only: bool,
    schedule: Schedule,
) -> Result<DashboardServer, Failure> {
    let mut dashboard = Dashboard::new(driver, connection)
        .auth(Auth::from_env()?)
        .read_only(read_only);
    if !schedule.is_empty() {
        let scheduler = super::schedule::scheduler(schedule, queue())?;
        dashboard = dashboard.schedules(scheduler);
    }
    let server = dashboard.serve(addr).await.map_err(|error| Failure {
        code: match error {
            DashboardError::AuthRequired { .. } => 2,
            _ => 1,
        },
        message: error.to_string(),
    })?;
    // On stdout, for scripts (with port 0 the port is the system's choice).
    println!("dashboard at http://{}/", server.addr());
    Ok(server)
}

/// The first address `value` resolves to (`127.0.0.1:8080`, `localhost:8080`, `[::1]:8080`).
pub(super) async fn resolve(flag: &str, value: &str) -> Result<SocketAddr, Failure> {
    let invalid = |reason: String| Failure {
        message: format!("{flag} {value}: {reason}"),
        code: 2,
    };
    let mut found = tokio::net::lookup_host(value)
        .await
        .map_err(|error| invalid(format!("not a HOST:PORT that resolves ({error})")))?;
    found
        .next()
        .ok_or_else(|| invalid("resolves to no address".to_owned()))
}
