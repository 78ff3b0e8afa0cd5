//! Cancelling running jobs (`queue-cancel ID`): every [`POLL`] the worker asks the store, in one
//! call, which of its running jobs have a cancellation signal
//! ([`queue::cancel`](crate::queue::cancel)), and fires their request tokens; the job's own
//! cancellation token then fires and the job ends as cancelled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::driver::DriverError;
use crate::queue::cancel;

/// How often a worker with running jobs looks for their cancellations (a cancelled job stops
/// within a second, a round trip and the handler's return included).
pub(crate) const POLL: Duration = Duration::from_millis(500);

/// The running jobs' cancellation requests, by job id.
#[derive(Debug, Default)]
pub(crate) struct Cancels {
    requests: Mutex<HashMap<String, CancellationToken>>,
}

impl Cancels {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watches job `id` for a cancellation while the returned guard lives.
    pub(crate) fn watch<'a>(&'a self, id: &str) -> Watched<'a> {
        let request = CancellationToken::new();
        self.lock().insert(id.to_owned(), request.clone());
        Watched {
            cancels: self,
            id: id.to_owned(),
            request,
        }
    }
}

/// A running job's cancellation request; the job leaves the watch when this drops.
#[derive(Debug)]
pub(crate) struct Watched<'a> {
    cancels: &'a Cancels,
    id: String,
    request: CancellationToken,
}

impl Watched<'_> {
    /// Fires when the job's cancellation is requested.
    pub(crate) fn request(&self) -> &CancellationToken {
        &self.request
    }
}

impl Drop for Watched<'_> {
    fn drop(&mut self) {
        self.cancels.lock().remove(&self.id);
    }
}

/// Polls the store for the running jobs' cancellations until `stop` fires. A driver without
/// slots has no cancellations: the loop ends at its first answer.
pub(crate) async fn poll(shared: Arc<Shared>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        let (ids, requests): (Vec<String>, Vec<CancellationToken>) = shared
            .cancels
            .lock()
            .iter()
            .map(|(id, request)| (id.clone(), request.clone()))
            .unzip();
        if ids.is_empty() {
            continue;
        }
        let names: Vec<String> = ids.iter().map(|id| cancel::slot(id)).collect();
        match shared.driver.held_slots(&names).await {
            Ok(held) => {
                for ((id, request), held) in ids.iter().zip(&requests).zip(held) {
                    if held && !request.is_cancelled() {
                        tracing::info!(job_id = %id, "cancellation requested; stopping the job");
                        request.cancel();
                    }
                }
            }
            Err(DriverError::Unsupported { .. }) => return,
            Err(error) => tracing::debug!(%error, "could not look for cancelled jobs"),
        }
    }
}
