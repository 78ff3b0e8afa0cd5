//! The worker's background tasks: batched acknowledgements, lease heartbeats and the reaper.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::driver::{DriverError, Lease, QueueDriver};

/// Most leases acknowledged in one driver call.
const MAX_ACK_BATCH: usize = 256;

/// Where finished jobs are sent to be acknowledged; counts what is not acknowledged yet.
#[derive(Debug, Clone)]
pub(crate) struct AckSender {
    sender: mpsc::UnboundedSender<Lease>,
    pending: Arc<Pending>,
}

/// Leases sent but not yet acknowledged, and a signal for when none are left.
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
        if self.count.fetch_sub(n, Ordering::SeqCst) == n {
            self.none_left.notify_waiters();
        }
    }
}

impl AckSender {
    /// Queues a lease for acknowledgement; `false` if the acker has stopped.
    pub(crate) fn send(&self, lease: Lease) -> bool {
        self.pending.add(1);
        if self.sender.send(lease).is_err() {
            self.pending.done(1);
            return false;
        }
        true
    }

    /// Resolves once every lease sent so far is acknowledged (or given up on).
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

/// The acknowledging task; [`Acker::flush`] waits until every sent lease is acknowledged.
#[derive(Debug)]
pub(crate) struct Acker {
    task: JoinHandle<()>,
    stop: CancellationToken,
}

impl Acker {
    /// Closes the channel and waits until what was sent before is acknowledged. A job task left
    /// behind at shutdown (a handler that never yields) cannot hold the worker up: what it sends
    /// later is refused, and its job runs again.
    pub(crate) async fn flush(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::error!(%error, "acknowledgement task ended unexpectedly");
        }
    }
}

/// Starts the acker: it acknowledges whatever has queued up since its last call in one batch, so
/// acks cost one round trip per batch under load and add no delay when idle.
pub(crate) fn spawn_acker(driver: Arc<dyn QueueDriver>) -> (AckSender, Acker) {
    let (sender, mut receiver) = mpsc::unbounded_channel::<Lease>();
    let pending = Arc::new(Pending::default());
    let acked = Arc::clone(&pending);
    let stop = CancellationToken::new();
    let stopping = stop.clone();
    let task = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_ACK_BATCH);
        loop {
            let received = tokio::select! {
                received = receiver.recv_many(&mut batch, MAX_ACK_BATCH) => received,
                () = stopping.cancelled(), if !receiver.is_closed() => {
                    receiver.close();
                    continue;
                }
            };
            if received == 0 {
                break;
            }
            // Given up on, the leases expire and the jobs run again: at-least-once, nothing lost.
            let _ = persist("acknowledging jobs", "they will run again", || {
                driver.ack(&batch)
            })
            .await;
            acked.done(batch.len());
            batch.clear();
        }
    });
    (AckSender { sender, pending }, Acker { task, stop })
}

/// Calls a driver operation until it succeeds, pausing with [`backoff`] after each failure; gives up
/// (logging `what` failed and `then` what follows) after nine tries, about a minute.
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

/// A prefetched job's lease, waiting to be started, and where the answer goes.
type StartRequest = (Lease, oneshot::Sender<Option<Lease>>);

/// Where job tasks ask for their prefetched job to be started (its attempt counted) before it runs.
#[derive(Debug, Clone)]
pub(crate) struct StartSender {
    sender: mpsc::UnboundedSender<StartRequest>,
}

impl StartSender {
    /// The started run's lease, or `None` when the job must not run: its lease was taken back, or
    /// the broker could not be reached (the reaper then returns the job, its attempt uncounted).
    pub(crate) async fn start(&self, lease: Lease) -> Option<Lease> {
        let (reply, answer) = oneshot::channel();
        self.sender.send((lease, reply)).ok()?;
        answer.await.ok().flatten()
    }
}

/// Starts the starter: like the acker, it starts whatever has queued up since its last call in
/// one batch, so starting costs one round trip per batch under load. It ends with the last sender.
pub(crate) fn spawn_starter(driver: Arc<dyn QueueDriver>) -> StartSender {
    let (sender, mut receiver) = mpsc::unbounded_channel::<StartRequest>();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_ACK_BATCH);
        while receiver.recv_many(&mut batch, MAX_ACK_BATCH).await > 0 {
            let (leases, replies): (Vec<Lease>, Vec<_>) = batch.drain(..).unzip();
            let started = persist(
                "starting prefetched jobs",
                "the reaper will return them",
                || driver.start(&leases),
            )
            .await
            .unwrap_or_default();
            let mut started = started.into_iter();
            for reply in replies {
                let _ = reply.send(started.next().flatten());
            }
        }
    });
    StartSender { sender }
}

/// The heartbeat and reaper tasks.
#[derive(Debug)]
pub(crate) struct LeaseKeepers {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl LeaseKeepers {
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

pub(crate) fn spawn_lease_keepers(shared: &Arc<Shared>) -> LeaseKeepers {
    let stop = CancellationToken::new();
    let mut tasks = vec![tokio::spawn(heartbeat(Arc::clone(shared), stop.clone()))];
    if !shared.options.reaper_interval.is_zero() {
        tasks.push(tokio::spawn(reaper(Arc::clone(shared), stop.clone())));
    }
    LeaseKeepers { stop, tasks }
}

/// Renews every running job's lease each heartbeat interval, in one driver call.
async fn heartbeat(shared: Arc<Shared>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(shared.options.heartbeat_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        let leases: Vec<Lease> = shared.running().values().cloned().collect();
        if leases.is_empty() {
            continue;
        }
        match shared.driver.extend(&leases).await {
            Ok(held) if held < leases.len() => tracing::warn!(
                lost = leases.len() - held,
                "some running jobs lost their lease (reaped after the visibility timeout); they may run twice"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "heartbeat failed"),
        }
    }
}

/// Takes back expired leases on the served queues: at start, then every reaper interval.
async fn reaper(shared: Arc<Shared>, stop: CancellationToken) {
    let options = &shared.options;
    let mut ticker = tokio::time::interval(options.reaper_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        match shared
            .driver
            .reap(
                &options.queues,
                options.visibility_timeout,
                options.max_tries,
                &shared.connection,
            )
            .await
        {
            Ok(reaped) => {
                if reaped.requeued + reaped.failed > 0 {
                    tracing::warn!(
                        requeued = reaped.requeued,
                        failed = reaped.failed,
                        visibility_timeout = ?options.visibility_timeout,
                        "reaped expired leases"
                    );
                }
                for job in reaped.expired {
                    super::runner::failed_after_expiry(&shared, job).await;
                }
            }
            Err(error) => tracing::warn!(%error, "reaper pass failed"),
        }
    }
}

/// Exponential pause after `failures` consecutive broker errors: 100 ms doubling to 10 s, with jitter.
pub(crate) fn backoff(failures: u32) -> Duration {
    let base = 100u64
        .saturating_mul(1 << failures.saturating_sub(1).min(7))
        .min(10_000);
    Duration::from_millis(base / 2 + fastrand::u64(0..=base / 2))
}

/// Resolves when the driver's wake counter changes; never, if it has none (or it closed).
pub(crate) async fn changed(wake: Option<&mut watch::Receiver<u64>>) {
    match wake {
        Some(wake) => {
            if wake.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}
