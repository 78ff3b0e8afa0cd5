//! Worker processes: the `reliability` binary re-runs itself as `reliability __worker …`.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use routemq::{Shutdown, Worker, WorkerOptions};

use super::Target;

/// The body of `reliability __worker <driver> <location> <queue> <grace-ms>`: a worker with short
/// leases (2 s visibility timeout, 0.5 s heartbeat and reaper), until SIGTERM.
pub async fn worker_main(args: &[String]) -> Result<(), String> {
    let [driver, location, queue, grace] = args else {
        return Err("usage: __worker DRIVER LOCATION QUEUE GRACE_MS".into());
    };
    let grace: u64 = grace
        .parse()
        .map_err(|_| "grace must be milliseconds".to_owned())?;
    let opened = Target::open(driver, location).await?;
    let options = WorkerOptions {
        queues: vec![queue.clone()],
        concurrency: 8,
        sleep: Duration::from_millis(100),
        visibility_timeout: Duration::from_secs(2),
        heartbeat_interval: Duration::from_millis(500),
        reaper_interval: Duration::from_millis(500),
        shutdown_grace: Duration::from_millis(grace),
        ..WorkerOptions::default()
    };
    let shutdown = Shutdown::new();
    let signals = tokio::spawn(shutdown.clone().on_signals());
    let result = Worker::new(Arc::clone(&opened), driver.clone(), options)
        .with_shutdown(shutdown)
        .run()
        .await;
    signals.abort();
    result.map(|_| ()).map_err(|e| e.to_string())
}

/// A worker process, killed (`-9`) when dropped if still running.
#[derive(Debug)]
pub(super) struct WorkerProcess {
    child: Child,
}

impl WorkerProcess {
    /// Starts `reliability __worker` for `target` on `queue`.
    pub(super) fn start(
        target: &Target,
        location: &str,
        queue: &str,
        grace: Duration,
    ) -> Result<Self, String> {
        Self::start_on(None, target, location, queue, grace)
    }

    /// [`start`](Self::start) in the network namespace `host` (`ip netns exec`, which runs the
    /// worker itself: the process id is the worker's), or here.
    pub(super) fn start_on(
        host: Option<&str>,
        target: &Target,
        location: &str,
        queue: &str,
        grace: Duration,
    ) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut command = match host {
            Some(host) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", host]).arg(exe);
                command
            }
            None => Command::new(exe),
        };
        let child = command
            .args([
                "__worker",
                &target.driver,
                location,
                queue,
                &grace.as_millis().to_string(),
            ])
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start a worker process: {e}"))?;
        Ok(Self { child })
    }

    /// The process id.
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `KILL`).
    pub(super) fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// Waits up to `limit` for the process to exit; returns whether it exited successfully.
    pub(super) fn wait(&mut self, limit: Duration) -> Option<bool> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.success());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it is still running.
    pub(super) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
