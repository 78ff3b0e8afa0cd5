//! Stopping a worker: drain (finish running jobs within the grace period) or stop now.

use tokio_util::sync::CancellationToken;

/// A handle that stops a running [`Worker`](super::Worker). Clone it freely.
///
/// [`Shutdown::drain`] stops reserving and lets running jobs finish within the grace period, then
/// releases what is still running; [`Shutdown::now`] releases running jobs at once. Released jobs go
/// back to their queue without using up an attempt.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    drain: CancellationToken,
    now: CancellationToken,
}

impl Shutdown {
    /// A handle that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Graceful stop (the first SIGTERM/SIGINT).
    pub fn drain(&self) {
        self.drain.cancel();
    }

    /// Immediate stop (the second signal): running jobs are released now.
    pub fn now(&self) {
        self.drain.cancel();
        self.now.cancel();
    }

    /// Whether a drain (or an immediate stop) was asked for.
    pub fn is_draining(&self) -> bool {
        self.drain.is_cancelled()
    }

    /// Resolves when a drain is asked for.
    pub async fn drained(&self) {
        self.drain.cancelled().await;
    }

    /// Resolves when an immediate stop is asked for.
    pub async fn stopped_now(&self) {
        self.now.cancelled().await;
    }

    /// Fires `drain` on the first SIGTERM or SIGINT (Ctrl-C) and `now` on the second.
    /// Returns after the second signal, or at once if signals cannot be watched.
    pub async fn on_signals(self) {
        let Some(mut signals) = Signals::new() else {
            tracing::warn!("cannot watch SIGTERM/SIGINT; the worker stops only through its limits");
            return;
        };
        signals.recv().await;
        tracing::info!("received a shutdown signal: draining (send it again to stop at once)");
        self.drain();
        signals.recv().await;
        tracing::warn!("received a second shutdown signal: releasing running jobs and stopping");
        self.now();
    }
}

/// SIGTERM and SIGINT, watched from the moment this is created.
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> Option<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Some(Self {
            term: signal(SignalKind::terminate()).ok()?,
            int: signal(SignalKind::interrupt()).ok()?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> Option<Self> {
        Some(Self)
    }

    async fn recv(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
