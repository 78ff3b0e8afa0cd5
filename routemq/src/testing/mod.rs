//! A fake queue for your own tests: capture dispatched jobs instead of storing them, then assert
//! on them (Laravel's `Queue::fake()`).
//!
//! ```
//! use routemq::prelude::*;
//!
//! #[job(queue = "emails")]
//! struct SendInvoice {
//!     order: u64,
//! }
//!
//! impl Job for SendInvoice {
//!     async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
//!         Ok(())
//!     }
//! }
//!
//! async fn checkout(order: u64) -> Result<(), routemq::QueueError> {
//!     SendInvoice { order }.dispatch().await?;
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let fake = routemq::testing::fake();
//! checkout(42).await.unwrap();
//!
//! fake.assert_dispatched_times::<SendInvoice>(1);
//! fake.assert_dispatched_where::<SendInvoice>(|job| job.order == 42);
//! fake.assert_pushed_on::<SendInvoice>("emails");
//! # }
//! ```
//!
//! While a [`QueueFake`] is alive, every dispatch through [`queue()`](crate::queue()) is captured,
//! transactional ones (`.within(&mut *tx)`) included: they are captured instead of inserted.
//!
//! To run one job's `handle` with a context and shared data of your choosing, use [`perform`].
//! Fakes are exclusive: a second `fake()` waits until the first is dropped, so tests that use one
//! can run in parallel threads without seeing each other's jobs.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

mod perform;

pub use perform::{Perform, perform};

use crate::envelope::Envelope;
use crate::job::Job;
use crate::queue::{QueueManager, queue};

/// One captured dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedJob {
    /// The fake id it was given.
    pub id: String,
    /// The job's wire tag.
    pub name: &'static str,
    /// The queue it was pushed to.
    pub queue: String,
    /// The connection it was pushed to.
    pub connection: String,
    /// The dispatch delay.
    pub delay: Duration,
    /// The envelope that would have been stored.
    pub payload: String,
}

/// The capture buffer the manager writes to while a fake is installed.
#[derive(Debug, Default)]
pub(crate) struct FakeQueue {
    jobs: Mutex<Vec<CapturedJob>>,
    /// Keys of unique jobs dispatched while the fake is installed (held until it is dropped).
    unique: Mutex<std::collections::HashSet<String>>,
}

impl FakeQueue {
    /// Takes a unique job's key; `false` when a job dispatched earlier holds it.
    pub(crate) fn take_unique(&self, key: String) -> bool {
        self.unique
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key)
    }

    pub(crate) fn record(
        &self,
        name: &'static str,
        queue: &str,
        connection: &str,
        delay: Duration,
        payload: String,
    ) -> String {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let id = format!("fake-{}", jobs.len() + 1);
        jobs.push(CapturedJob {
            id: id.clone(),
            name,
            queue: queue.to_owned(),
            connection: connection.to_owned(),
            delay,
            payload,
        });
        id
    }
}

static EXCLUSIVE: Mutex<()> = Mutex::new(());

/// A fake installed in a queue manager; dropping it restores real dispatching.
#[derive(Debug)]
pub struct QueueFake {
    manager: &'static QueueManager,
    captured: Arc<FakeQueue>,
    _exclusive: MutexGuard<'static, ()>,
}

/// Installs a fake in the global [`queue()`] manager.
pub fn fake() -> QueueFake {
    fake_in(queue())
}

/// Installs a fake in `manager`.
pub fn fake_in(manager: &'static QueueManager) -> QueueFake {
    let exclusive = EXCLUSIVE.lock().unwrap_or_else(PoisonError::into_inner);
    let captured = Arc::new(FakeQueue::default());
    manager.set_fake(Some(Arc::clone(&captured)));
    QueueFake {
        manager,
        captured,
        _exclusive: exclusive,
    }
}

impl Drop for QueueFake {
    fn drop(&mut self) {
        self.manager.set_fake(None);
    }
}

impl QueueFake {
    /// Every captured dispatch, in order.
    pub fn captured(&self) -> Vec<CapturedJob> {
        self.captured
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn of<T: Job>(&self) -> Vec<(CapturedJob, T)> {
        self.captured()
            .into_iter()
            .filter(|c| c.name == T::NAME)
            .map(|c| {
                let envelope = Envelope::decode(&c.payload)
                    .unwrap_or_else(|e| panic!("captured envelope: {e}"));
                let data = envelope
                    .plain_data()
                    .unwrap_or_else(|e| panic!("captured {} is sealed: {e}", T::NAME));
                let job = serde_json::from_str::<T>(&data)
                    .unwrap_or_else(|e| panic!("captured {} does not decode: {e}", T::NAME));
                (c, job)
            })
            .collect()
    }

    /// The captured jobs of type `T`, decoded.
    pub fn dispatched<T: Job>(&self) -> Vec<T> {
        self.of::<T>().into_iter().map(|(_, job)| job).collect()
    }

    /// Panics unless at least one `T` was dispatched.
    #[track_caller]
    pub fn assert_dispatched<T: Job>(&self) {
        assert!(
            !self.of::<T>().is_empty(),
            "expected `{}` to be dispatched, but it was not",
            T::NAME
        );
    }

    /// Panics unless a dispatched `T` matches `predicate`.
    #[track_caller]
    pub fn assert_dispatched_where<T: Job>(&self, predicate: impl Fn(&T) -> bool) {
        let jobs = self.of::<T>();
        assert!(
            jobs.iter().any(|(_, job)| predicate(job)),
            "expected a dispatched `{}` matching the predicate; {} dispatched, none matched",
            T::NAME,
            jobs.len()
        );
    }

    /// Panics unless `T` was dispatched exactly `times` times.
    #[track_caller]
    pub fn assert_dispatched_times<T: Job>(&self, times: usize) {
        let count = self.of::<T>().len();
        assert_eq!(
            count,
            times,
            "expected `{}` to be dispatched {times} time(s), it was dispatched {count}",
            T::NAME
        );
    }

    /// Panics if any `T` was dispatched.
    #[track_caller]
    pub fn assert_not_dispatched<T: Job>(&self) {
        let count = self.of::<T>().len();
        assert_eq!(
            count,
            0,
            "expected `{}` not to be dispatched, it was dispatched {count} time(s)",
            T::NAME
        );
    }

    /// Panics if anything was dispatched.
    #[track_caller]
    pub fn assert_nothing_dispatched(&self) {
        let names: Vec<&str> = self.captured().iter().map(|c| c.name).collect();
        assert!(
            names.is_empty(),
            "expected nothing to be dispatched, got {names:?}"
        );
    }

    /// Panics unless a `T` was pushed to `queue`.
    #[track_caller]
    pub fn assert_pushed_on<T: Job>(&self, queue: &str) {
        let queues: Vec<String> = self.of::<T>().into_iter().map(|(c, _)| c.queue).collect();
        assert!(
            queues.iter().any(|q| q == queue),
            "expected `{}` on queue `{queue}`, it went to {queues:?}",
            T::NAME
        );
    }
}
