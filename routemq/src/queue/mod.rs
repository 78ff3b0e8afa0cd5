//! The queue manager: connections by name, dispatching, and queue sizes.
//!
//! [`queue()`] is the process-wide manager, configured from the environment. Connections are made
//! on first use and shared. Built-in connection names are the drivers compiled in (see
//! [`QueueManager::builtin_connections`]); [`QueueManager::register`] adds a custom driver under a
//! new name.

mod builtin;
pub mod cancel;
mod chain;
mod dispatch;
pub mod pause;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod transactional;
mod unique;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use tokio::sync::OnceCell;

pub(crate) use chain::{Link, job_with_chain, link_job};
pub use chain::{PendingChain, chain};
pub use dispatch::{Dispatch, PendingBulk, PendingDispatch};
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub use transactional::EnqueueConnection;
pub use unique::{DispatchOutput, Dispatched};

use crate::config::{ConfigError, Settings};
use crate::driver::{DriverError, QueueDriver, QueueStats};
use crate::envelope::EnvelopeError;
use crate::job::Job;
use crate::names::InvalidQueueName;
use crate::testing::FakeQueue;

/// Why a dispatch or a queue query failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The queue name is not allowed.
    #[error(transparent)]
    InvalidQueueName(#[from] InvalidQueueName),
    /// The job could not be encoded.
    #[error(transparent)]
    Encode(#[from] EnvelopeError),
    /// No connection has this name.
    #[error("unknown queue connection `{name}`; known connections: {known}")]
    UnknownConnection {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// The delay is longer than [`crate::limits::MAX_DURATION`] (ten years).
    #[error("a delay of {delay:?} is longer than the longest routemq stores ({max:?}, ten years)")]
    DelayTooLong {
        /// The delay asked for.
        delay: std::time::Duration,
        /// The longest allowed.
        max: std::time::Duration,
    },
    /// The environment's settings are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The jobs of a batch are on different connections (a batch lives on one).
    #[error("a batch's jobs must share one connection; this one has {first} and {other}")]
    BatchConnections {
        /// The first job's connection.
        first: String,
        /// Another job's connection.
        other: String,
    },
    /// A chain needs at least one job.
    #[error("a chain needs at least one job (.then(job))")]
    EmptyChain,
    /// A unique job cannot be dispatched inside a transaction (its key lives outside it).
    #[error(
        "`{job}` is a unique job (unique_for): dispatch it after the transaction commits, not with .within()"
    )]
    UniqueInTransaction {
        /// The job's name.
        job: &'static str,
    },
    /// The driver failed.
    #[error("connection `{connection}`: {source}")]
    Driver {
        /// The connection's name.
        connection: String,
        /// The driver's error.
        #[source]
        source: DriverError,
    },
}

type Slot = Arc<OnceCell<Arc<dyn QueueDriver>>>;

/// Named connections and the dispatch entry points.
#[derive(Debug)]
pub struct QueueManager {
    settings: Result<Settings, ConfigError>,
    connections: RwLock<HashMap<String, Slot>>,
    fake: RwLock<Option<Arc<FakeQueue>>>,
}

static GLOBAL: OnceLock<QueueManager> = OnceLock::new();

/// The process-wide queue manager, configured from the environment on first use.
pub fn queue() -> &'static QueueManager {
    GLOBAL.get_or_init(|| QueueManager::with_settings(Settings::from_env()))
}

impl QueueManager {
    /// A manager with explicit settings (most code uses [`queue()`] instead).
    pub fn new(settings: Settings) -> Self {
        Self::with_settings(Ok(settings))
    }

    fn with_settings(settings: Result<Settings, ConfigError>) -> Self {
        Self {
            settings,
            connections: RwLock::new(HashMap::new()),
            fake: RwLock::new(None),
        }
    }

    /// The settings this manager was built with.
    pub fn settings(&self) -> Result<&Settings, QueueError> {
        self.settings
            .as_ref()
            .map_err(|e| QueueError::Config(e.clone()))
    }

    /// The connection used when neither the dispatch nor the job names one.
    pub fn default_connection(&self) -> Result<&str, QueueError> {
        Ok(&self.settings()?.default_connection)
    }

    /// The connection names compiled into this build.
    pub fn builtin_connections() -> &'static [&'static str] {
        builtin::NAMES
    }

    /// Registers a driver under `name`, replacing any connection of that name.
    pub fn register(&self, name: impl Into<String>, driver: Arc<dyn QueueDriver>) {
        let slot = Arc::new(OnceCell::new_with(Some(driver)));
        self.write_connections().insert(name.into(), slot);
    }

    /// The driver behind a connection name, connecting on first use.
    pub async fn connection(&self, name: &str) -> Result<Arc<dyn QueueDriver>, QueueError> {
        let slot = self.slot(name)?;
        let driver = slot
            .get_or_try_init(|| builtin::connect(name))
            .await
            .map_err(|source| QueueError::Driver {
                connection: name.to_owned(),
                source,
            })?;
        Ok(Arc::clone(driver))
    }

    fn slot(&self, name: &str) -> Result<Slot, QueueError> {
        if let Some(slot) = self
            .connections
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
        {
            return Ok(Arc::clone(slot));
        }
        if !Self::builtin_connections().contains(&name) {
            return Err(QueueError::UnknownConnection {
                name: name.to_owned(),
                known: self.known().join(", "),
            });
        }
        let mut connections = self.write_connections();
        Ok(Arc::clone(connections.entry(name.to_owned()).or_default()))
    }

    fn write_connections(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Slot>> {
        self.connections
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every connection name: built-in and registered.
    pub fn known(&self) -> Vec<String> {
        let mut names: Vec<String> = Self::builtin_connections()
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let connections = self
            .connections
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        names.extend(connections.keys().cloned());
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Starts a dispatch; `.on_queue(..)`, `.on_connection(..)`, `.delay(..)` adjust it, `.await` sends it.
    pub fn push<T: Job>(&self, job: T) -> PendingDispatch<'_, T> {
        PendingDispatch::new(self, job)
    }

    /// Dispatches `job` to become visible after `delay` (RouteMQ's `later`).
    pub fn later<T: Job>(&self, delay: std::time::Duration, job: T) -> PendingDispatch<'_, T> {
        PendingDispatch::new(self, job).delay(delay)
    }

    /// Dispatches many jobs in one driver call.
    pub fn bulk<T: Job>(&self, jobs: impl IntoIterator<Item = T>) -> PendingBulk<'_, T> {
        PendingBulk::new(self, jobs.into_iter().collect())
    }

    /// Ready plus delayed jobs on `queue` of the default connection.
    pub async fn size(&self, queue: &str) -> Result<u64, QueueError> {
        let connection = self.default_connection()?.to_owned();
        self.size_on(&connection, queue).await
    }

    /// Ready plus delayed jobs on `queue` of `connection`.
    pub async fn size_on(&self, connection: &str, queue: &str) -> Result<u64, QueueError> {
        let driver = self.connection(connection).await?;
        driver
            .size(queue)
            .await
            .map_err(|source| QueueError::Driver {
                connection: connection.to_owned(),
                source,
            })
    }

    /// Counts for `queue` of the default connection.
    pub async fn stats(&self, queue: &str) -> Result<QueueStats, QueueError> {
        let connection = self.default_connection()?.to_owned();
        self.stats_on(&connection, queue).await
    }

    /// Counts for `queue` of `connection`.
    pub async fn stats_on(&self, connection: &str, queue: &str) -> Result<QueueStats, QueueError> {
        let driver = self.connection(connection).await?;
        driver
            .stats(queue)
            .await
            .map_err(|source| QueueError::Driver {
                connection: connection.to_owned(),
                source,
            })
    }

    /// Cancels job `id` on the default connection: deleted if queued or delayed, stopped within a
    /// second if running (see [`cancel`]).
    pub async fn cancel(&self, id: &str) -> Result<cancel::Cancellation, QueueError> {
        let connection = self.default_connection()?.to_owned();
        self.cancel_on(&connection, id).await
    }

    /// Cancels job `id` on `connection`.
    pub async fn cancel_on(
        &self,
        connection: &str,
        id: &str,
    ) -> Result<cancel::Cancellation, QueueError> {
        let driver = self.connection(connection).await?;
        cancel::cancel(driver.as_ref(), id)
            .await
            .map_err(|source| QueueError::Driver {
                connection: connection.to_owned(),
                source,
            })
    }

    pub(crate) fn fake(&self) -> Option<Arc<FakeQueue>> {
        self.fake
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_fake(&self, fake: Option<Arc<FakeQueue>>) {
        *self
            .fake
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fake;
    }
}
