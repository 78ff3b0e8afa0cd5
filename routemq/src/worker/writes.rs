//! Batched lease writes: acknowledging finished jobs and starting prefetched ones.
//!
//! Job tasks queue their writes here; one task sends whatever has queued up since its last call in
//! one driver call ([`QueueDriver::ack_and_start`], or [`QueueDriver::ack`] when nothing starts).
//! Under load that is one round trip per batch for both, and it adds no delay when idle.
//!
//! Neither is waited for on the way to running a job: a prefetched job runs while its start is
//! written, and its acknowledgement, queued after the start, cannot overtake it (when both are in
//! one batch, the job is simply deleted: it is done, and the attempt needs no counting). A job whose
//! earlier start never landed (its worker died first, perhaps because of the job) is started and
//! waited for before it runs, so a job that kills its worker still uses up its tries.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::background::backoff;
use super::{Running, lock};
use crate::driver::{DriverError, Lease, QueueDriver};

/// Most writes in one driver call.
const MAX_BATCH: usize = 256;

/// One queued write.
enum Write {
    /// A finished job to acknowledge.
    Ack(Lease),
    /// A prefetched job about to run.
    Start(Start),
}

/// A prefetched job's lease, its key in the heartbeat set, and where its started lease goes.
struct Start {
    lease: Lease,
    key: u64,
    reply: oneshot::Sender<Option<Lease>>,
}

/// Where job tasks send their writes; counts the acknowledgements not written yet.
#[derive(Debug, Clone)]
pub(crate) struct Writes {
    sender: mpsc::UnboundedSender<Write>,
    pending: Arc<Pending>,
}

/// The answer to a start: the started run's lease, or `None` when the job must not be settled
/// with it (its lease was taken back, or the broker could not be reached: the reaper then
/// returns the job).
pub(crate) struct StartAnswer(oneshot::Receiver<Option<Lease>>);

impl StartAnswer {
    pub(crate) async fn landed(self) -> Option<Lease> {
        self.0.await.ok().flatten()
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

    /// Queues the start of a prefetched job (its `lease`, under `key` in the heartbeat set, which
    /// the writer renames to the started lease when the start lands).
    pub(crate) fn start(&self, lease: Lease, key: u64) -> StartAnswer {
        let (reply, answer) = oneshot::channel();
        // A closed channel drops `reply`: the answer is `None`.
        let _ = self.sender.send(Write::Start(Start { lease, key, reply }));
        StartAnswer(answer)
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

/// Starts the writing task for `driver`; `running` is the heartbeat set.
pub(crate) fn spawn_writer(driver: Arc<dyn QueueDriver>, running: Running) -> (Writes, Writer) {
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
            write(driver.as_ref(), batch.drain(..), &written, &running).await;
        }
    });
    (Writes { sender, pending }, Writer { task, stop })
}

/// Writes one batch and answers its starts.
async fn write(
    driver: &dyn QueueDriver,
    batch: impl Iterator<Item = Write>,
    written: &Pending,
    running: &Running,
) {
    let mut acks = Vec::new();
    let mut starts = Vec::new();
    for write in batch {
        match write {
            Write::Ack(lease) => acks.push(lease),
            Write::Start(start) => starts.push(start),
        }
    }
    // A job that started and finished within one batch: delete it under its prefetched lease.
    let mut finished_early = Vec::new();
    for ack in &mut acks {
        if let Some(i) = starts
            .iter()
            .position(|s| s.lease.id == ack.id && s.lease.queue == ack.queue)
        {
            let start = starts.swap_remove(i);
            *ack = start.lease.clone();
            finished_early.push(start);
        }
    }
    let leases: Vec<Lease> = starts.iter().map(|s| s.lease.clone()).collect();
    // Given up on, acknowledged leases expire and their jobs run again (at-least-once, nothing
    // lost); unstarted ones are returned by the reaper with their attempt uncounted.
    let started = if leases.is_empty() {
        persist("acknowledging jobs", "they will run again", || {
            driver.ack(&acks)
        })
        .await;
        Vec::new()
    } else {
        persist(
            "acknowledging and starting jobs",
            "the finished ones will run again, the reaper returns the unstarted ones",
            || driver.ack_and_start(&acks, &leases),
        )
        .await
        .unwrap_or_default()
    };
    written.done(acks.len());
    let mut started = started.into_iter();
    for start in starts {
        let lease = started.next().flatten();
        if let Some(lease) = &lease
            && let Some(entry) = lock(running).get_mut(&start.key)
        {
            entry.clone_from(lease);
        }
        let _ = start.reply.send(lease);
    }
    for start in finished_early {
        let _ = start.reply.send(None);
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
