//! Chains: jobs that run one after another, each dispatched when the one before it succeeded.
//!
//! The rest of the chain travels inside each job's envelope (`"chain"`, which RouteMQ ignores),
//! so no coordinator keeps state that could be lost: when a job succeeds, its worker stores the
//! next one (before it acknowledges its own, so a crash in between runs the job again rather than
//! losing the rest of the chain); when a job fails for good, its worker stores the chain's `catch`
//! job, if it has one, and the jobs after it never run. Each job goes to its own type's queue (or
//! the one `.on_queue(..)` gives the job added last) and connection, so a chain can mix job
//! types, queues and connections.
//!
//! ```no_run
//! use routemq::prelude::*;
//!
//! #[job(queue = "media")]
//! struct Transcode { video: u64 }
//! #[job(queue = "media")]
//! struct Thumbnail { video: u64 }
//! #[job(queue = "emails")]
//! struct NotifyOwner { video: u64, ok: bool }
//!
//! # macro_rules! noop { ($($t:ty),*) => {$(impl Job for $t { async fn handle(&mut self, _: &JobContext) -> Result<(), JobError> { Ok(()) } })*} }
//! # noop!(Transcode, Thumbnail, NotifyOwner);
//! # async fn example() -> Result<(), routemq::QueueError> {
//! let first_id = routemq::chain()
//!     .then(Transcode { video: 7 })
//!     .then(Thumbnail { video: 7 })
//!     .then(NotifyOwner { video: 7, ok: true })
//!     .catch(NotifyOwner { video: 7, ok: false })
//!     .dispatch()
//!     .await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use super::{QueueError, QueueManager, queue};
use crate::driver::NewJob;
use crate::envelope::{
    Chain, ChainLink, Envelope, EnvelopeError, MAX_PAYLOAD_BYTES, OwnFields, encode_job,
};
use crate::job::Job;
use crate::names::validate_queue_name;
use crate::observability::producer_ids;
use crate::registry::Registry;

type Encode =
    Box<dyn FnOnce(&QueueManager, Option<String>) -> Result<ChainLink, QueueError> + Send>;

/// A job of a chain or batch, encoded when the chain or batch is dispatched.
pub(crate) struct Link {
    encode: Encode,
    pub(crate) queue: Option<String>,
    /// The job type's name.
    pub(crate) name: &'static str,
}

impl Link {
    pub(crate) fn new<T: Job>(job: T) -> Self {
        Self {
            encode: Box::new(move |manager, queue| link(manager, &job, queue)),
            queue: None,
            name: T::NAME,
        }
    }

    pub(crate) fn encode(self, manager: &QueueManager) -> Result<ChainLink, QueueError> {
        (self.encode)(manager, self.queue)
    }
}

/// A chain being built; [`dispatch`](Self::dispatch) stores its first job.
#[must_use = "a chain does nothing until it is dispatched"]
pub struct PendingChain<'m> {
    manager: &'m QueueManager,
    links: Vec<Link>,
    catch: Option<Link>,
    /// Whether the job added last is the `catch` job (what `on_queue` applies to).
    last_is_catch: bool,
}

impl std::fmt::Debug for PendingChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingChain")
            .field("jobs", &self.links.len())
            .field("catch", &self.catch.is_some())
            .finish_non_exhaustive()
    }
}

/// A chain on the global [`queue()`] manager.
pub fn chain() -> PendingChain<'static> {
    queue().chain()
}

impl QueueManager {
    /// Starts a chain of jobs dispatched through this manager.
    pub fn chain(&self) -> PendingChain<'_> {
        PendingChain {
            manager: self,
            links: Vec::new(),
            catch: None,
            last_is_catch: false,
        }
    }
}

impl<'m> PendingChain<'m> {
    /// Adds `job` after the jobs added so far (to its type's queue and connection).
    pub fn then<T: Job>(mut self, job: T) -> Self {
        self.links.push(Link::new(job));
        self.last_is_catch = false;
        self
    }

    /// The job to run once if a job of the chain fails for good.
    pub fn catch<T: Job>(mut self, job: T) -> Self {
        self.catch = Some(Link::new(job));
        self.last_is_catch = true;
        self
    }

    /// Sends the job added last to `queue` instead of its type's queue.
    pub fn on_queue(mut self, queue: impl Into<String>) -> Self {
        let last = if self.last_is_catch {
            self.catch.as_mut()
        } else {
            self.links.last_mut()
        };
        if let Some(last) = last {
            last.queue = Some(queue.into());
        }
        self
    }

    /// Stores the chain's first job (the rest travel inside it). Returns its id.
    pub async fn dispatch(self) -> Result<String, QueueError> {
        let manager = self.manager;
        let mut links = self
            .links
            .into_iter()
            .map(|link| link.encode(manager))
            .collect::<Result<Vec<_>, _>>()?;
        let catch = self.catch.map(|link| link.encode(manager)).transpose()?;
        if links.is_empty() {
            return Err(QueueError::EmptyChain);
        }
        let first = links.remove(0);
        let chain = Chain { next: links, catch };
        let job = job_with_chain(&first.queue, Envelope::decode(&first.payload)?, Some(chain))?;
        if let Some(fake) = self.manager.fake() {
            let name = "chain";
            return Ok(fake.record(name, &job.queue, &first.connection, job.delay, job.payload));
        }
        let driver = self.manager.connection(&first.connection).await?;
        let ids = driver
            .push(std::slice::from_ref(&job))
            .await
            .map_err(|source| QueueError::Driver {
                connection: first.connection.clone(),
                source,
            })?;
        ids.into_iter().next().ok_or_else(|| QueueError::Driver {
            connection: first.connection,
            source: crate::driver::DriverError::backend("push", "the driver returned no id"),
        })
    }
}

/// `job` encoded for `queue` (default: its type's) and its type's connection.
fn link<T: Job>(
    manager: &QueueManager,
    job: &T,
    queue: Option<String>,
) -> Result<ChainLink, QueueError> {
    let queue = queue.unwrap_or_else(|| T::OPTIONS.queue.to_owned());
    validate_queue_name(&queue)?;
    let connection = match T::OPTIONS.connection {
        Some(connection) => connection.to_owned(),
        None => manager.default_connection()?.to_owned(),
    };
    let unique_key = crate::job::unique_slot(job);
    let payload = encode_job(
        job,
        &queue,
        &connection,
        None,
        false,
        &producer_ids(),
        OwnFields {
            unique_key: unique_key.as_deref(),
            priority: None,
        },
    )?;
    Ok(ChainLink {
        queue,
        connection,
        payload,
    })
}

/// The job to store on `queue`: `envelope` encoded to carry `chain` (none when it is empty), at
/// the envelope's priority; refused when it grows past the largest payload.
pub(crate) fn job_with_chain(
    queue: &str,
    envelope: Envelope,
    chain: Option<Chain>,
) -> Result<NewJob, QueueError> {
    let chain = chain.filter(|chain| !chain.next.is_empty() || chain.catch.is_some());
    let priority = envelope.priority();
    let encoded = envelope.with_chain(chain).to_json();
    if encoded.len() > MAX_PAYLOAD_BYTES {
        return Err(EnvelopeError::TooLarge {
            size: encoded.len(),
            limit: MAX_PAYLOAD_BYTES,
        }
        .into());
    }
    Ok(NewJob {
        queue: queue.to_owned(),
        payload: encoded,
        delay: Duration::ZERO,
        priority,
    })
}

/// A stored link's job as it is stored now: carrying `rest` of the chain, and with its
/// `retry_until` deadline counted from now (not from when the chain was dispatched) when its type,
/// as this worker registers it, has one.
pub(crate) fn link_job(
    link: &ChainLink,
    rest: Option<Chain>,
    registry: Option<&Registry>,
) -> Result<NewJob, QueueError> {
    let mut envelope = Envelope::decode(&link.payload)?;
    if let Some(secs) = registry
        .and_then(|registry| registry.get(envelope.class()).ok())
        .and_then(|registration| registration.options().retry_until)
    {
        envelope = envelope.with_retry_until_in(Duration::from_secs(secs));
    }
    job_with_chain(&link.queue, envelope, rest)
}
