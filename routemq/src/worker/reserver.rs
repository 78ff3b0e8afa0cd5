//! The reserve loop: fetch jobs in batches (holding up to `concurrency + prefetch`, the prefetch
//! sized by [`PrefetchSize`]), start them
//! as slots free up, and wait for work without busy polling. Jobs for slots free at the time are
//! reserved (their attempt counted); the rest are prefetched, and counted when they start.
//!
//! Each concern is a small state machine of its own: [`Fetch`] (one reservation at a time, in the
//! background, with backoff after failures and a pause after an empty answer), [`Prefetched`]
//! (reserved jobs waiting for a slot, their leases kept alive), and [`Quota`] (`--max-jobs`).
//! [`reserve_loop`] only decides, each turn, which of them acts.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::prefetch_size::PrefetchSize;
use super::queue_limits::QueueGate;
use super::{Outcome, Shared, background, record, runner};
use crate::driver::{DriverError, QueueDriver, ReservedJob};

/// Most jobs reserved in one driver call.
const MAX_BATCH: usize = 100;

/// What one reservation asked for and got.
type Reservation = (usize, Result<Vec<ReservedJob>, DriverError>);

/// Reserves `want` jobs: as many as there are `free` slots (their attempt counted, as they start at
/// once), then the rest prefetched (counted only when they start, so that a worker killed with a
/// full buffer uses up no attempt of jobs it never ran).
async fn fetch(
    driver: &dyn QueueDriver,
    queues: &[String],
    want: usize,
    free: usize,
) -> Result<Vec<ReservedJob>, DriverError> {
    let direct = want.min(free);
    let mut jobs = if direct > 0 {
        driver.reserve(queues, direct).await?
    } else {
        Vec::new()
    };
    if jobs.len() == direct && want > direct {
        match driver.prefetch(queues, want - direct).await {
            Ok(more) => jobs.extend(more),
            Err(error) if jobs.is_empty() => return Err(error),
            // The reserved jobs are leased: run them, and let the next reservation try again.
            Err(error) => tracing::warn!(%error, "prefetch failed"),
        }
    }
    Ok(jobs)
}

/// [`fetch`] from the queues open now (not paused, not at their limit), taking at most a limited
/// queue's limit from it.
async fn fetch_open(
    driver: &dyn QueueDriver,
    gate: &QueueGate,
    queues: &[String],
    want: usize,
    free: usize,
) -> Result<Vec<ReservedJob>, DriverError> {
    let open = gate.open(driver, queues).await;
    if open.iter().all(|(_, cap)| cap.is_none()) {
        let names: Vec<String> = open.into_iter().map(|(q, _)| q).collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        return fetch(driver, &names, want, free).await;
    }
    let mut jobs = Vec::new();
    for (queue, cap) in open {
        let left = want - jobs.len();
        if left == 0 {
            break;
        }
        let take = cap.map_or(left, |cap| cap.min(left));
        let free_left = free.saturating_sub(jobs.len());
        match fetch(driver, std::slice::from_ref(&queue), take, free_left).await {
            Ok(more) => jobs.extend(more),
            Err(error) if jobs.is_empty() => return Err(error),
            Err(error) => {
                tracing::warn!(%error, "reserve failed");
                break;
            }
        }
    }
    Ok(jobs)
}

/// The reservation in flight, and what the last ones said.
#[derive(Default)]
struct Fetch {
    in_flight: Option<JoinHandle<Reservation>>,
    /// Consecutive failed reservations (for the backoff and the "recovered" log).
    failures: u32,
    /// After a failure: no new reservation before this.
    retry_at: Option<Instant>,
    /// The last reservation found nothing: wait for a wake-up, a poll or a free slot first.
    found_nothing: bool,
}

impl Fetch {
    fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether a new reservation may start now.
    fn ready(&self) -> bool {
        !self.busy() && self.retry_at.is_none() && !self.found_nothing
    }

    /// Whether the worker is waiting for jobs to appear (nothing in flight, nothing found).
    fn waiting_for_work(&self) -> bool {
        self.found_nothing && !self.busy()
    }

    fn start(&mut self, shared: &Shared, want: usize, free: usize) {
        let driver = Arc::clone(&shared.driver);
        let gate = Arc::clone(&shared.gate);
        let options = &shared.options;
        let queues = if options.weights.is_empty() {
            options.queues.clone()
        } else {
            super::weights::weighted_order(&options.queues, &options.weights)
        };
        self.in_flight = Some(tokio::spawn(async move {
            let fetched = fetch_open(driver.as_ref(), &gate, &queues, want, free).await;
            (want, fetched)
        }));
    }

    /// Resolves when the reservation in flight returns; never, when there is none.
    async fn returned(&mut self) -> Result<Reservation, tokio::task::JoinError> {
        match self.in_flight.as_mut() {
            Some(task) => {
                let result = task.await;
                self.in_flight = None;
                result
            }
            None => std::future::pending().await,
        }
    }

    /// Records how a reservation went; returns the jobs it got.
    fn settle(
        &mut self,
        shared: &Shared,
        result: Result<Vec<ReservedJob>, DriverError>,
    ) -> Vec<ReservedJob> {
        match result {
            Ok(jobs) => {
                if self.failures > 0 {
                    tracing::info!(connection = %shared.connection, "connection recovered");
                }
                self.failures = 0;
                self.found_nothing = jobs.is_empty();
                jobs
            }
            Err(error) => {
                self.failures += 1;
                let pause = background::backoff(self.failures);
                tracing::warn!(connection = %shared.connection, %error, retry_in = ?pause, "reserve failed");
                self.retry_at = Some(Instant::now() + pause);
                Vec::new()
            }
        }
    }
}

/// `--max-jobs`: how many more jobs may be reserved.
struct Quota {
    left: u64,
}

impl Quota {
    fn new(max_jobs: Option<u64>) -> Self {
        Self {
            left: max_jobs.unwrap_or(u64::MAX),
        }
    }

    fn exhausted(&self) -> bool {
        self.left == 0
    }

    /// Takes up to `want` from the quota (a reservation being asked for).
    fn take(&mut self, want: usize) -> usize {
        let taken = usize::try_from(self.left).map_or(want, |left| want.min(left));
        self.left -= taken as u64;
        taken
    }

    /// Gives back what a reservation asked for and did not get.
    fn give_back(&mut self, unused: usize) {
        self.left = self.left.saturating_add(unused as u64);
    }
}

/// A reserved job waiting for a free slot, with its key in the heartbeat set.
pub(super) struct Buffered {
    key: u64,
    job: ReservedJob,
}

/// Reserved jobs waiting for a slot. Their leases are in the heartbeat set from the moment they
/// arrive, so they stay alive however long the wait.
#[derive(Default)]
struct Prefetched {
    jobs: VecDeque<Buffered>,
    next_key: u64,
}

impl Prefetched {
    fn len(&self) -> usize {
        self.jobs.len()
    }

    fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Takes in reserved jobs: their leases join the heartbeat set.
    fn admit(&mut self, shared: &Shared, jobs: Vec<ReservedJob>) {
        let mut running = shared.running();
        for job in jobs {
            self.next_key += 1;
            running.insert(self.next_key, job.lease.clone());
            self.jobs.push_back(Buffered {
                key: self.next_key,
                job,
            });
        }
    }

    /// Starts waiting jobs while slots are free; returns how many started.
    fn start_into_free_slots(
        &mut self,
        shared: &Arc<Shared>,
        tasks: &mut JoinSet<Outcome>,
    ) -> usize {
        let mut started = 0;
        while tasks.len() < shared.options.concurrency {
            let Some(Buffered { key, job }) = self.jobs.pop_front() else {
                break;
            };
            tasks.spawn(runner::run(Arc::clone(shared), job, key));
            started += 1;
        }
        started
    }
}

/// Reserves and starts jobs until a limit, an empty queue (with `stop_when_empty`) or a drain.
/// A reservation runs in the background while finished slots are refilled from the prefetched
/// jobs, so a busy worker never waits on a round trip. Returns the reserved jobs that never started.
pub(super) async fn reserve_loop(
    shared: &Arc<Shared>,
    tasks: &mut JoinSet<Outcome>,
) -> VecDeque<Buffered> {
    let options = &shared.options;
    let deadline = options.max_time.map(|t| Instant::now() + t);
    let mut size = PrefetchSize::new(options.prefetch, options.concurrency);
    let mut wake = shared.driver.wake_signal();
    let mut fetch = Fetch::default();
    let mut quota = Quota::new(options.max_jobs);
    let mut prefetched = Prefetched::default();
    loop {
        if shared.shutdown.is_draining() {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            tracing::info!("worker stopping: --max-time reached");
            break;
        }
        size.started(prefetched.start_into_free_slots(shared, tasks));
        // Running jobs may still give their share of the quota back (postponed ones).
        if quota.exhausted() && prefetched.is_empty() && !fetch.busy() && tasks.is_empty() {
            tracing::info!("worker stopping: --max-jobs reached");
            break;
        }
        let prefetch = size.now();
        let capacity = options.concurrency + prefetch;
        let room = capacity.saturating_sub(tasks.len() + prefetched.len());
        let running_low = prefetched.len() <= prefetch / 2;
        if fetch.ready() && !quota.exhausted() && running_low && room > 0 {
            if let Some(wake) = wake.as_mut() {
                wake.borrow_and_update(); // wake-ups from before this reservation are answered by it
            }
            let want = quota.take(room.min(MAX_BATCH));
            fetch.start(
                shared,
                want,
                options.concurrency.saturating_sub(tasks.len()),
            );
        }
        let idle = fetch.waiting_for_work() && prefetched.is_empty() && tasks.is_empty();
        if idle && options.stop_when_empty && queues_drained(shared).await {
            tracing::info!("worker stopping: queues are empty");
            break;
        }
        let waiting = fetch.waiting_for_work();
        let poll = if waiting {
            idle_wait(shared).await
        } else {
            Duration::from_secs(3600)
        };
        let (found_nothing, retry_at) = (fetch.found_nothing, fetch.retry_at);
        tokio::select! {
            returned = fetch.returned() => match returned {
                Ok((want, result)) => {
                    let jobs = fetch.settle(shared, result);
                    if fetch.found_nothing {
                        size.found_nothing();
                    }
                    quota.give_back(want - jobs.len());
                    prefetched.admit(shared, jobs);
                }
                Err(error) => tracing::error!(%error, "reserve task ended unexpectedly"),
            },
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                // A job held back (postponed, or never started) does not use up --max-jobs.
                if matches!(joined, Ok(Outcome::Postponed | Outcome::NotStarted)) {
                    quota.give_back(1);
                }
                record(shared, joined);
            }
            () = background::changed(wake.as_mut()), if found_nothing => fetch.found_nothing = false,
            () = tokio::time::sleep(poll), if waiting => fetch.found_nothing = false,
            () = super::sleep_until(retry_at), if retry_at.is_some() => fetch.retry_at = None,
            () = shared.shutdown.drained() => {}
            () = super::sleep_until(deadline) => {}
        }
    }
    // A reservation still on its way: wait for it, so its jobs are released rather than orphaned.
    if fetch.busy()
        && let Ok((_, Ok(jobs))) = fetch.returned().await
    {
        prefetched.admit(shared, jobs);
    }
    prefetched.jobs
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

/// Whether no job is ready, delayed or reserved (by any worker) on the served queues, once this
/// worker's own acknowledgements have landed. A job leased by a worker that died counts: the
/// reaper will hand it out again. A driver error counts as "not drained".
async fn queues_drained(shared: &Shared) -> bool {
    shared.writes.settled().await;
    let queues = &shared.options.queues;
    let paused = shared.gate.paused(shared.driver.as_ref(), queues).await;
    for queue in queues.iter().filter(|q| !paused.contains(*q)) {
        match shared.driver.stats(queue).await {
            Ok(stats) if stats.ready + stats.delayed + stats.reserved == 0 => {}
            _ => return false,
        }
    }
    true
}

/// How long an idle worker sleeps: the poll interval, or less when a delayed job is due sooner.
async fn idle_wait(shared: &Shared) -> Duration {
    let sleep = shared.options.sleep;
    match shared.driver.next_due(&shared.options.queues).await {
        Ok(Some(due)) => due.min(sleep) + Duration::from_millis(1),
        _ => sleep,
    }
}
