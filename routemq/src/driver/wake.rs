//! The wake-up signal idle workers wait on instead of polling.

use tokio::sync::watch;

/// A counter that changes whenever jobs may have become ready. A driver bumps it on push,
/// release, retry and reaping (and on notifications from its server); idle workers wait for a
/// change. Custom drivers can use it for [`QueueDriver::wake_signal`](super::QueueDriver::wake_signal).
#[derive(Debug, Clone)]
pub struct WakeSignal(watch::Sender<u64>);

impl Default for WakeSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl WakeSignal {
    /// A signal nobody has bumped yet.
    pub fn new() -> Self {
        Self(watch::Sender::new(0))
    }

    /// Wakes every waiting worker.
    pub fn notify(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver for a worker to wait on.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// The task that feeds a [`WakeSignal`] from a server's notifications (LISTEN/NOTIFY, pub/sub):
/// started once, on the first worker that waits, and stopped when its driver is dropped.
#[derive(Debug, Default)]
pub(crate) struct WakeFeed(std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>);

impl WakeFeed {
    /// Spawns `task()` unless it runs already (or there is no runtime to run it on).
    #[cfg_attr(not(any(feature = "postgres", feature = "redis")), allow(dead_code))]
    pub(crate) fn start_once<F>(&self, task: impl FnOnce() -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut slot = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            *slot = Some(runtime.spawn(task()));
        }
    }
}

impl Drop for WakeFeed {
    fn drop(&mut self) {
        if let Some(task) = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

/// How long a feed waits before reconnecting after `failures` lost connections in a row.
#[cfg_attr(not(any(feature = "postgres", feature = "redis")), allow(dead_code))]
pub(crate) fn reconnect_pause(failures: u32) -> std::time::Duration {
    std::time::Duration::from_millis(100 * u64::from(failures.min(50)))
}
