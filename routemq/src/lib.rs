//! Background jobs for Rust, wire-compatible with [RouteMQ](https://pypi.org/project/routemq/).
//!
//! Put `#[job]` on a struct, implement [`Job::handle`], dispatch it with `.dispatch().await`, and run
//! a worker. Jobs are stored as RouteMQ's JSON envelope in RouteMQ's Redis keys or SQL tables, so a
//! Python RouteMQ producer and a Rust worker (or the reverse) can share a queue.
//!
//! ```
//! use routemq::prelude::*;
//!
//! /// Send a notification to a user.
//! #[job(max_tries = 3, timeout = 60, retry_after = 10, queue = "notifications")]
//! pub struct SendNotification {
//!     pub user_id: u64,
//!     pub message: String,
//! }
//!
//! impl Job for SendNotification {
//!     async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
//!         println!("[attempt {}] to {}: {}", ctx.attempts(), self.user_id, self.message);
//!         Ok(())
//!     }
//!
//!     async fn failed(&mut self, _ctx: &JobContext, error: &JobError) {
//!         eprintln!("giving up on user {}: {error}", self.user_id);
//!     }
//! }
//!
//! # async fn example() -> Result<(), routemq::QueueError> {
//! SendNotification { user_id: 7, message: "shipped".into() }.dispatch().await?;
//! # Ok(()) }
//! ```
//!
//! A worker binary links the crates that define the jobs and hands over to the CLI
//! (`queue-work`, `queue-failed`, ...), or builds a [`Worker`] in code.
//!
//! # Modules
//! - [`job`](mod@job): the [`Job`] trait, [`JobContext`], [`JobError`].
//! - [`middleware`]: code that wraps `handle` (run, skip, postpone, fail).
//! - [`data`]: shared application state for handlers ([`AppData`], [`JobContext::data`]).
//! - [`envelope`]: the RouteMQ wire format.
//! - [`registry`]: the type-tag registry filled by `#[job]`.
//! - [`queue`](mod@queue): [`QueueManager`], connections, dispatch builders.
//! - [`driver`]: the [`QueueDriver`] trait and the drivers.
//! - [`worker`]: the worker, its options and shutdown.
//! - [`testing`]: a fake queue for your own tests.
//! - `dashboard` (feature `http`): the web dashboard and its JSON API.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `macros` | yes | the `#[job]` attribute |
//! | `sqlite` | yes | the SQLite driver (the embedded default connection) |
//! | `postgres` | yes | the PostgreSQL driver and transactional dispatch on `PgConnection` |
//! | `mysql` | yes | the MySQL/MariaDB driver and transactional dispatch on `MySqlConnection` |
//! | `redis` | yes | the Redis driver |
//! | `redis-tls` | no | `rediss://` URLs (rustls with webpki roots) |
//! | `cli` | yes | `routemq::cli::main()` and the `routemq` admin binary |
//! | `http` | yes | the `dashboard` and the `/metrics` endpoint (axum on hyper) |
//! | `schedule` | yes | periodic jobs with cron expressions (`routemq::schedule()`) |
//! | `otel` | no | OpenTelemetry ids for routemq's spans (with a `tracing-opentelemetry` layer) |
//!
//! # Platform notes
//! Registration runs before `main` through `inventory`, which supports Linux, macOS, Windows and
//! other ELF/Mach-O/PE targets (not WebAssembly workers, not job types in dynamically loaded
//! libraries). A job type is registered only if its crate is linked into the binary: when jobs live
//! in a library crate, write `use my_jobs as _;` in the worker's `main.rs`. `list-jobs` and the
//! worker's start-up log show what is registered.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod batch;
#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod cli;
pub mod config;
pub mod crypto;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod dashboard;
pub mod data;
pub mod driver;
pub mod envelope;
pub mod job;
pub mod limits;
pub mod metrics;
pub mod middleware;
pub mod names;
pub mod observability;
pub mod queue;
pub mod registry;
pub mod retry;
#[cfg(feature = "schedule")]
#[cfg_attr(docsrs, doc(cfg(feature = "schedule")))]
pub mod schedule;
pub mod testing;
mod time;
pub mod worker;

/// The sqlx version routemq is built with, for transactional dispatch (`.within(&mut *tx)`).
#[cfg(feature = "_sql")]
pub use sqlx;

/// The redis-rs version routemq is built with, for a driver on your own `ConnectionManager`.
#[cfg(feature = "redis")]
pub use redis;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

/// The attribute for implementing [`middleware::Middleware`] (and other async traits of routemq).
pub use async_trait::async_trait;
pub use batch::batch;
pub use config::{ConfigError, Settings};
pub use data::AppData;
pub use driver::{DriverError, QueueDriver};
pub use envelope::{Envelope, EnvelopeError};
pub use job::{BoxError, Job, JobContext, JobError, JobMeta, JobOptions, UniqueUntil};
pub use names::{InvalidQueueName, validate_queue_name};
pub use queue::{Dispatch, Dispatched, QueueError, QueueManager, chain, queue};
pub use registry::{Registry, RegistryError};
#[cfg(feature = "schedule")]
pub use schedule::schedule;
pub use worker::{Shutdown, Worker, WorkerError, WorkerOptions, WorkerReport};

/// Turns a struct into a job: serde support, static options, and registration by wire tag.
///
/// ```
/// use routemq::prelude::*;
///
/// #[job(max_tries = 5, timeout = 120, retry_after = 10, queue = "emails")]
/// struct SendEmail {
///     to: String,
///     subject: String,
/// }
///
/// impl Job for SendEmail {
///     async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
///         Ok(())
///     }
/// }
///
/// assert_eq!(SendEmail::OPTIONS.max_tries, 5);
/// assert_eq!(SendEmail::OPTIONS.queue, "emails");
/// assert!(SendEmail::NAME.ends_with(".SendEmail")); // `{crate}.{module}.SendEmail`
/// ```
///
/// # Arguments
///
/// | argument | value | default | meaning |
/// |---|---|---|---|
/// | `max_tries` | integer ≥ 1 | `3` | runs before the job goes to the failed store |
/// | `timeout` | seconds > 0 | `60` | how long one attempt may run |
/// | `retry_after` | seconds ≥ 0 | `0` | delay before a failed attempt runs again (the backoff base) |
/// | `queue` | string | `"default"` | queue to push to; letters, digits, `_`, `-`, `.` |
/// | `name` | string | `crate.module.Type` | the wire tag in the envelope's `class` field |
/// | `connection` | string | none | connection to push to instead of `QUEUE_CONNECTION` |
/// | `backoff` | `"exponential"` or `"fixed"` | `"fixed"` | `retry_after * 2^(attempt-1)`, capped |
/// | `max_delay` | seconds ≥ 0 | worker's `QUEUE_RETRY_MAX_DELAY` (60) | backoff cap |
/// | `jitter` | 0.0 ..= 1.0 | worker's `QUEUE_RETRY_JITTER` (0) | random share taken off each delay |
/// | `unique_for` | seconds > 0 | none | a unique job: a second dispatch while its key is held is a [`Dispatched::Duplicate`] |
/// | `unique_until` | `"finish"` or `"start"` | `"finish"` | when a unique job gives its key back |
/// | `max_exceptions` | integer ≥ 1 | none | fail for good at this many exceptions, even with tries left |
/// | `retry_until` | seconds > 0 | none | no more tries this long after the dispatch |
/// | `crate` | path string | `"routemq"` | where the runtime is, if you renamed the dependency |
///
/// Wrong arguments are compile errors at the offending token, all reported at once. The struct
/// must not be generic or carry lifetimes (the registry needs one concrete type per tag), its fields
/// must be serializable (mark others `#[serde(skip)]`; they are then rebuilt with `Default`), and it
/// must implement [`Job`]. Do not derive `Serialize`/`Deserialize` yourself: `#[job]` does it, through
/// routemq's own copy of serde, so you need no serde dependency. Field-level `#[serde(...)]`
/// attributes work as usual.
///
/// # The wire tag
///
/// The default tag is the module path and type name written RouteMQ's way: `my_app::jobs::SendEmail`
/// becomes `my_app.jobs.SendEmail`. Set `name` to answer to a Python class (`name =
/// "interop_jobs.EchoJob"`), or to keep a stable tag when you move or rename the type: jobs already
/// queued carry the old tag.
///
/// # Tuple and unit structs
///
/// RouteMQ's `data` is always an object: tuple fields are stored under the keys `"0"`, `"1"`, ...
/// and a unit struct as `{}`.
///
/// # What it expands to (roughly)
///
/// ```text
/// #[derive(Serialize, Deserialize)]            // via ::routemq::__private::serde
/// struct SendEmail { to: String, subject: String }
///
/// const _: () = {
///     impl ::routemq::JobMeta for SendEmail {
///         type Dispatched = String;                          // routemq::Dispatched for unique jobs
///         const NAME: &'static str = "my_app.jobs.SendEmail";   // built from module_path!()
///         const OPTIONS: ::routemq::JobOptions = ::routemq::JobOptions {
///             max_tries: 5, timeout: 120, retry_after: 10, queue: "emails",
///             connection: None, backoff: false, max_delay: None, jitter: None,
///             unique_for: None, unique_until: ::routemq::UniqueUntil::Finish,
///             max_exceptions: None, retry_until: None, priority: 0, encrypted: false,
///         };
///     }
///     ::routemq::__private::inventory::submit! {
///         ::routemq::__private::JobRegistration::new::<SendEmail>(/* file, line, module */)
///     }
/// };
/// ```
///
/// # Renaming the crate
///
/// If your `Cargo.toml` renames the dependency (`rmq = { package = "routemq", ... }`), tell the macro:
/// `#[rmq::job(crate = "rmq")]`.
///
/// Set `ROUTEMQ_MACROS_DEBUG=1` while building to print every expansion.
#[cfg(feature = "macros")]
pub use routemq_macros::job;

/// The README's Rust examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// Everything a job definition and a dispatcher need: `use routemq::prelude::*;`.
pub mod prelude {
    #[cfg(feature = "macros")]
    pub use crate::job;
    pub use crate::{
        Dispatch, Job, JobContext, JobError, JobMeta, QueueManager, Worker, WorkerOptions, queue,
    };
}
