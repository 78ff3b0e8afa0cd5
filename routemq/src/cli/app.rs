//! [`App`]: the CLI with your application's shared data, setup, middleware and hooks.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

use clap::Parser;

use super::{Cli, Command, RUNTIME_SHUTDOWN, admin, init_logging, schedule, work};
use crate::data::AppData;
use crate::job::BoxError;
use crate::middleware::Middleware;
use crate::schedule::Schedule;
use crate::worker::{Extensions, JobEvent, Lifecycle};

type SetupFuture = Pin<Box<dyn Future<Output = Result<AppData, BoxError>>>>;
type Setup = Box<dyn FnOnce() -> SetupFuture>;

/// The command line of a worker binary, with what your handlers need: shared values
/// ([`App::data`]), values built asynchronously before the command runs ([`App::setup`]), worker
/// middleware and lifecycle hooks.
///
/// ```no_run
/// use routemq::cli::App;
/// use routemq::AppData;
/// use routemq::sqlx::PgPool;
///
/// #[derive(Debug)]
/// struct Settings { sender: String }
///
/// fn main() -> std::process::ExitCode {
///     App::new()
///         .data(Settings { sender: "shop@example.com".into() })
///         .setup(async || {
///             // Runs inside the runtime, before the command: build pools from the environment.
///             let pool = PgPool::connect(&std::env::var("APP_DATABASE_URL")?).await?;
///             Ok(AppData::new().with(pool))
///         })
///         .main()
/// }
/// ```
///
/// Handlers then call `ctx.data::<PgPool>()?` and `ctx.data::<Settings>()?`.
#[derive(Default)]
pub struct App {
    extensions: Extensions,
    setups: Vec<Setup>,
    schedule: Schedule,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("extensions", &self.extensions)
            .field("setups", &self.setups.len())
            .field("schedule", &self.schedule)
            .finish()
    }
}

impl App {
    /// An app with nothing registered (what [`main`](super::main) runs).
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a shared value for handlers ([`JobContext::data`](crate::JobContext::data)).
    #[must_use]
    pub fn data<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions.data.insert(value);
        self
    }

    /// Adds an async setup step. It runs inside the runtime before any command that talks to a
    /// queue (every command but `list-jobs`), in the order added; the values it returns are
    /// registered like [`App::data`]'s. It may also register connections of its own
    /// (`routemq::queue().register(..)`, for a driver built on the application's pool). An error
    /// stops the command with exit code 1.
    #[must_use]
    pub fn setup<F>(mut self, setup: F) -> Self
    where
        F: AsyncFnOnce() -> Result<AppData, BoxError> + 'static,
    {
        self.setups
            .push(Box::new(move || Box::pin(async move { setup().await })));
        self
    }

    /// Adds a worker middleware ([`Worker::middleware`](crate::Worker::middleware)).
    #[must_use]
    pub fn middleware(mut self, middleware: impl Middleware) -> Self {
        self.extensions
            .middleware
            .push(std::sync::Arc::new(middleware));
        self
    }

    /// Adds a lifecycle hook ([`Worker::on`](crate::Worker::on)).
    #[must_use]
    pub fn on(
        mut self,
        when: Lifecycle,
        hook: impl Fn(&JobEvent<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.extensions.add_hook(when, hook);
        self
    }

    /// Adds periodic jobs ([`routemq::schedule()`](crate::schedule())), run by `queue-schedule`
    /// and `queue-work --schedule`, listed by `queue-schedule-list`.
    #[must_use]
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = std::mem::take(&mut self.schedule).merge(schedule);
        self
    }

    /// Loads `.env`, parses the process arguments and runs the command: your binary's `main`.
    pub fn main(self) -> ExitCode {
        crate::config::load_dotenv();
        let cli = Cli::parse();
        self.run(cli)
    }

    /// Runs an already parsed command line.
    pub fn run(self, cli: Cli) -> ExitCode {
        if let Err(error) = init_logging() {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("error: cannot start the async runtime: {error}");
                return ExitCode::FAILURE;
            }
        };
        let result = runtime.block_on(self.execute(cli.command));
        // A handler that never yields keeps its thread busy; do not wait for it at exit.
        runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(failure) => {
                eprintln!("error: {}", failure.message);
                ExitCode::from(failure.code)
            }
        }
    }

    async fn execute(mut self, command: Command) -> Result<(), super::Failure> {
        if !matches!(command, Command::ListJobs(_) | Command::QueueKeygen(_)) {
            for setup in std::mem::take(&mut self.setups) {
                let data = setup().await.map_err(|error| super::Failure {
                    message: format!("setup failed: {error}"),
                    code: 1,
                })?;
                self.extensions.data.extend(data);
            }
        }
        match command {
            Command::QueueWork(args) => work::run(args, self.extensions, self.schedule).await,
            Command::QueueDashboard(args) => super::dashboard::run(args, self.schedule).await,
            Command::QueueSchedule(_) => schedule::run(self.schedule).await,
            Command::QueueScheduleList(common) => schedule::list(self.schedule, common).await,
            other => admin::run(other).await,
        }
    }
}
