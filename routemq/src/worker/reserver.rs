//! The reserve loop: fetch jobs in batches (holding up to `concurrency + prefetch`), start
//! them as slots free up, and wait for work without busy polling.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::{Outcome, Shared, background, record, runner};
use crate::driver::{DriverError, ReservedJob};

/// Most jobs reserved in one driver call.
const MAX_BATCH: usize = 100;

/// A finished reservation: how many jobs were asked for, and those that came.
struct Fetched {
    want: usize,
    jobs: Vec<ReservedJob>,
}

/// A failed reservation.
struct Failed {
    want: usize,
    error: DriverError,
}

/// A reserved job waiting for a free slot, with its key in the heartbeat set.
pub(super) struct Buffered {
    key: u64,
    job: ReservedJob,
}

/// Reserves and starts jobs until a limit, an empty queue (with `stop_when_empty`) or a drain.
/// A reservation runs in the background while finished slots are refilled from the buffer, so a
/// busy worker never waits on a round trip. Returns the reserved jobs that never started.
pub(super) async fn reserve_loop(
    shared: &Arc<Shared>,
    tasks: &mut JoinSet<Outcome>,
) -> VecDeque<Buffered> {
    let options = &shared.options;
    let deadline = options.max_time.map(|t| Instant::now() + t);
    let prefetch = options
        .prefetch
        .unwrap_or(options.concurrency.saturating_mul(4));
    let capacity = options.concurrency + prefetch;
    let mut wake = shared.driver.wake_signal();
    let mut buffer: VecDeque<Buffered> = VecDeque::new();
    let mut fetching: Option<JoinHandle<Result<Fetched, Failed>>> = None;
    let mut reserved_total: u64 = 0;
    let mut next_key: u64 = 0;
    let mut failures: u32 = 0;
    let mut retry_at: Option<Instant> = None;
    // The last reservation found nothing: wait for a wake-up, a poll or a free slot first.
    let mut found_nothing = false;
    loop {
        if shared.shutdown.is_draining() {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            tracing::info!("worker stopping: --max-time reached");
            break;
        }
        while tasks.len() < options.concurrency {
            let Some(Buffered { key, job }) = buffer.pop_front() else {
                break;
            };
            tasks.spawn(runner::run(Arc::clone(shared), job, key));
        }
        let remaining = options
            .max_jobs
            .map_or(u64::MAX, |max| max.saturating_sub(reserved_total));
        if remaining == 0 && buffer.is_empty() && fetching.is_none() {
            tracing::info!("worker stopping: --max-jobs reached");
            break;
        }
        let room = capacity.saturating_sub(tasks.len() + buffer.len());
        let refill = fetching.is_none()
            && retry_at.is_none()
            && !found_nothing
            && remaining > 0
            && buffer.len() <= prefetch / 2
            && room > 0;
        if refill {
            if let Some(wake) = wake.as_mut() {
                wake.borrow_and_update();
            }
            let want = room
                .min(MAX_BATCH)
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            reserved_total += want as u64; // corrected when the reservation returns
            let driver = Arc::clone(&shared.driver);
            let queues = options.queues.clone();
            fetching = Some(tokio::spawn(async move {
                match driver.reserve(&queues, want).await {
                    Ok(jobs) => Ok(Fetched { want, jobs }),
                    Err(error) => Err(Failed { want, error }),
                }
            }));
        }
        let idle = found_nothing && buffer.is_empty() && tasks.is_empty() && fetching.is_none();
        if idle && options.stop_when_empty {
            if shared.acks.pending() > 0 {
                // Our own acknowledgements are still on their way: they count as reserved.
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            if let Ok(true) = queues_drained(shared).await {
                tracing::info!("worker stopping: queues are empty");
                break;
            }
        }
        let poll = if found_nothing && fetching.is_none() {
            idle_wait(shared).await
        } else {
            Duration::from_secs(3600)
        };
        tokio::select! {
            fetched = async { fetching.as_mut().expect("guarded").await }, if fetching.is_some() => {
                fetching = None;
                match fetched {
                    Ok(Ok(Fetched { want, jobs })) => {
                        if failures > 0 {
                            tracing::info!(connection = %shared.connection, "connection recovered");
                        }
                        failures = 0;
                        reserved_total -= (want - jobs.len()) as u64;
                        found_nothing = jobs.is_empty();
                        for job in jobs {
                            next_key += 1;
                            shared.running().insert(next_key, job.lease.clone());
                            buffer.push_back(Buffered { key: next_key, job });
                        }
                    }
                    Ok(Err(Failed { want, error })) => {
                        reserved_total -= want as u64;
                        failures += 1;
                        let pause = background::backoff(failures);
                        tracing::warn!(connection = %shared.connection, %error, retry_in = ?pause, "reserve failed");
                        retry_at = Some(Instant::now() + pause);
                    }
                    Err(error) => tracing::error!(%error, "reserve task ended unexpectedly"),
                }
            }
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => record(shared, joined),
            () = background::changed(wake.as_mut()), if found_nothing => found_nothing = false,
            () = tokio::time::sleep(poll), if found_nothing && fetching.is_none() => found_nothing = false,
            () = super::sleep_until(retry_at), if retry_at.is_some() => retry_at = None,
            () = shared.shutdown.drained() => {}
            () = super::sleep_until(deadline) => {}
        }
    }
    // A reservation still on its way: wait for it, so its jobs are released rather than orphaned.
    if let Some(fetch) = fetching
        && let Ok(Ok(Fetched { jobs, .. })) = fetch.await
    {
        for job in jobs {
            next_key += 1;
            shared.running().insert(next_key, job.lease.clone());
            buffer.push_back(Buffered { key: next_key, job });
        }
    }
    buffer
}

/// Gives reserved jobs that never started back to their queue, without using up an attempt.
pub(super) async fn release_unstarted(shared: &Shared, unstarted: VecDeque<Buffered>) {
    for Buffered { key, job } in unstarted {
        shared.running().remove(&key);
        if let Err(error) = shared
            .driver
            .release(&job.lease, Duration::ZERO, true)
            .await
        {
            tracing::warn!(job_id = %job.lease.id, %error, "could not release a prefetched job; the reaper will return it");
        }
    }
}

/// Whether no job is ready, delayed or reserved (by any worker) on the served queues. A job
/// leased by a worker that died counts: the reaper will hand it out again.
async fn queues_drained(shared: &Shared) -> Result<bool, DriverError> {
    for queue in &shared.options.queues {
        let stats = shared.driver.stats(queue).await?;
        if stats.ready + stats.delayed + stats.reserved > 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// How long an idle worker sleeps: the poll interval, or less when a delayed job is due sooner.
async fn idle_wait(shared: &Shared) -> Duration {
    let sleep = shared.options.sleep;
    match shared.driver.next_due(&shared.options.queues).await {
        Ok(Some(due)) => due.min(sleep) + Duration::from_millis(1),
        _ => sleep,
    }
}
