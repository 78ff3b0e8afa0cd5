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
