//! Unique jobs: `#[job(unique_for = ..)]` dispatches only when no job with the same key holds it.
//!
//! The key is a [slot](crate::driver::slots) `unique:{job name}:{key}` on the job's connection,
//! taken atomically before the job is stored, so that of two producers racing on one key exactly
//! one queues a job; the other gets [`Dispatched::Duplicate`]. The holder is the dispatch's
//! producer span id (carried in the envelope), so that only that job's worker gives the key back:
//! when it starts or when it finishes ([`UniqueUntil`](crate::UniqueUntil)), and at the latest
//! when `unique_for` runs out, so a crash cannot block a key forever.
//!
//! ```
//! use routemq::prelude::*;
//! use routemq::Dispatched;
//!
//! #[job(unique_for = 3600)]
//! struct RebuildSearchIndex { shop: u64 }
//!
//! impl Job for RebuildSearchIndex {
//!     async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> { Ok(()) }
//!
//!     // One rebuild per shop at a time, whatever else the job carries.
//!     fn unique_key(&self) -> Option<String> { Some(self.shop.to_string()) }
//! }
//!
//! # async fn example() -> Result<(), routemq::QueueError> {
//! match (RebuildSearchIndex { shop: 7 }).dispatch().await? {
//!     Dispatched::Queued(id) => println!("queued as {id}"),
//!     Dispatched::Duplicate { .. } => println!("a rebuild of shop 7 is already queued"),
//! }
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::time::Duration;

use crate::driver::{DriverError, NewJob, QueueDriver};

/// The outcome of dispatching a unique job.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Dispatched {
    /// Stored, with its job id.
    Queued(String),
    /// Not stored: a job with the same key holds it.
    Duplicate {
        /// The id of the job that holds the key, where the driver knows it (routemq's drivers do
        /// not record it: always `None` today).
        existing: Option<String>,
    },
}

impl Dispatched {
    /// The new job's id; `None` for a duplicate.
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Queued(id) => Some(id),
            Self::Duplicate { .. } => None,
        }
    }

    /// Whether the dispatch was a duplicate.
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Self::Duplicate { .. })
    }
}

/// What a dispatch of a job type gives when awaited ([`JobMeta::Dispatched`]): a job id for
/// ordinary jobs, a [`Dispatched`] for unique ones. Implemented for those two only.
///
/// [`JobMeta::Dispatched`]: crate::JobMeta::Dispatched
pub trait DispatchOutput: Send + Sized + 'static + sealed::Sealed {
    #[doc(hidden)]
    fn from_dispatched(dispatched: Dispatched) -> Self;

    /// The stored job's id; `None` for a duplicate (for code generic over job types).
    fn job_id(&self) -> Option<&str>;
}

impl DispatchOutput for String {
    fn job_id(&self) -> Option<&str> {
        Some(self)
    }

    /// Ordinary jobs are never duplicates (only unique ones hold keys).
    fn from_dispatched(dispatched: Dispatched) -> Self {
        match dispatched {
            Dispatched::Queued(id) => id,
            Dispatched::Duplicate { existing } => existing.unwrap_or_default(),
        }
    }
}

impl DispatchOutput for Dispatched {
    fn job_id(&self) -> Option<&str> {
        self.id()
    }

    fn from_dispatched(dispatched: Dispatched) -> Self {
        dispatched
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for String {}
    impl Sealed for super::Dispatched {}
}

/// Takes the key of each unique job in `batch` (`keys[i]` for `batch[i]`). Returns the jobs to
/// store, the keys taken, and for each job of the batch whether it is a duplicate (a key held by
/// another job, or taken by an earlier job of this batch).
pub(super) async fn take_keys(
    driver: &dyn QueueDriver,
    batch: Vec<NewJob>,
    keys: Vec<Option<String>>,
    holder: &str,
    unique_for: Duration,
) -> Result<(Vec<NewJob>, Vec<String>, Vec<bool>), DriverError> {
    if keys.iter().all(Option::is_none) {
        let duplicates = vec![false; batch.len()];
        return Ok((batch, Vec::new(), duplicates));
    }
    let mut store = Vec::with_capacity(batch.len());
    let mut taken: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    let mut duplicates = Vec::with_capacity(batch.len());
    for (job, key) in batch.into_iter().zip(keys) {
        let duplicate = match key {
            None => false,
            Some(key) if !seen.insert(key.clone()) => true,
            Some(key) => match driver.acquire_slot(&key, holder, 1, unique_for).await {
                Ok(slot) if slot.taken => {
                    taken.push(key);
                    false
                }
                Ok(_) => true,
                Err(error) => {
                    give_back(driver, &taken, holder).await;
                    return Err(error);
                }
            },
        };
        duplicates.push(duplicate);
        if !duplicate {
            store.push(job);
        }
    }
    Ok((store, taken, duplicates))
}

/// The outcome of each job of a batch: the ids of the stored ones, in order, between duplicates.
pub(super) fn merge(ids: Vec<String>, duplicates: &[bool]) -> Vec<Dispatched> {
    let mut ids = ids.into_iter();
    duplicates
        .iter()
        .map(|&duplicate| {
            if duplicate {
                Dispatched::Duplicate { existing: None }
            } else {
                Dispatched::Queued(ids.next().unwrap_or_default())
            }
        })
        .collect()
}

/// Gives back keys taken for jobs that were not stored after all.
pub(super) async fn give_back(driver: &dyn QueueDriver, taken: &[String], holder: &str) {
    for key in taken {
        if let Err(error) = driver.release_slot(key, Some(holder)).await {
            tracing::warn!(key, %error, "could not give back a unique job's key; it expires by itself");
        }
    }
}
