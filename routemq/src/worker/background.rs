//! The worker's background tasks: batched acknowledgements, lease heartbeats and the reaper.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::driver::{Lease, QueueDriver};

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
            let mut failures = 0;
            while let Err(error) = driver.ack(&batch).await {
                failures += 1;
                if failures > 8 {
                    // The leases will expire and the jobs run again: at-least-once, nothing lost.
                    tracing::error!(%error, jobs = batch.len(), "giving up acknowledging jobs; they will run again");
                    break;
                }
                let pause = backoff(failures);
                tracing::warn!(%error, retry_in = ?pause, "acknowledging jobs failed");
                tokio::time::sleep(pause).await;
            }
            acked.done(batch.len());
            batch.clear();
        }
    });
    (AckSender { sender, pending }, Acker { task, stop })
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
