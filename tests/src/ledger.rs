//! A process-wide record of what test jobs did, keyed per test so parallel tests never mix.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// One thing a test job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `"run"`, `"done"`, `"failed"`, `"cancelled"`, ...
    pub what: &'static str,
    /// `ctx.attempts()` when it happened.
    pub attempt: u32,
    /// The job's own number (its `n` field), or 0.
    pub n: u64,
    /// The job id.
    pub job_id: String,
    /// When it happened.
    pub at: Instant,
}

static LEDGER: Mutex<Option<HashMap<String, Vec<Event>>>> = Mutex::new(None);
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn ledger() -> MutexGuard<'static, Option<HashMap<String, Vec<Event>>>> {
    LEDGER.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A key no other test uses, in this process or any earlier run.
pub fn unique_key(prefix: &str) -> String {
    // The servers outlive test runs and process ids are reused, so a run tag that is random per
    // process keeps today's queues apart from anything an earlier run left behind.
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| format!("{}{:08x}", std::process::id(), fastrand::u32(..)));
    format!("{prefix}-{run}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Records an event under `key`.
pub fn record(key: &str, what: &'static str, attempt: u32, n: u64, job_id: &str) {
    let event = Event {
        what,
        attempt,
        n,
        job_id: job_id.to_owned(),
        at: Instant::now(),
    };
    ledger()
        .get_or_insert_with(HashMap::new)
        .entry(key.to_owned())
        .or_default()
        .push(event);
}

/// Everything recorded under `key`, in order.
pub fn events(key: &str) -> Vec<Event> {
    ledger()
        .as_ref()
        .and_then(|l| l.get(key).cloned())
        .unwrap_or_default()
}

/// The events of one kind under `key`.
pub fn of(key: &str, what: &str) -> Vec<Event> {
    events(key).into_iter().filter(|e| e.what == what).collect()
}
