//! The worker's background tasks: lease heartbeats, the reaper, the cancellation poll, and the
//! worker's presence beats.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::driver::Lease;

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
    let mut tasks = vec![
        tokio::spawn(heartbeat(Arc::clone(shared), stop.clone())),
        tokio::spawn(super::cancels::poll(Arc::clone(shared), stop.clone())),
    ];
    if !shared.options.reaper_interval.is_zero() {
        tasks.push(tokio::spawn(reaper(Arc::clone(shared), stop.clone())));
    }
    if !shared.options.presence_interval.is_zero() {
        tasks.push(tokio::spawn(super::presence::beat(
            Arc::clone(shared),
            stop.clone(),
        )));
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
        let (keys, leases): (Vec<u64>, Vec<Lease>) = shared
            .running()
            .iter()
            .map(|(key, lease)| (*key, lease.clone()))
            .unzip();
        if leases.is_empty() {
            continue;
        }
        match shared.driver.extend(&leases).await {
            Ok(held) => {
                // Leases settled or started while the call was on its way no longer need it.
                let moved_on = {
                    let running = shared.running();
                    keys.iter()
                        .zip(&leases)
                        .filter(|(key, lease)| running.get(key) != Some(lease))
                        .count()
                };
                let lost = (leases.len() - held.min(leases.len())).saturating_sub(moved_on);
                if lost > 0 {
                    tracing::warn!(
                        lost,
                        "some running jobs lost their lease (reaped after the visibility timeout); they may run twice"
                    );
                }
            }
            Err(error) => tracing::warn!(%error, "heartbeat failed"),
        }
    }
}

/// Takes back expired leases on the served queues, applies the failed store's retention, and
/// sweeps expired slot holders: at start, then every reaper interval.
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
        retain_failed(&shared).await;
        retain_batches(&shared).await;
        match shared.driver.sweep_slots().await {
            Ok(swept) if swept > 0 => tracing::debug!(swept, "swept expired slot holders"),
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "sweeping slots failed"),
        }
    }
}

/// Applies the failed store's retention to the served queues: by age, then by count.
async fn retain_failed(shared: &Shared) {
    let options = &shared.options;
    if options.failed_retention.is_none() && options.failed_max.is_none() {
        return;
    }
    for queue in &options.queues {
        let mut deleted = 0;
        if let Some(older_than) = options.failed_retention {
            match shared.driver.failed_prune(Some(queue), older_than).await {
                Ok(pruned) => deleted += pruned,
                Err(error) => tracing::warn!(%queue, %error, "pruning old failed jobs failed"),
            }
        }
        if let Some(keep) = options.failed_max {
            match shared.driver.failed_trim(Some(queue), keep).await {
                Ok(trimmed) => deleted += trimmed,
                Err(error) => tracing::warn!(%queue, %error, "trimming the failed jobs failed"),
            }
        }
        if deleted > 0 {
            tracing::info!(%queue, deleted, "deleted failed jobs past their retention");
        }
    }
}

/// Deletes the connection's batches that finished longer ago than the retention.
async fn retain_batches(shared: &Shared) {
    let Some(older_than) = shared.options.batch_retention else {
        return;
    };
    let prune = crate::driver::BatchPrune {
        finished_before: crate::driver::millis_ago(older_than),
        unfinished_before: None,
    };
    match shared.driver.batch_prune(prune).await {
        Ok(0) => {}
        Ok(deleted) => tracing::info!(deleted, "deleted batches past their retention"),
        Err(error) => tracing::warn!(%error, "pruning old batches failed"),
    }
}

/// Exponential pause after `failures` consecutive broker errors: 100 ms doubling to 10 s, with jitter.
pub(crate) fn backoff(failures: u32) -> Duration {
    let base = 100u64
        .saturating_mul(1 << failures.saturating_sub(1).min(7))
        .min(10_000);
    Duration::from_millis(base / 2 + fastrand::u64(0..=base / 2))
}

/// Runs `call`, and again after an error up to `retries` more times, pausing [`backoff`] between
/// tries and logging each retry under `operation`. Returns the last answer.
pub(crate) async fn retrying<T, E, F, Fut>(
    operation: &'static str,
    retries: u32,
    mut call: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut failures = 0;
    loop {
        match call().await {
            Err(error) if failures < retries => {
                failures += 1;
                let pause = backoff(failures);
                tracing::warn!(operation, %error, retry_in = ?pause, "call failed, retrying");
                tokio::time::sleep(pause).await;
            }
            done => return done,
        }
    }
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
