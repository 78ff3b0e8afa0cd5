//! Cancelling running jobs (`queue-cancel ID`): every [`POLL`] the worker asks the store, in one
//! call, which of the jobs it holds (prefetched or running) have a cancellation signal
//! ([`queue::cancel`](crate::queue::cancel)). A running job's request token fires (the job's own
//! cancellation token then fires and the job ends as cancelled); a job not started yet is
//! remembered, and ends as cancelled without running when its turn comes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::driver::{DriverError, QueueDriver};
use crate::queue::cancel;

/// How often a worker holding jobs looks for their cancellations (a cancelled job stops within
/// a second, a round trip and the handler's return included).
pub(crate) const POLL: Duration = Duration::from_millis(500);

/// Cancellation requests, by the worker's key of a held job (its key in the heartbeat set).
#[derive(Debug, Default)]
pub(crate) struct Cancels {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Running jobs' request tokens.
    watched: HashMap<u64, CancellationToken>,
    /// Held jobs whose cancellation was seen (running or not started yet).
    requested: HashSet<u64>,
}

impl Cancels {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watches the job held under `key` while the returned guard lives; its token has fired
    /// already if the job's cancellation was seen before it started.
    pub(crate) fn watch(&self, key: u64) -> Watched<'_> {
        let request = CancellationToken::new();
        let mut state = self.lock();
        if state.requested.contains(&key) {
            request.cancel();
        }
        state.watched.insert(key, request.clone());
        Watched {
            cancels: self,
            key,
            request,
        }
    }

    /// Marks the held jobs under `keys` as cancelled, firing the tokens of those running.
    /// Returns how many were not marked before.
    fn request(&self, keys: impl IntoIterator<Item = u64>) -> usize {
        let mut state = self.lock();
        let mut new = 0;
        for key in keys {
            if let Some(request) = state.watched.get(&key) {
                request.cancel();
            }
            new += usize::from(state.requested.insert(key));
        }
        new
    }

    /// Forgets requests for jobs no longer held.
    fn keep_only(&self, held: &HashSet<u64>) {
        self.lock().requested.retain(|key| held.contains(key));
    }
}

/// A running job's cancellation request; the job leaves the watch when this drops.
#[derive(Debug)]
pub(crate) struct Watched<'a> {
    cancels: &'a Cancels,
    key: u64,
    request: CancellationToken,
}

impl Watched<'_> {
    /// Fires when the job's cancellation is seen.
    pub(crate) fn request(&self) -> &CancellationToken {
        &self.request
    }
}

impl Drop for Watched<'_> {
    fn drop(&mut self) {
        let mut state = self.cancels.lock();
        state.watched.remove(&self.key);
        state.requested.remove(&self.key);
    }
}

/// Whether job `id` has a cancellation signal, asked once (a job about to run again, or about
/// to be put back). A store that cannot tell says no.
pub(crate) async fn signalled(driver: &dyn QueueDriver, id: &str) -> bool {
    match driver.held_slots(&[cancel::slot(id)]).await {
        Ok(held) => held.first().copied().unwrap_or(false),
        Err(DriverError::Unsupported { .. }) => false,
        Err(error) => {
            tracing::debug!(job_id = id, %error, "could not look for a cancellation");
            false
        }
    }
}

/// Polls the store for the held jobs' cancellations until `stop` fires. A driver without
/// slots has no cancellations: the loop ends at its first answer.
pub(crate) async fn poll(shared: Arc<Shared>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        let (keys, names): (Vec<u64>, Vec<String>) = shared
            .running()
            .iter()
            .map(|(key, lease)| (*key, cancel::slot(&lease.id)))
            .unzip();
        shared.cancels.keep_only(&keys.iter().copied().collect());
        if keys.is_empty() {
            continue;
        }
        match shared.driver.held_slots(&names).await {
            Ok(held) => {
                let cancelled: Vec<u64> = keys
                    .iter()
                    .zip(held)
                    .filter(|(_, held)| *held)
                    .map(|(key, _)| *key)
                    .collect();
                let new = shared.cancels.request(cancelled);
                if new > 0 {
                    tracing::info!(jobs = new, "cancellation requested; stopping");
                }
            }
            Err(DriverError::Unsupported { .. }) => return,
            Err(error) => tracing::debug!(%error, "could not look for cancelled jobs"),
        }
    }
}
