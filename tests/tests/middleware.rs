//! Middleware, lifecycle hooks and shared data on a worker (memory driver): the order middleware
//! runs in, what its results do to a job, what hooks see, and `ctx.data`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use routemq::driver::QueueDriver;
use routemq::driver::memory::MemoryDriver;
use routemq::middleware::{Middleware, Next};
use routemq::prelude::*;
use routemq::queue::DispatchOutput;
use routemq::worker::{JobEvent, Lifecycle};
use routemq::{QueueManager, Settings, WorkerReport};
use routemq_tests::jobs::{AlwaysFail, FailTimes};
use routemq_tests::ledger::unique_key;

static LOGS: Mutex<Option<HashMap<String, Vec<String>>>> = Mutex::new(None);

fn log(key: &str, entry: impl Into<String>) {
    LOGS.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashMap::new)
        .entry(key.to_owned())
        .or_default()
        .push(entry.into());
}

fn logged(key: &str) -> Vec<String> {
    LOGS.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|logs| logs.get(key).cloned())
        .unwrap_or_default()
}

fn gate_runs(key: &str) -> usize {
    logged(key).iter().filter(|e| e.starts_with("gate")).count()
}

/// Logs `"{name} in"` and `"{name} out"` around the rest of the chain.
struct Tag {
    key: String,
    name: &'static str,
}

#[routemq::async_trait]
impl Middleware for Tag {
    async fn handle(&self, _ctx: &JobContext, next: Next<'_>) -> Result<(), JobError> {
        log(&self.key, format!("{} in", self.name));
        let result = next.run().await;
        log(&self.key, format!("{} out", self.name));
        result
    }
}

/// What [`Gate`] does instead of running the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Decision {
    Run,
    Skip,
    Fail,
    PostponeFirstRun,
}

struct Gate {
    key: String,
    decision: Decision,
}

#[routemq::async_trait]
impl Middleware for Gate {
    async fn handle(&self, ctx: &JobContext, next: Next<'_>) -> Result<(), JobError> {
        log(&self.key, format!("gate attempt {}", ctx.attempts()));
        match self.decision {
            Decision::Run => next.run().await,
            Decision::Skip => Ok(()),
            Decision::Fail => Err(JobError::permanent("the gate refused")),
            Decision::PostponeFirstRun if gate_runs(&self.key) == 1 => {
                Err(JobError::postpone(Duration::from_millis(100)))
            }
            Decision::PostponeFirstRun => next.run().await,
        }
    }
}

#[derive(Debug)]
#[job(name = "middleware.Gated", max_tries = 1)]
struct Gated {
    key: String,
    decision: Decision,
}

impl Job for Gated {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        log(&self.key, format!("handle attempt {}", ctx.attempts()));
        Ok(())
    }

    async fn failed(&mut self, _ctx: &JobContext, error: &JobError) {
        log(&self.key, format!("failed: {error}"));
    }

    fn middleware(&self) -> Vec<Box<dyn Middleware>> {
        vec![
            Box::new(Tag {
                key: self.key.clone(),
                name: "job",
            }),
            Box::new(Gate {
                key: self.key.clone(),
                decision: self.decision,
            }),
        ]
    }
}

/// A shared value.
#[derive(Debug)]
struct Greeting(&'static str);

#[derive(Debug)]
#[job(name = "middleware.UsesData", max_tries = 2)]
struct UsesData {
    key: String,
}

impl Job for UsesData {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        let greeting = ctx.data::<Greeting>()?;
        log(&self.key, greeting.0);
        Ok(())
    }
}

#[derive(Debug)]
#[job(name = "middleware.Anyhow", max_tries = 1)]
struct UsesAnyhow;

fn parse_port() -> anyhow::Result<u16> {
    use anyhow::Context;
    let port: u16 = "http".parse().context("reading the port")?;
    Ok(port)
}

impl Job for UsesAnyhow {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        parse_port()?;
        Ok(())
    }
}

struct Setup {
    manager: QueueManager,
    driver: Arc<dyn QueueDriver>,
    queue: String,
    key: String,
}

impl Setup {
    fn new() -> Self {
        let driver: Arc<dyn QueueDriver> = Arc::new(MemoryDriver::new());
        let manager = QueueManager::new(Settings::default());
        manager.register("memory", Arc::clone(&driver));
        let key = unique_key("middleware");
        Self {
            manager,
            driver,
            queue: format!("q-{key}"),
            key,
        }
    }

    async fn push<T: Job>(&self, job: T) -> String {
        let dispatched = self
            .manager
            .push(job)
            .on_connection("memory")
            .on_queue(self.queue.clone())
            .await
            .expect("push");
        dispatched.job_id().expect("queued").to_owned()
    }

    fn worker(&self) -> Worker {
        let options = WorkerOptions {
            queues: vec![self.queue.clone()],
            concurrency: 1,
            sleep: Duration::from_millis(20),
            stop_when_empty: true,
            ..WorkerOptions::default()
        };
        Worker::new(Arc::clone(&self.driver), "memory", options)
    }

    async fn run(&self, worker: Worker) -> WorkerReport {
        tokio::time::timeout(Duration::from_secs(30), worker.run())
            .await
            .expect("worker finished")
            .expect("worker ran")
    }

    async fn failed_exceptions(&self) -> Vec<String> {
        self.driver
            .failed_list(Some(&self.queue))
            .await
            .expect("failed")
            .into_iter()
            .map(|f| f.exception)
            .collect()
    }
}

#[tokio::test]
async fn worker_middleware_runs_first_in_order_then_the_jobs_then_handle() {
    let s = Setup::new();
    s.push(Gated {
        key: s.key.clone(),
        decision: Decision::Run,
    })
    .await;
    let worker = s
        .worker()
        .middleware(Tag {
            key: s.key.clone(),
            name: "w1",
        })
        .middleware(Tag {
            key: s.key.clone(),
            name: "w2",
        });
    let report = s.run(worker).await;
    assert_eq!(report.succeeded, 1);
    assert_eq!(
        logged(&s.key),
        [
            "w1 in",
            "w2 in",
            "job in",
            "gate attempt 1",
            "handle attempt 1",
            "job out",
            "w2 out",
            "w1 out"
        ]
    );
}

#[tokio::test]
async fn a_middleware_that_does_not_call_next_skips_the_job() {
    let s = Setup::new();
    s.push(Gated {
        key: s.key.clone(),
        decision: Decision::Skip,
    })
    .await;
    let report = s.run(s.worker()).await;
    assert_eq!((report.succeeded, report.failed), (1, 0));
    assert_eq!(logged(&s.key), ["job in", "gate attempt 1", "job out"]);
    assert_eq!(s.driver.size(&s.queue).await.expect("size"), 0);
}

#[tokio::test]
async fn a_middleware_can_fail_a_job_for_good() {
    let s = Setup::new();
    s.push(Gated {
        key: s.key.clone(),
        decision: Decision::Fail,
    })
    .await;
    let report = s.run(s.worker()).await;
    assert_eq!((report.succeeded, report.failed), (0, 1));
    assert_eq!(
        logged(&s.key),
        [
            "job in",
            "gate attempt 1",
            "job out",
            "failed: the gate refused"
        ]
    );
    assert_eq!(s.failed_exceptions().await, ["Permanent: the gate refused"]);
}

#[tokio::test]
async fn a_middleware_can_postpone_a_job_without_using_its_only_try() {
    let s = Setup::new();
    s.push(Gated {
        key: s.key.clone(),
        decision: Decision::PostponeFirstRun,
    })
    .await;
    // A postponed job does not use up --max-jobs: the one job still runs.
    let options = WorkerOptions {
        queues: vec![s.queue.clone()],
        concurrency: 1,
        sleep: Duration::from_millis(20),
        stop_when_empty: true,
        max_jobs: Some(1),
        ..WorkerOptions::default()
    };
    let report = s
        .run(Worker::new(Arc::clone(&s.driver), "memory", options))
        .await;
    assert_eq!(
        (report.postponed, report.succeeded, report.failed),
        (1, 1, 0),
        "{report:?}"
    );
    assert_eq!(
        logged(&s.key),
        [
            "job in",
            "gate attempt 1",
            "job out",
            "job in",
            "gate attempt 1",
            "handle attempt 1",
            "job out"
        ]
    );
}

type Seen = Arc<Mutex<Vec<(Lifecycle, String, u32, Option<String>, Option<Duration>)>>>;

fn record_into(seen: &Seen) -> impl Fn(&JobEvent<'_>) + Send + Sync + 'static {
    let seen = Arc::clone(seen);
    move |event| {
        seen.lock().unwrap_or_else(PoisonError::into_inner).push((
            event.lifecycle,
            event.ctx.job_id().to_owned(),
            event.ctx.attempts(),
            event.error.map(|e| e.kind().to_owned()),
            event.delay,
        ));
    }
}

#[tokio::test]
async fn hooks_see_every_step_of_every_job() {
    let s = Setup::new();
    let flaky = s
        .push(FailTimes {
            key: s.key.clone(),
            fail_times: 1,
        })
        .await;
    let doomed = s
        .push(AlwaysFail {
            key: s.key.clone(),
            permanent: true,
        })
        .await;
    let seen = Seen::default();
    let worker = [
        Lifecycle::Before,
        Lifecycle::After,
        Lifecycle::Failure,
        Lifecycle::FinalFailure,
        Lifecycle::Release,
    ]
    .into_iter()
    .fold(s.worker(), |worker, when| {
        worker.on(when, record_into(&seen))
    })
    // A hook that panics changes nothing.
    .on(Lifecycle::Before, |_| panic!("a broken hook"));
    let report = s.run(worker).await;
    assert_eq!((report.succeeded, report.retried, report.failed), (1, 1, 1));
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let of = |id: &str| -> Vec<_> {
        seen.iter()
            .filter(|e| e.1 == id)
            .map(|e| (e.0, e.2, e.3.clone(), e.4))
            .collect()
    };
    let failed = Some("Failed".to_owned());
    assert_eq!(
        of(&flaky),
        [
            (Lifecycle::Before, 1, None, None),
            (Lifecycle::Failure, 1, failed.clone(), None),
            (Lifecycle::Release, 1, failed, Some(Duration::ZERO)),
            (Lifecycle::Before, 2, None, None),
            (Lifecycle::After, 2, None, None),
        ]
    );
    let permanent = Some("Permanent".to_owned());
    assert_eq!(
        of(&doomed),
        [
            (Lifecycle::Before, 1, None, None),
            (Lifecycle::Failure, 1, permanent.clone(), None),
            (Lifecycle::FinalFailure, 1, permanent, None),
        ]
    );
}

#[tokio::test]
async fn shared_data_reaches_handlers_and_missing_data_fails_for_good() {
    let s = Setup::new();
    s.push(UsesData { key: s.key.clone() }).await;
    let report = s.run(s.worker().data(Greeting("hello"))).await;
    assert_eq!(report.succeeded, 1);
    assert_eq!(logged(&s.key), ["hello"]);

    // The same job on a worker without the value: one attempt, then the failed store.
    s.push(UsesData { key: s.key.clone() }).await;
    let report = s.run(s.worker().data(5u32)).await;
    assert_eq!((report.failed, report.retried), (1, 0));
    let exceptions = s.failed_exceptions().await;
    assert_eq!(exceptions.len(), 1);
    assert!(
        exceptions[0].starts_with(
            "Permanent: no shared data of type `middleware::Greeting` is registered on this worker (registered: u32)"
        ),
        "{exceptions:?}"
    );
}

#[tokio::test]
async fn question_mark_on_anyhow_keeps_the_whole_chain() {
    let s = Setup::new();
    s.push(UsesAnyhow).await;
    let report = s.run(s.worker()).await;
    assert_eq!(report.failed, 1);
    assert_eq!(
        s.failed_exceptions().await,
        ["Failed: reading the port: invalid digit found in string"]
    );
}

#[tokio::test]
async fn perform_runs_one_handle_with_the_data_and_attempt_a_test_chooses() {
    use routemq::testing::perform;
    let key = unique_key("perform");
    perform(UsesData { key: key.clone() })
        .data(Greeting("hi"))
        .await
        .expect("runs");
    assert_eq!(logged(&key), ["hi"]);
    let missing = perform(UsesData { key: key.clone() })
        .attempt(2)
        .await
        .expect_err("no greeting");
    assert_eq!(missing.kind(), "Permanent");

    // `handle` alone, or with the job's own middleware.
    let gated = || Gated {
        key: key.clone(),
        decision: Decision::Skip,
    };
    let (job, result) = perform(gated()).run().await;
    assert!(result.is_ok());
    assert_eq!(job.decision, Decision::Skip);
    perform(gated()).with_middleware().await.expect("skipped");
    assert_eq!(
        logged(&key)[1..],
        ["handle attempt 1", "job in", "gate attempt 1", "job out"]
    );
}
