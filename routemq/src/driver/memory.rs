//! The in-memory driver: jobs live in the process, with the same semantics as the durable drivers.
//!
//! Use it for tests, examples, and work that may be lost when the process exits. Time is read from
//! tokio's clock, so tests can pause and advance it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;

use super::batch_rows::LocalBatches;
use super::rewrite::Place;
use super::slots::{LocalSlots, Slot};
use super::wake::WakeSignal;
use super::{
    BatchPrune, BatchRow, BatchWrite, DriverError, Edit, Editor, FailedJob, Failure, Lease, NewJob,
    QueueDriver, QueueStats, Reaped, Removal, ReservedJob, Rewritten, WorkerRow,
};

#[derive(Debug)]
struct StoredJob {
    queue: String,
    payload: String,
    attempts: u32,
    /// Prefetches not followed by a start (reset when the job starts).
    unstarted: u32,
    /// Leased by a prefetch not started yet: only a prefetched lease matches it (and the reverse),
    /// since a prefetch does not add to `attempts`.
    prefetched: bool,
    created: Instant,
    /// Its priority within the queue (higher first).
    priority: u8,
}

#[derive(Debug, Default)]
struct QueueState {
    /// Ready jobs by [`rank`] (higher priority first, then FIFO by id, as SQL's `ORDER BY
    /// priority DESC, id`).
    ready: BTreeSet<(u8, u64)>,
    /// Delayed jobs by due time.
    delayed: BTreeSet<(Instant, u64)>,
    /// Reserved jobs by last heartbeat, for O(log n) reaping.
    reserved: BTreeSet<(Instant, u64)>,
}

#[derive(Debug, Default)]
struct State {
    jobs: HashMap<u64, StoredJob>,
    /// Last heartbeat of each reserved job.
    leases: HashMap<u64, Instant>,
    queues: BTreeMap<String, QueueState>,
    failed: BTreeMap<u64, FailedJob>,
    next_id: u64,
    next_failed_id: u64,
    slots: LocalSlots,
    batches: LocalBatches,
    /// Worker presence records by id.
    workers: BTreeMap<String, WorkerRow>,
}

/// Jobs in process memory. Cheap to create; each instance is its own store.
#[derive(Debug)]
pub struct MemoryDriver {
    state: Mutex<State>,
    wake: WakeSignal,
}

impl StoredJob {
    /// This job's current reservation, as the worker sees it.
    fn reservation(&self, id: u64) -> ReservedJob {
        ReservedJob::counted(self.lease(id), self.payload.clone())
    }

    fn lease(&self, id: u64) -> Lease {
        Lease {
            id: id.to_string(),
            queue: self.queue.clone(),
            attempts: self.attempts,
            token: String::new(),
        }
    }
}

impl Default for MemoryDriver {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryDriver {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            wake: WakeSignal::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that matters
        // more than losing the whole store, so keep going with the data.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A ready job's place: `255 - priority`, then its id (the set's first is the next to run).
fn rank(jobs: &HashMap<u64, StoredJob>, id: u64) -> (u8, u64) {
    (u8::MAX - jobs.get(&id).map_or(0, |job| job.priority), id)
}

impl State {
    fn queue(&mut self, name: &str) -> &mut QueueState {
        if !self.queues.contains_key(name) {
            self.queues.insert(name.to_owned(), QueueState::default());
        }
        self.queues.get_mut(name).expect("inserted above")
    }

    fn insert(
        &mut self,
        queue: &str,
        payload: String,
        delay: Duration,
        now: Instant,
        priority: u8,
    ) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.jobs.insert(
            id,
            StoredJob {
                queue: queue.to_owned(),
                payload,
                attempts: 0,
                unstarted: 0,
                prefetched: false,
                created: now,
                priority,
            },
        );
        self.schedule(queue, id, delay, now);
        id
    }

    fn schedule(&mut self, queue: &str, id: u64, delay: Duration, now: Instant) {
        let rank = rank(&self.jobs, id);
        let state = self.queue(queue);
        if delay.is_zero() {
            state.ready.insert(rank);
        } else {
            state
                .delayed
                .insert((now + crate::limits::clamp(delay), id));
        }
    }

    fn promote_due(&mut self, queue: &str, now: Instant) {
        let Some(state) = self.queues.get_mut(queue) else {
            return;
        };
        while let Some(&(due, id)) = state.delayed.first() {
            if due > now {
                break;
            }
            state.delayed.pop_first();
            state.ready.insert(rank(&self.jobs, id));
        }
    }

    /// The job's id if `lease` is the live reservation of it.
    fn held(&self, lease: &Lease) -> Option<u64> {
        let id: u64 = lease.id.parse().ok()?;
        let job = self.jobs.get(&id)?;
        (self.leases.contains_key(&id)
            && job.attempts == lease.attempts
            && job.prefetched == super::is_prefetched(lease)
            && job.queue == lease.queue)
            .then_some(id)
    }

    /// Leases up to `max` ready jobs; `count` adds the attempt now (else a prefetched lease).
    fn lease_ready(&mut self, queues: &[String], max: usize, count: bool) -> Vec<ReservedJob> {
        let now = Instant::now();
        let mut out = Vec::new();
        for queue in queues {
            self.promote_due(queue, now);
            while out.len() < max {
                let Some((_, id)) = self.queues.get_mut(queue).and_then(|q| q.ready.pop_first())
                else {
                    break;
                };
                self.queue(queue).reserved.insert((now, id));
                self.leases.insert(id, now);
                let Some(job) = self.jobs.get_mut(&id) else {
                    continue;
                };
                job.prefetched = !count;
                if count {
                    job.attempts += 1;
                    job.unstarted = 0;
                    out.push(job.reservation(id));
                } else {
                    job.unstarted += 1;
                    out.push(ReservedJob::prefetched(
                        job.lease(id).marked(),
                        job.payload.clone(),
                        job.unstarted - 1,
                    ));
                }
            }
        }
        out
    }

    /// Renews a held lease's heartbeat; `false` if it is not leased.
    fn renew(&mut self, id: u64, now: Instant) -> bool {
        let (Some(heartbeat), Some(job)) = (self.leases.get_mut(&id), self.jobs.get(&id)) else {
            return false;
        };
        let old = std::mem::replace(heartbeat, now);
        if let Some(queue) = self.queues.get_mut(&job.queue) {
            queue.reserved.remove(&(old, id));
            queue.reserved.insert((now, id));
        }
        true
    }

    fn unlease(&mut self, id: u64) -> Option<StoredJob> {
        let heartbeat = self.leases.remove(&id)?;
        let job = self.jobs.get(&id)?;
        let queue = job.queue.clone();
        self.queue(&queue).reserved.remove(&(heartbeat, id));
        self.jobs.remove(&id)
    }

    /// Deletes a queued or delayed job; a leased one stays.
    fn remove(&mut self, id: u64) -> Removal {
        let Some(job) = self.jobs.get(&id) else {
            return Removal::NotFound;
        };
        let queue = job.queue.clone();
        if self.leases.contains_key(&id) {
            return Removal::Leased { queue };
        }
        let rank = rank(&self.jobs, id);
        let state = self.queue(&queue);
        if !state.ready.remove(&rank) {
            state.delayed.retain(|&(_, delayed)| delayed != id);
        }
        let payload = self
            .jobs
            .remove(&id)
            .map(|job| job.payload)
            .unwrap_or_default();
        Removal::Removed { queue, payload }
    }

    fn record_failed(&mut self, job: StoredJob, failure: &Failure) {
        self.next_failed_id += 1;
        let id = self.next_failed_id;
        self.failed.insert(
            id,
            FailedJob {
                id: id.to_string(),
                connection: failure.connection.clone(),
                queue: job.queue,
                payload: job.payload,
                exception: failure.exception.clone(),
                failed_at: SystemTime::now(),
            },
        );
    }
}

fn failed_id(id: &str) -> Result<u64, DriverError> {
    id.parse()
        .map_err(|_| DriverError::InvalidId(id.to_owned()))
}

#[async_trait]
impl QueueDriver for MemoryDriver {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn worker_beat(&self, row: &WorkerRow) -> Result<bool, DriverError> {
        self.lock().workers.insert(row.id.clone(), row.clone());
        Ok(true)
    }

    async fn worker_rows(&self, since: i64) -> Result<Option<Vec<WorkerRow>>, DriverError> {
        let state = self.lock();
        let fresh = state.workers.values().filter(|row| row.beat_at >= since);
        Ok(Some(fresh.cloned().collect()))
    }

    async fn worker_prune(&self, before: i64) -> Result<u64, DriverError> {
        let mut state = self.lock();
        let had = state.workers.len();
        state.workers.retain(|_, row| row.beat_at >= before);
        Ok((had - state.workers.len()) as u64)
    }

    async fn failed_recent(
        &self,
        queue: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FailedJob>, DriverError> {
        let state = self.lock();
        let newest = state.failed.values().rev();
        let of_queue = newest.filter(|f| queue.is_none_or(|q| f.queue == q));
        Ok(of_queue.take(limit).cloned().collect())
    }

    async fn acquire_slot(
        &self,
        name: &str,
        holder: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<Slot, DriverError> {
        Ok(self
            .lock()
            .slots
            .acquire(name, holder, limit, ttl, Instant::now()))
    }

    async fn release_slot(&self, name: &str, holder: Option<&str>) -> Result<(), DriverError> {
        self.lock().slots.release(name, holder);
        Ok(())
    }

    async fn renew_slot(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, DriverError> {
        Ok(self.lock().slots.renew(name, holder, ttl, Instant::now()))
    }

    async fn slot_holders(&self, name: &str) -> Result<Vec<(String, Duration)>, DriverError> {
        Ok(self.lock().slots.holders(name, Instant::now()))
    }

    async fn sweep_slots(&self) -> Result<u64, DriverError> {
        Ok(self.lock().slots.sweep(Instant::now()))
    }

    async fn batch_create(&self, batch: &BatchRow) -> Result<(), DriverError> {
        self.lock().batches.create(batch);
        Ok(())
    }

    async fn batch_read(
        &self,
        id: &str,
        job: Option<&str>,
    ) -> Result<Option<(BatchRow, Option<String>)>, DriverError> {
        Ok(self.lock().batches.read(id, job))
    }

    async fn batch_write(&self, write: &BatchWrite<'_>) -> Result<bool, DriverError> {
        Ok(self.lock().batches.write(write))
    }

    async fn batch_list(&self, limit: usize) -> Result<Vec<BatchRow>, DriverError> {
        Ok(self.lock().batches.list(limit))
    }

    async fn batch_prune(&self, prune: BatchPrune) -> Result<u64, DriverError> {
        Ok(self.lock().batches.prune(prune))
    }

    async fn rewrite_payloads(&self, edit: Editor<'_>) -> Result<Rewritten, DriverError> {
        let mut rewritten = Rewritten::default();
        let mut state = self.lock();
        let State {
            jobs,
            leases,
            failed,
            ..
        } = &mut *state;
        for (id, job) in jobs.iter_mut() {
            let change = edit(&job.payload);
            let place = if leases.contains_key(id) {
                Place::Leased
            } else {
                Place::Queued
            };
            rewritten.count(&change, place, true);
            if let (Edit::Replace(payload), Place::Queued) = (change, place) {
                job.payload = payload;
            }
        }
        for job in failed.values_mut() {
            let change = edit(&job.payload);
            rewritten.count(&change, Place::Failed, true);
            if let Edit::Replace(payload) = change {
                job.payload = payload;
            }
        }
        Ok(rewritten)
    }

    async fn remove(&self, id: &str) -> Result<Removal, DriverError> {
        Ok(id
            .parse()
            .map_or(Removal::NotFound, |id| self.lock().remove(id)))
    }

    async fn push(&self, jobs: &[NewJob]) -> Result<Vec<String>, DriverError> {
        let now = Instant::now();
        let ids = {
            let mut state = self.lock();
            jobs.iter()
                .map(|job| {
                    state
                        .insert(
                            &job.queue,
                            job.payload.clone(),
                            job.delay,
                            now,
                            job.priority,
                        )
                        .to_string()
                })
                .collect()
        };
        self.wake.notify();
        Ok(ids)
    }

    async fn reserve(
        &self,
        queues: &[String],
        max: usize,
    ) -> Result<Vec<ReservedJob>, DriverError> {
        Ok(self.lock().lease_ready(queues, max, true))
    }

    async fn prefetch(
        &self,
        queues: &[String],
        max: usize,
    ) -> Result<Vec<ReservedJob>, DriverError> {
        Ok(self.lock().lease_ready(queues, max, false))
    }

    async fn start(&self, leases: &[Lease]) -> Result<Vec<Option<Lease>>, DriverError> {
        let now = Instant::now();
        let mut state = self.lock();
        Ok(leases
            .iter()
            .map(|lease| {
                if !super::is_prefetched(lease) {
                    return None;
                }
                let id = state.held(lease)?;
                state.renew(id, now);
                let job = state.jobs.get_mut(&id)?;
                job.attempts += 1;
                job.unstarted = 0;
                job.prefetched = false;
                Some(job.lease(id))
            })
            .collect())
    }

    async fn ack(&self, leases: &[Lease]) -> Result<(), DriverError> {
        let mut state = self.lock();
        for lease in leases {
            if let Some(id) = state.held(lease) {
                state.unlease(id);
            }
        }
        Ok(())
    }

    async fn release(
        &self,
        lease: &Lease,
        delay: Duration,
        refund_attempt: bool,
    ) -> Result<bool, DriverError> {
        let now = Instant::now();
        let released = {
            let mut state = self.lock();
            let Some(id) = state.held(lease) else {
                return Ok(false);
            };
            let Some(heartbeat) = state.leases.remove(&id) else {
                return Ok(false);
            };
            state.queue(&lease.queue).reserved.remove(&(heartbeat, id));
            if let Some(job) = state.jobs.get_mut(&id) {
                job.prefetched = false;
                if super::is_prefetched(lease) {
                    // Given back unstarted (a worker stopping): no attempt counted, and no stall.
                    job.unstarted = job.unstarted.saturating_sub(1);
                } else if refund_attempt {
                    job.attempts = job.attempts.saturating_sub(1);
                }
            }
            state.schedule(&lease.queue, id, delay, now);
            true
        };
        self.wake.notify();
        Ok(released)
    }

    async fn fail(&self, lease: &Lease, failure: &Failure) -> Result<bool, DriverError> {
        let mut state = self.lock();
        let Some(id) = state.held(lease) else {
            return Ok(false);
        };
        let Some(job) = state.unlease(id) else {
            return Ok(false);
        };
        state.record_failed(job, failure);
        Ok(true)
    }

    async fn extend(&self, leases: &[Lease]) -> Result<usize, DriverError> {
        let now = Instant::now();
        let mut state = self.lock();
        let mut held = 0;
        for lease in leases {
            if let Some(id) = state.held(lease)
                && state.renew(id, now)
            {
                held += 1;
            }
        }
        Ok(held)
    }

    async fn reap(
        &self,
        queues: &[String],
        visibility_timeout: Duration,
        max_tries_override: Option<u32>,
        connection: &str,
    ) -> Result<Reaped, DriverError> {
        let now = Instant::now();
        let mut reaped = Reaped::default();
        {
            let mut state = self.lock();
            let Some(cutoff) = now.checked_sub(visibility_timeout) else {
                return Ok(reaped);
            };
            for queue in queues {
                while let Some(&(heartbeat, id)) =
                    state.queues.get(queue).and_then(|q| q.reserved.first())
                {
                    if heartbeat >= cutoff {
                        break;
                    }
                    state.queue(queue).reserved.pop_first();
                    state.leases.remove(&id);
                    let Some(job) = state.jobs.get_mut(&id) else {
                        continue;
                    };
                    // A prefetch that never started goes back unspent.
                    let unstarted = std::mem::take(&mut job.prefetched);
                    if !unstarted
                        && super::out_of_tries(&job.payload, job.attempts, max_tries_override)
                    {
                        let Some(job) = state.jobs.remove(&id) else {
                            continue;
                        };
                        let failure = Failure {
                            connection: connection.to_owned(),
                            exception: super::reservation_expired_message(visibility_timeout),
                        };
                        reaped.expired.push(job.reservation(id));
                        state.record_failed(job, &failure);
                        reaped.failed += 1;
                    } else {
                        let rank = rank(&state.jobs, id);
                        state.queue(queue).ready.insert(rank);
                        reaped.requeued += 1;
                    }
                }
            }
        }
        if reaped.requeued > 0 {
            self.wake.notify();
        }
        Ok(reaped)
    }

    async fn size(&self, queue: &str) -> Result<u64, DriverError> {
        let state = self.lock();
        Ok(state
            .queues
            .get(queue)
            .map_or(0, |q| (q.ready.len() + q.delayed.len()) as u64))
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, DriverError> {
        let now = Instant::now();
        let mut state = self.lock();
        state.promote_due(queue, now);
        let failed = state.failed.values().filter(|f| f.queue == queue).count() as u64;
        let Some(q) = state.queues.get(queue) else {
            return Ok(QueueStats {
                queue: queue.to_owned(),
                failed,
                ..QueueStats::default()
            });
        };
        let oldest = q
            .ready
            .iter()
            .filter_map(|(_, id)| state.jobs.get(id))
            .map(|job| job.created)
            .min();
        Ok(QueueStats {
            queue: queue.to_owned(),
            ready: q.ready.len() as u64,
            reserved: q.reserved.len() as u64,
            delayed: q.delayed.len() as u64,
            failed,
            oldest_ready_age_seconds: oldest
                .map_or(0.0, |created| now.duration_since(created).as_secs_f64()),
        })
    }

    async fn queues(&self) -> Result<Vec<String>, DriverError> {
        let state = self.lock();
        let mut names: BTreeSet<String> = state
            .queues
            .iter()
            .filter(|(_, q)| !(q.ready.is_empty() && q.delayed.is_empty() && q.reserved.is_empty()))
            .map(|(name, _)| name.clone())
            .collect();
        names.extend(state.failed.values().map(|f| f.queue.clone()));
        Ok(names.into_iter().collect())
    }

    async fn next_due(&self, queues: &[String]) -> Result<Option<Duration>, DriverError> {
        let now = Instant::now();
        let state = self.lock();
        Ok(queues
            .iter()
            .filter_map(|q| state.queues.get(q).and_then(|q| q.delayed.first()))
            .map(|(due, _)| due.saturating_duration_since(now))
            .min())
    }

    fn wake_signal(&self) -> Option<watch::Receiver<u64>> {
        Some(self.wake.subscribe())
    }

    async fn failed_list(&self, queue: Option<&str>) -> Result<Vec<FailedJob>, DriverError> {
        let state = self.lock();
        Ok(state
            .failed
            .values()
            .filter(|f| queue.is_none_or(|q| f.queue == q))
            .cloned()
            .collect())
    }

    async fn failed_get(&self, id: &str) -> Result<Option<FailedJob>, DriverError> {
        let id = failed_id(id)?;
        Ok(self.lock().failed.get(&id).cloned())
    }

    async fn failed_retry(&self, id: &str) -> Result<Option<String>, DriverError> {
        let id = failed_id(id)?;
        let new_id = {
            let mut state = self.lock();
            let Some(failed) = state.failed.remove(&id) else {
                return Ok(None);
            };
            let priority = crate::envelope::priority_of(&failed.payload);
            state.insert(
                &failed.queue,
                failed.payload,
                Duration::ZERO,
                Instant::now(),
                priority,
            )
        };
        self.wake.notify();
        Ok(Some(new_id.to_string()))
    }

    async fn failed_forget(&self, id: &str) -> Result<bool, DriverError> {
        let id = failed_id(id)?;
        Ok(self.lock().failed.remove(&id).is_some())
    }

    async fn failed_flush(&self, queue: Option<&str>) -> Result<u64, DriverError> {
        let mut state = self.lock();
        let before = state.failed.len();
        state
            .failed
            .retain(|_, f| queue.is_some_and(|q| f.queue != q));
        Ok((before - state.failed.len()) as u64)
    }

    async fn failed_prune(
        &self,
        queue: Option<&str>,
        older_than: Duration,
    ) -> Result<u64, DriverError> {
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut state = self.lock();
        let before = state.failed.len();
        state
            .failed
            .retain(|_, f| f.failed_at >= cutoff || queue.is_some_and(|q| f.queue != q));
        Ok((before - state.failed.len()) as u64)
    }
}
