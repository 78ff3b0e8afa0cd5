//! The command line: `queue-work` and the admin commands, for any binary that links your jobs.
//!
//! ```no_run
//! // src/bin/worker.rs of your application
//! use my_app_jobs as _; // link the crate that defines the #[job] types
//! # mod my_app_jobs {}
//!
//! fn main() -> std::process::ExitCode {
//!     routemq::cli::main()
//! }
//! ```
//!
//! | command | what it does |
//! |---|---|
//! | `queue-work` | runs a worker (`--queue a,b --connection C --concurrency N --sleep S --max-jobs N --max-time S --max-tries N --timeout S --stop-when-empty --limit Q=N --rate Q=N/PERIOD --metrics-addr ADDR --dashboard ADDR`) |
//! | `queue-dashboard` | serves the [web dashboard](crate::dashboard) (`--addr 127.0.0.1:8080 --read-only`) |
//! | `queue-failed` | lists failed jobs (`--queue Q`) |
//! | `queue-failed-show ID` | shows one failed job (`--decrypt`: an encrypted job's data too) |
//! | `queue-retry ID` / `queue-retry --all` | pushes failed jobs back to their queue |
//! | `queue-forget ID` | deletes a failed job |
//! | `queue-flush` | deletes every failed job (`--queue Q`) |
//! | `queue-prune-failed --hours N --keep N` | deletes failed jobs older than N hours, or beyond the N newest per queue |
//! | `queue-size` / `queue-stats` | counts per queue |
//! | `queue-pause Q` / `queue-resume Q` | stops / restarts reserving from queues, on every worker |
//! | `queue-cancel ID` | deletes a queued or delayed job; stops a running one within a second |
//! | `queue-batches` | batches, newest first, with their progress (`--limit N`) |
//! | `queue-batch-show ID` | one batch: counts, times, callbacks |
//! | `queue-batch-cancel ID` | cancels a batch: its jobs not started yet are skipped |
//! | `queue-prune-batches --hours N` | deletes batches finished more than N hours ago (`--unfinished-hours N` also unfinished ones created before) |
//! | `queue-schedule` | runs the binary's schedules ([`App::schedule`]) until a signal |
//! | `queue-schedule-list` | each schedule with its next and last run |
//! | `queue-keygen` | prints a new `ROUTEMQ_KEY` for encrypted jobs, and its key id |
//! | `queue-reencrypt` | seals stored jobs, failed jobs and batch callbacks under an older key again under `ROUTEMQ_KEY` |
//! | `queue-migrate` | creates the tables |
//! | `list-jobs` | the job types linked into this binary |
//!
//! Admin commands print JSON (2-space indented, like RouteMQ) or, with `--format table`, a table.
//! Exit codes: 0 success, 1 error (printed to stderr), 2 invalid arguments, 3 no such failed job
//! (or, for `queue-cancel`, no such job; for the batch commands, no such batch), 4 work left
//! (`queue-reencrypt`: jobs still under an older key, leased by a worker or unreadable).

mod admin;
mod app;
mod batches;
mod cancel;
mod dashboard;
mod keys;
mod output;
mod schedule;
mod work;

pub use app::App;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// How long the runtime waits for blocked tasks (a handler that never yields) at exit.
const RUNTIME_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(1);

/// Exit code for "no such failed job".
pub const EXIT_NOT_FOUND: u8 = 3;

/// Exit code for "done, but not everything": `queue-reencrypt` left jobs under an older key.
pub const EXIT_INCOMPLETE: u8 = 4;

/// routemq: background jobs, RouteMQ-compatible.
#[derive(Debug, Parser)]
#[command(name = "routemq", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a worker that processes jobs until stopped (SIGTERM/SIGINT drains; a second signal stops at once).
    QueueWork(work::WorkArgs),
    /// Serve the web dashboard (queues, workers, failed jobs, job types) until SIGTERM or SIGINT.
    QueueDashboard(dashboard::DashboardArgs),
    /// List failed jobs.
    QueueFailed(QueueFilter),
    /// Show one failed job.
    QueueFailedShow(admin::FailedShowArgs),
    /// Push a failed job (or all of them) back to its queue, with its attempts reset.
    QueueRetry(admin::RetryArgs),
    /// Delete one failed job.
    QueueForget(IdArgs),
    /// Delete failed jobs (all, or those of one queue).
    QueueFlush(QueueFilter),
    /// Delete failed jobs older than a number of hours, or beyond the newest N per queue.
    QueuePruneFailed(admin::PruneArgs),
    /// Ready plus delayed jobs per queue.
    QueueSize(QueueFilter),
    /// Ready, reserved, delayed and failed jobs per queue, and the oldest ready job's age.
    QueueStats(QueueFilter),
    /// Pause queues: workers stop reserving from them (within a second); jobs are still accepted.
    QueuePause(admin::PauseArgs),
    /// Resume paused queues.
    QueueResume(admin::PauseArgs),
    /// Cancel jobs by id: queued or delayed ones are deleted, running ones stopped within a second.
    QueueCancel(cancel::CancelArgs),
    /// List batches, newest first, with their progress.
    QueueBatches(batches::ListArgs),
    /// Show one batch: its counts, times and callbacks.
    QueueBatchShow(batches::BatchIdArgs),
    /// Cancel a batch: its jobs not started yet are skipped.
    QueueBatchCancel(batches::BatchIdArgs),
    /// Delete batches finished more than a number of hours ago (and optionally old unfinished ones).
    QueuePruneBatches(batches::PruneBatchesArgs),
    /// Run this binary's schedules (routemq::schedule()) until SIGTERM or SIGINT.
    QueueSchedule(schedule::ScheduleArgs),
    /// List this binary's schedules with their next and last run.
    QueueScheduleList(Common),
    /// Print a new random encryption key for ROUTEMQ_KEY (base64), with its key id.
    QueueKeygen(Format),
    /// Seal jobs, failed jobs and batch callbacks stored under an older key again under ROUTEMQ_KEY.
    QueueReencrypt(Common),
    /// Create the queue tables (idempotent).
    QueueMigrate(Common),
    /// List the job types linked into this binary.
    ListJobs(Common),
}

/// Output format of admin commands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// JSON, 2-space indented.
    #[default]
    Json,
    /// An aligned text table.
    Table,
}

/// `--format`.
#[derive(Debug, Clone, Args)]
pub struct Format {
    /// Print JSON (default) or a table.
    #[arg(long, value_enum, default_value_t = OutputFormat::Json)]
    pub format: OutputFormat,
}

/// Options every admin command takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The connection to use (default: QUEUE_CONNECTION, else sqlite).
    #[arg(long)]
    pub connection: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub format: Format,
}

/// A failed-job id plus the common options.
#[derive(Debug, Clone, Args)]
pub struct IdArgs {
    /// The failed job's id (as `queue-failed` shows it).
    pub id: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
}

/// Optional queues plus the common options.
#[derive(Debug, Clone, Args)]
pub struct QueueFilter {
    /// Only these queues (comma-separated or repeated; default: all).
    #[arg(long, value_delimiter = ',')]
    pub queue: Vec<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
}

/// A command's failure: what to print and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) code: u8,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Self {
            message: error.to_string(),
            code: 1,
        }
    }
}

/// Parses the process arguments and runs the command. Use it as your worker binary's `main`
/// ([`App`] adds shared data, setup, middleware and hooks).
pub fn main() -> ExitCode {
    App::new().main()
}

/// Runs an already parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    App::new().run(cli)
}

/// Logs to stderr: human-readable by default (colours only on a terminal), JSON lines with
/// `LOG_FORMAT=json`; the level from `RUST_LOG` (default `info`). An invalid `LOG_FORMAT` or
/// `RUST_LOG` is an error naming the variable and the value.
fn init_logging() -> Result<(), crate::config::ConfigError> {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;

    use crate::config::{ConfigError, env_var};
    let filter = match env_var("RUST_LOG") {
        None => EnvFilter::new("info"),
        Some(raw) => EnvFilter::try_new(&raw).map_err(|_| ConfigError {
            variable: "RUST_LOG".to_owned(),
            value: raw,
            expected: "a log filter such as `info`, `warn,routemq=debug`",
        })?,
    };
    let json = match env_var("LOG_FORMAT") {
        None => false,
        Some(raw) => match raw.trim().to_ascii_lowercase().as_str() {
            "json" => true,
            "human" | "text" => false,
            _ => {
                return Err(ConfigError {
                    variable: "LOG_FORMAT".to_owned(),
                    value: raw,
                    expected: "json or human",
                });
            }
        },
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    Ok(())
}
