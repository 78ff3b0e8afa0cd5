//! Batched lease writes: acknowledging finished jobs and starting prefetched ones.
//!
//! Job tasks queue their writes here; one task sends whatever has queued up since its last call in
//! one driver call ([`QueueDriver::ack_and_start`], or [`QueueDriver::ack`] when nothing starts).
//! Under load that is one round trip per batch for both, and it adds no delay when idle. An
//! acknowledgement is not waited for; a start is, because the job must not run before its attempt
//! is counted (a job that crashed its worker before that would be handed out forever).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::background::backoff;
use crate::driver::{DriverError, Lease, QueueDriver};

/// Most writes in one driver call.
const MAX_BATCH: usize = 256;

/// One queued write.
enum Write {
    /// A finished job to acknowledge.
    Ack(Lease),
    /// A prefetched job about to run, and where its started lease goes.
    Start(Lease, oneshot::Sender<Option<Lease>>),
}

/// Where job tasks send their writes; counts the acknowledgements not written yet.
#[derive(Debug, Clone)]
pub(crate) struct Writes {
    sender: mpsc::UnboundedSender<Write>,
    pending: Arc<Pending>,
}

impl std::fmt::Debug for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ack(lease) => f.debug_tuple("Ack").field(lease).finish(),
            Self::Start(lease, _) => f.debug_tuple("Start").field(lease).finish(),
        }
    }
}

/// Acknowledgements sent but not yet written, and a signal for when none are left.
#[derive(Debug, Default)]
struct Pending {
    count: AtomicUsize,
    none_left: Notify,
}

impl Pending {
    fn add(&self, n: usize) {
        self.count.fetch_add(n, Ordering::SeqCst);
    }

    fn done(&self, n: usize) {
        if n > 0 && self.count.fetch_sub(n, Ordering::SeqCst) == n {
            self.none_left.notify_waiters();
        }
    }
}

impl Writes {
    /// Queues a lease for acknowledgement; `false` if the writer has stopped.
    pub(crate) fn ack(&self, lease: Lease) -> bool {
        self.pending.add(1);
        if self.sender.send(Write::Ack(lease)).is_err() {
            self.pending.done(1);
            return false;
        }
        true
    }

    /// Starts a prefetched job: the started run's lease, or `None` when the job must not run (its
    /// lease was taken back, or the broker could not be reached: the reaper then returns the job).
    pub(crate) async fn start(&self, lease: Lease) -> Option<Lease> {
        let (reply, answer) = oneshot::channel();
        self.sender.send(Write::Start(lease, reply)).ok()?;
        answer.await.ok().flatten()
    }

    /// Resolves once every acknowledgement sent so far is written (or given up on).
    pub(crate) async fn settled(&self) {
        loop {
            let none_left = self.pending.none_left.notified();
            tokio::pin!(none_left);
            none_left.as_mut().enable();
            if self.pending.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            none_left.await;
        }
    }
}

/// The writing task; [`Writer::flush`] waits until every queued write is done.
#[derive(Debug)]
pub(crate) struct Writer {
    task: JoinHandle<()>,
    stop: CancellationToken,
}

impl Writer {
    /// Closes the channel and waits until what was sent before is written. A job task left behind
    /// at shutdown (a handler that never yields) cannot hold the worker up: what it sends later is
    /// refused, and its job runs again.
    pub(crate) async fn flush(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::error!(%error, "lease writing task ended unexpectedly");
        }
    }
}

/// Starts the writing task for `driver`.
pub(crate) fn spawn_writer(driver: Arc<dyn QueueDriver>) -> (Writes, Writer) {
    let (sender, mut receiver) = mpsc::unbounded_channel::<Write>();
    let pending = Arc::new(Pending::default());
    let written = Arc::clone(&pending);
    let stop = CancellationToken::new();
    let stopping = stop.clone();
    let task = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let received = tokio::select! {
                received = receiver.recv_many(&mut batch, MAX_BATCH) => received,
                () = stopping.cancelled(), if !receiver.is_closed() => {
                    receiver.close();
                    continue;
                }
            };
            if received == 0 {
                break;
            }
            write(driver.as_ref(), batch.drain(..), &written).await;
        }
    });
    (Writes { sender, pending }, Writer { task, stop })
}

/// Writes one batch and answers its starts.
async fn write(driver: &dyn QueueDriver, batch: impl Iterator<Item = Write>, written: &Pending) {
    let mut acks = Vec::new();
    let mut starts = Vec::new();
    let mut replies = Vec::new();
    for write in batch {
        match write {
            Write::Ack(lease) => acks.push(lease),
            Write::Start(lease, reply) => {
                starts.push(lease);
                replies.push(reply);
            }
        }
    }
    // Given up on, acknowledged leases expire and their jobs run again (at-least-once, nothing
    // lost); prefetched ones are not started and the reaper returns them, their attempt uncounted.
    let started = if starts.is_empty() {
        persist("acknowledging jobs", "they will run again", || {
            driver.ack(&acks)
        })
        .await;
        Vec::new()
    } else {
        persist(
            "acknowledging and starting jobs",
            "the finished ones will run again, the unstarted ones are not run now",
            || driver.ack_and_start(&acks, &starts),
        )
        .await
        .unwrap_or_default()
    };
    written.done(acks.len());
    let mut started = started.into_iter();
    for reply in replies {
        let _ = reply.send(started.next().flatten());
    }
}

/// Calls a driver operation until it succeeds, pausing with [`backoff`] after each failure; gives
/// up (logging `what` failed and `then` what follows) after nine tries, about a minute.
async fn persist<T, F, Fut>(what: &str, then: &str, mut op: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DriverError>>,
{
    let mut failures = 0;
    loop {
        match op().await {
            Ok(value) => return Some(value),
            Err(error) if failures >= 8 => {
                tracing::error!(%error, "{what} failed; giving up: {then}");
                return None;
            }
            Err(error) => {
                failures += 1;
                let pause = backoff(failures);
                tracing::warn!(%error, retry_in = ?pause, "{what} failed");
                tokio::time::sleep(pause).await;
            }
        }
    }
}
