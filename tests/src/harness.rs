//! What every conformance case gets: a driver, a queue name of its own, and helpers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use routemq::driver::{NewJob, QueueDriver};
use routemq::queue::DispatchOutput;
use routemq::{Job, QueueManager, Settings, Worker, WorkerOptions, WorkerReport};

use crate::ledger::unique_key;

/// Something that makes a driver; `None` when its server is not configured.
pub trait Factory {
    /// Makes (or connects) the driver.
    fn make(&self) -> impl Future<Output = Option<Arc<dyn QueueDriver>>>;
}

impl<F, Fut> Factory for F
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<Arc<dyn QueueDriver>>>,
{
    fn make(&self) -> impl Future<Output = Option<Arc<dyn QueueDriver>>> {
        self()
    }
}

/// One test's driver, connection name, queue and ledger key.
#[derive(Debug)]
pub struct Harness {
    /// A manager whose only connection is the driver under test.
    pub manager: QueueManager,
    /// The driver under test.
    pub driver: Arc<dyn QueueDriver>,
    /// The connection name it is registered under.
    pub connection: String,
    /// A queue no other test uses.
    pub queue: String,
    /// A ledger key no other test uses.
    pub key: String,
}

impl Harness {
    /// Makes the driver; `None` (the test is skipped) when the factory has none.
    pub async fn new(factory: impl Factory, test: &str) -> Option<Self> {
        let driver = factory.make().await?;
        driver.migrate().await.expect("migrate");
        let connection = format!("under-test-{}", driver.kind());
        let manager = QueueManager::new(Settings {
            default_connection: connection.clone(),
            ..Settings::default()
        });
        manager.register(connection.clone(), Arc::clone(&driver));
        let unique = unique_key(&test.replace('_', "-"));
        Some(Self {
            manager,
            driver,
            connection,
            queue: format!("t-{unique}"),
            key: unique,
        })
    }

    /// A second queue of this test's own.
    pub fn other_queue(&self) -> String {
        format!("{}-b", self.queue)
    }

    /// Worker options for tests: fast polls, heartbeats and reaper; stops when empty.
    pub fn options(&self) -> WorkerOptions {
        WorkerOptions {
            queues: vec![self.queue.clone()],
            concurrency: 4,
            sleep: Duration::from_millis(50),
            stop_when_empty: true,
            heartbeat_interval: Duration::from_millis(200),
            reaper_interval: Duration::from_millis(200),
            visibility_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            ..WorkerOptions::default()
        }
    }

    /// A worker on the driver under test.
    pub fn worker(&self, options: WorkerOptions) -> Worker {
        Worker::new(Arc::clone(&self.driver), self.connection.clone(), options)
    }

    /// Runs a worker with `options` to completion (bounded by 60 s).
    pub async fn work(&self, options: WorkerOptions) -> WorkerReport {
        tokio::time::timeout(Duration::from_secs(60), self.worker(options).run())
            .await
            .expect("worker finished within 60 s")
            .expect("worker ran")
    }

    /// Dispatches `job` to this test's queue; returns its id.
    pub async fn push<T: Job>(&self, job: T) -> String {
        let dispatched = self
            .manager
            .push(job)
            .on_queue(self.queue.clone())
            .await
            .expect("dispatch");
        dispatched.job_id().expect("queued").to_owned()
    }

    /// Pushes a raw payload (for malformed-envelope tests).
    pub async fn push_raw(&self, payload: &str) -> String {
        let job = NewJob::new(self.queue.clone(), payload, Duration::ZERO);
        self.driver.push(&[job]).await.expect("push").remove(0)
    }

    /// Ready plus delayed jobs on this test's queue.
    pub async fn size(&self) -> u64 {
        self.driver.size(&self.queue).await.expect("size")
    }
}

/// Waits until `condition` holds, polling every 20 ms, for at most `limit`.
pub async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}
