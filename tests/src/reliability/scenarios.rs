//! The scenarios: crash, broker faults, load, shutdown, bad input.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use routemq::driver::{NewJob, QueueDriver};
use routemq::{QueueManager, Settings};

use super::processes::WorkerProcess;
use super::{Row, Size, Target};
use crate::process_jobs::{Ledgered, read_ledger};

/// Every scenario on every target.
pub async fn run_all(targets: &[Target], size: Size) -> Vec<Row> {
    let mut rows = Vec::new();
    for target in targets {
        rows.push(crash(target, size).await);
        if target.driver != "sqlite" {
            rows.push(broker_faults(target, size).await);
        }
        // A cluster's clients follow its nodes' own addresses, past a proxy in front of one.
        if target.driver != "sqlite" && target.driver != "redis-cluster" {
            rows.push(super::network::network(target, size).await);
        }
        if target.driver == "sqlite" {
            rows.extend(super::disk_full::sqlite_disk_full().await);
        }
        if target.driver == "postgres" {
            rows.extend(super::disk_full::postgres_disk_full().await);
        }
        if target.driver != "sqlite" {
            rows.extend(super::hosts::hosts(target, size).await);
        }
        rows.push(load(target, size).await);
        rows.push(shutdown(target).await);
        rows.push(bad_input(target).await);
        rows.extend(super::restarts::restarts(target, size).await);
    }
    rows
}

/// One scenario's queue, ledger file and driver.
pub(super) struct Run {
    pub(super) target: Target,
    pub(super) tag: String,
    pub(super) queue: String,
    pub(super) ledger: PathBuf,
    pub(super) driver: Arc<dyn QueueDriver>,
    pub(super) manager: QueueManager,
}

impl Run {
    pub(super) async fn new(target: &Target, scenario: &str) -> Result<Self, String> {
        let tag = format!(
            "rel-{scenario}-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        );
        let driver = Target::open(&target.driver, &target.tagged(&tag)).await?;
        let manager = QueueManager::new(Settings {
            default_connection: "target".into(),
            ..Settings::default()
        });
        manager.register("target", Arc::clone(&driver));
        let ledger = std::env::temp_dir()
            .join("routemq-reliability")
            .join(format!("{tag}.ledger"));
        let _ = std::fs::create_dir_all(ledger.parent().unwrap_or(&ledger));
        let _ = std::fs::remove_file(&ledger);
        Ok(Self {
            target: target.clone(),
            queue: tag.clone(),
            tag,
            ledger,
            driver,
            manager,
        })
    }

    pub(super) fn job(&self, n: u64, sleep_ms: u64, fail: bool) -> Ledgered {
        Ledgered {
            path: self.ledger.to_string_lossy().into_owned(),
            n,
            sleep_ms,
            fail,
            note: String::new(),
        }
    }

    pub(super) fn worker(&self, grace: Duration) -> Result<WorkerProcess, String> {
        WorkerProcess::start(
            &self.target,
            &self.target.tagged(&self.tag),
            &self.queue,
            grace,
        )
    }

    pub(super) async fn bulk(&self, jobs: Vec<Ledgered>) -> Result<u64, String> {
        let mut stored = 0;
        for chunk in jobs.chunks(500) {
            let ids = self
                .manager
                .bulk(chunk.to_vec())
                .on_queue(self.queue.clone())
                .await
                .map_err(|e| e.to_string())?;
            stored += ids.len() as u64;
        }
        Ok(stored)
    }

    /// Waits until nothing is ready, delayed or reserved.
    pub(super) async fn drained(&self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(stats) = self.driver.stats(&self.queue).await
                && stats.ready + stats.reserved + stats.delayed == 0
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let stats = self
                    .driver
                    .stats(&self.queue)
                    .await
                    .map_err(|e| e.to_string())?;
                return Err(format!("queue not drained after {limit:?}: {stats:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The numbers of the jobs in the failed store.
    pub(super) async fn failed_numbers(&self) -> Result<BTreeSet<u64>, String> {
        let failed = self
            .driver
            .failed_list(Some(&self.queue))
            .await
            .map_err(|e| e.to_string())?;
        Ok(failed
            .iter()
            .filter_map(|job| {
                let envelope = routemq::Envelope::decode(&job.payload).ok()?;
                let data: serde_json::Value = serde_json::from_str(envelope.data()).ok()?;
                data["n"].as_u64()
            })
            .collect())
    }

    /// Compares what ran (the ledger) and what failed with what was dispatched.
    pub(super) async fn account(
        &self,
        row: &mut Row,
        expected: &BTreeSet<u64>,
        meant_to_fail: &BTreeSet<u64>,
        killed: &BTreeSet<u32>,
    ) {
        let mut runs: BTreeMap<u64, (Vec<u32>, Vec<u32>)> = BTreeMap::new();
        for line in read_ledger(&self.ledger) {
            let entry = runs.entry(line.n).or_default();
            if line.event == "start" {
                entry.0.push(line.pid)
            } else {
                entry.1.push(line.pid)
            }
        }
        let failed = match self.failed_numbers().await {
            Ok(failed) => failed,
            Err(error) => {
                row.problems.push(error);
                BTreeSet::new()
            }
        };
        row.failed = failed.len() as u64;
        for n in expected {
            let (starts, dones) = runs.get(n).cloned().unwrap_or_default();
            if meant_to_fail.contains(n) {
                continue;
            }
            if dones.is_empty() {
                row.lost += 1;
                continue;
            }
            row.completed += 1;
            if dones.len() > 1 {
                row.duplicated += 1;
                if starts.iter().chain(&dones).any(|pid| killed.contains(pid)) {
                    row.explained += 1;
                }
            }
        }
        if row.lost > 0 {
            row.problems.push(format!("{} jobs lost", row.lost));
        }
        if &failed != meant_to_fail {
            row.problems.push(format!(
                "failed store holds {failed:?}, expected {meant_to_fail:?}"
            ));
        }
    }
}

/// A spawned task that is aborted if it is dropped before it is joined, so that an early return
/// leaves nothing running.
pub(super) struct Owned<T>(Option<tokio::task::JoinHandle<T>>);

impl<T: Send + 'static> Owned<T> {
    /// Spawns `future`.
    pub(super) fn spawn(future: impl std::future::Future<Output = T> + Send + 'static) -> Self {
        Self(Some(tokio::spawn(future)))
    }

    /// Whether the task has finished.
    pub(super) fn is_finished(&self) -> bool {
        self.0
            .as_ref()
            .is_none_or(tokio::task::JoinHandle::is_finished)
    }

    /// Waits for the task's result.
    pub(super) async fn join(mut self) -> Result<T, String> {
        match self.0.take() {
            Some(handle) => handle.await.map_err(|e| e.to_string()),
            None => Err("the task was joined already".to_owned()),
        }
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}

pub(super) async fn stop_all(workers: &mut [WorkerProcess]) {
    for worker in workers.iter() {
        worker.signal("TERM");
    }
    for worker in workers.iter_mut() {
        worker.wait(Duration::from_secs(15));
    }
}

fn numbered(count: u64) -> BTreeSet<u64> {
    (0..count).collect()
}

/// Crash: three workers, one `kill -9`ed and replaced every 250 ms.
async fn crash(target: &Target, size: Size) -> Row {
    let mut row = Row::new(target.driver.clone(), "crash");
    let result = crash_run(target, size, &mut row).await;
    row.record(result);
    row
}

async fn crash_run(target: &Target, size: Size, row: &mut Row) -> Result<(), String> {
    let run = Run::new(target, "crash").await?;
    let meant_to_fail: BTreeSet<u64> = (0..size.jobs).filter(|n| n % 200 == 199).collect();
    // 20-29 ms each: with 3 workers of 8 slots the run lasts long enough for every kill to land
    // among running jobs.
    let jobs = (0..size.jobs)
        .map(|n| run.job(n, 20 + n % 10, meant_to_fail.contains(&n)))
        .collect();
    row.dispatched = run.bulk(jobs).await?;
    let mut workers = (0..3)
        .map(|_| run.worker(Duration::from_secs(1)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut killed = BTreeSet::new();
    for _ in 0..size.kills {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let victim = fastrand::usize(..workers.len());
        killed.insert(workers[victim].pid());
        workers[victim].signal("KILL");
        workers[victim].wait(Duration::from_secs(5));
        workers[victim] = run.worker(Duration::from_secs(1))?;
        row.faults += 1;
    }
    let last_fault = Instant::now();
    let drained = run.drained(Duration::from_secs(180)).await;
    row.recovery_secs = last_fault.elapsed().as_secs_f64();
    stop_all(&mut workers).await;
    drained?;
    run.account(row, &numbered(size.jobs), &meant_to_fail, &killed)
        .await;
    row.unexplained("duplicates not explained by a kill");
    Ok(())
}

/// Broker faults: the server drops the workers' and the producer's connections while jobs flow.
async fn broker_faults(target: &Target, size: Size) -> Row {
    let mut row = Row::new(target.driver.clone(), "faults");
    let result = faults_run(target, size, &mut row).await;
    row.record(result);
    row
}

async fn faults_run(target: &Target, size: Size, row: &mut Row) -> Result<(), String> {
    let run = Run::new(target, "faults").await?;
    let mut workers = (0..2)
        .map(|_| run.worker(Duration::from_secs(1)))
        .collect::<Result<Vec<_>, _>>()?;
    let total = size.jobs / 2;
    let injector = {
        let (target, tag, faults) = (target.clone(), run.tag.clone(), size.faults);
        tokio::spawn(async move {
            let mut injected = 0;
            for _ in 0..faults {
                tokio::time::sleep(Duration::from_millis(200)).await;
                injected += super::faults::drop_connections(&target, &tag)
                    .await
                    .unwrap_or(0)
                    .min(1);
            }
            injected
        })
    };
    let mut dispatched = BTreeSet::new();
    for n in 0..total {
        if n % 50 == 0 {
            // Spread production over the fault window.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A producer retries a failed dispatch; only a successful return counts as dispatched.
        for attempt in 0..50 {
            match run
                .manager
                .push(run.job(n, 5, false))
                .on_queue(run.queue.clone())
                .await
            {
                Ok(_) => {
                    dispatched.insert(n);
                    break;
                }
                Err(_) if attempt < 49 => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(error) => return Err(format!("dispatch kept failing: {error}")),
            }
        }
    }
    row.dispatched = dispatched.len() as u64;
    row.faults = injector.await.map_err(|e| e.to_string())?;
    let last_fault = Instant::now();
    let drained = run.drained(Duration::from_secs(180)).await;
    row.recovery_secs = last_fault.elapsed().as_secs_f64();
    stop_all(&mut workers).await;
    drained?;
    run.account(row, &dispatched, &BTreeSet::new(), &BTreeSet::new())
        .await;
    // A dropped connection can lose an acknowledgement: such a job runs again (at least once).
    row.explained = row.duplicated;
    if row.faults == 0 {
        row.problems.push("no connection was dropped".to_owned());
    }
    Ok(())
}

/// Load: two producer processes and two worker processes at once.
async fn load(target: &Target, size: Size) -> Row {
    let mut row = Row::new(target.driver.clone(), "load");
    let result = load_run(target, size, &mut row).await;
    row.record(result);
    row
}

async fn load_run(target: &Target, size: Size, row: &mut Row) -> Result<(), String> {
    let run = Run::new(target, "load").await?;
    let mut workers = (0..2)
        .map(|_| run.worker(Duration::from_secs(1)))
        .collect::<Result<Vec<_>, _>>()?;
    let half = size.jobs / 2;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let ledger = run.ledger.to_string_lossy().into_owned();
    let location = target.tagged(&run.tag);
    let producers: Vec<_> = (0..2u64)
        .map(|i| {
            std::process::Command::new(&exe)
                .args([
                    "__producer",
                    &target.driver,
                    &location,
                    &run.queue,
                    &ledger,
                    &(i * half).to_string(),
                    &half.to_string(),
                ])
                .output()
        })
        .collect();
    for output in producers {
        let output = output.map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(format!(
                "producer failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        row.dispatched += String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse::<u64>()
            .unwrap_or(0);
    }
    let drained = run.drained(Duration::from_secs(180)).await;
    stop_all(&mut workers).await;
    drained?;
    let meant_to_fail: BTreeSet<u64> = (0..size.jobs).filter(|n| n % 100 == 42).collect();
    run.account(row, &numbered(size.jobs), &meant_to_fail, &BTreeSet::new())
        .await;
    if row.completed + row.failed != row.dispatched {
        row.problems.push(format!(
            "completed {} + failed {} != dispatched {}",
            row.completed, row.failed, row.dispatched
        ));
    }
    Ok(())
}

/// The body of `reliability __producer DRIVER LOCATION QUEUE LEDGER START COUNT`: dispatches one at
/// a time (every 100th job, counting from 42, meant to fail) and prints how many succeeded.
pub async fn producer_main(args: &[String]) -> Result<u64, String> {
    let [driver, location, queue, ledger, start, count] = args else {
        return Err("bad producer arguments".into());
    };
    let (start, count): (u64, u64) = (
        start.parse().map_err(|_| "start")?,
        count.parse().map_err(|_| "count")?,
    );
    let opened = Target::open(driver, location).await?;
    let manager = QueueManager::new(Settings::default());
    manager.register("target", opened);
    let mut stored = 0;
    for n in start..start + count {
        let job = Ledgered {
            path: ledger.clone(),
            n,
            sleep_ms: 0,
            fail: n % 100 == 42,
            note: String::new(),
        };
        manager
            .push(job)
            .on_connection("target")
            .on_queue(queue.clone())
            .await
            .map_err(|e| e.to_string())?;
        stored += 1;
    }
    Ok(stored)
}

/// Shutdown: SIGTERM drains running jobs; one that outlives the grace period runs again elsewhere.
async fn shutdown(target: &Target) -> Row {
    let mut row = Row::new(target.driver.clone(), "shutdown");
    let result = shutdown_run(target, &mut row).await;
    row.record(result);
    row
}

async fn shutdown_run(target: &Target, row: &mut Row) -> Result<(), String> {
    let run = Run::new(target, "shutdown").await?;
    const LONG: u64 = 100;
    let mut jobs: Vec<Ledgered> = (0..7).map(|n| run.job(n, 400, false)).collect();
    jobs.push(run.job(LONG, 4_000, false));
    row.dispatched = run.bulk(jobs).await?;
    let mut first = run.worker(Duration::from_secs(1))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while read_ledger(&run.ledger)
        .iter()
        .filter(|l| l.event == "start")
        .count()
        < 8
    {
        if Instant::now() > deadline {
            return Err("the jobs did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.signal("TERM");
    let stopped = Instant::now();
    match first.wait(Duration::from_secs(10)) {
        Some(true) => {}
        other => {
            return Err(format!(
                "the worker did not exit cleanly after SIGTERM ({other:?})"
            ));
        }
    }
    row.faults = 1;
    let short_done = read_ledger(&run.ledger)
        .iter()
        .filter(|l| l.event == "done" && l.pid == first.pid())
        .count();
    if short_done != 7 {
        row.problems.push(format!(
            "{short_done} of 7 running jobs finished during the drain"
        ));
    }
    let mut second = run.worker(Duration::from_secs(30))?;
    let drained = run.drained(Duration::from_secs(30)).await;
    row.recovery_secs = stopped.elapsed().as_secs_f64();
    second.signal("TERM");
    second.wait(Duration::from_secs(10));
    drained?;
    let long_done: Vec<u32> = read_ledger(&run.ledger)
        .iter()
        .filter(|l| l.event == "done" && l.n == LONG)
        .map(|l| l.pid)
        .collect();
    if long_done != [second.pid()] {
        row.problems.push(format!("the job past the grace period finished in {long_done:?}, expected the second worker only"));
    }
    let mut expected: BTreeSet<u64> = (0..7).collect();
    expected.insert(LONG);
    run.account(row, &expected, &BTreeSet::new(), &BTreeSet::new())
        .await;
    Ok(())
}

/// The job numbers of the jobs at the documented limits.
const LARGEST: u64 = 997;
const DEEPEST: u64 = 996;

/// The nesting depth a job's data is documented to take.
const DEPTH: usize = 100;

/// Dispatches a job whose envelope is just under `MAX_PAYLOAD_BYTES` and one whose data nests
/// [`DEPTH`] levels deep: both must be stored, and run. Returns how many were dispatched.
async fn at_the_limits(run: &Run, row: &mut Row) -> u64 {
    let mut dispatched = 0;
    let largest = Ledgered {
        note: "y".repeat(routemq::envelope::MAX_PAYLOAD_BYTES - 4_096),
        ..run.job(LARGEST, 0, false)
    };
    match run.manager.push(largest).on_queue(run.queue.clone()).await {
        Ok(_) => dispatched += 1,
        Err(error) => row.problems.push(format!(
            "a payload just under the limit was refused: {error}"
        )),
    }
    let mut nested = serde_json::json!(1);
    for _ in 1..DEPTH {
        nested = serde_json::json!([nested]);
    }
    let data = serde_json::json!({
        "path": run.ledger.to_string_lossy(), "n": DEEPEST, "sleep_ms": 0, "fail": false,
        "note": "", "extra": nested,
    });
    let payload = routemq::Envelope::encode_with(
        &data,
        "reliability.Ledgered",
        &routemq::JobOptions::DEFAULT,
        &run.queue,
        &routemq::envelope::Observability::default(),
    );
    let pushed = match payload {
        Ok(payload) => run
            .driver
            .push(&[NewJob::new(run.queue.clone(), payload, Duration::ZERO)])
            .await
            .map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    match pushed {
        Ok(_) => dispatched += 1,
        Err(error) => row
            .problems
            .push(format!("data {DEPTH} levels deep was refused: {error}")),
    }
    dispatched
}

/// Bad input: malformed envelopes, unknown tags, wrong types, deep nesting, huge payloads, hostile
/// queue names and SQL/glob text; the worker keeps going and nothing else is affected.
async fn bad_input(target: &Target) -> Row {
    let mut row = Row::new(target.driver.clone(), "bad-input");
    let result = bad_input_run(target, &mut row).await;
    row.record(result);
    row
}

async fn bad_input_run(target: &Target, row: &mut Row) -> Result<(), String> {
    let run = Run::new(target, "bad").await?;
    let deep = format!(
        r#"{{"class": "reliability.Ledgered", "data": {{"path": {}1{}}}}}"#,
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let bad = [
        ("InvalidPayload", "this is not json".to_owned()),
        (
            "InvalidPayload",
            r#"{"class": "reliability.Ledgered", "data": {"n": 1"#.to_owned(),
        ),
        (
            "UnknownJob",
            r#"{"class": "nobody.Knows", "data": {}}"#.to_owned(),
        ),
        (
            "PayloadMismatch",
            r#"{"class": "reliability.Ledgered", "data": {"path": 5, "n": "x"}}"#.to_owned(),
        ),
        ("PayloadMismatch", deep),
        ("InvalidPayload", r#"{"class": 42, "data": {}}"#.to_owned()),
    ];
    let pushed: Vec<NewJob> = bad
        .iter()
        .map(|(_, payload)| NewJob::new(run.queue.clone(), payload.clone(), Duration::ZERO))
        .collect();
    run.driver.push(&pushed).await.map_err(|e| e.to_string())?;
    let mut expected_failures = bad.len() as u64;
    if target.driver.starts_with("redis") {
        super::faults::push_invalid_utf8(target, &run.queue).await?;
        expected_failures += 1;
    }
    row.faults = expected_failures;

    // Refused at dispatch: oversized payloads and hostile queue names.
    let huge = Ledgered {
        note: "x".repeat(routemq::envelope::MAX_PAYLOAD_BYTES),
        ..run.job(999, 0, false)
    };
    row.faults += 1;
    if run
        .manager
        .push(huge)
        .on_queue(run.queue.clone())
        .await
        .is_ok()
    {
        row.problems
            .push("an oversized payload was accepted".into());
    }
    for name in [
        "a b",
        "q'1",
        "{q}",
        "50%",
        "q*",
        "x; DROP TABLE queue_jobs",
        "q:delayed",
    ] {
        row.faults += 1;
        if run
            .manager
            .push(run.job(998, 0, false))
            .on_queue(name)
            .await
            .is_ok()
        {
            row.problems
                .push(format!("queue name {name:?} was accepted"));
        }
    }
    // Hostile text inside a payload is data, not SQL or key syntax.
    let notes = [
        "'); DROP TABLE queue_jobs; --",
        "routemq:queue:* {x} [a-z]? %",
        "ünïcødé \"quoted\" \\ \n",
    ];
    let good: Vec<Ledgered> = (0..20)
        .map(|n| Ledgered {
            note: notes[n as usize % notes.len()].to_owned(),
            ..run.job(n, 0, false)
        })
        .collect();
    row.dispatched = run.bulk(good).await? + expected_failures;
    row.dispatched += at_the_limits(&run, row).await;

    let mut worker = run.worker(Duration::from_secs(1))?;
    let drained = run.drained(Duration::from_secs(30)).await;
    let alive = worker.running();
    worker.signal("TERM");
    worker.wait(Duration::from_secs(10));
    drained?;
    if !alive {
        row.problems.push("the worker stopped".into());
    }
    let good: BTreeSet<u64> = (0..20).chain([LARGEST, DEEPEST]).collect();
    run.account(row, &good, &BTreeSet::new(), &BTreeSet::new())
        .await;
    row.problems
        .retain(|p| !p.starts_with("failed store holds"));
    let failed = run
        .driver
        .failed_list(Some(&run.queue))
        .await
        .map_err(|e| e.to_string())?;
    row.failed = failed.len() as u64;
    if row.failed != expected_failures {
        row.problems.push(format!(
            "{} bad payloads in the failed store, expected {expected_failures}",
            row.failed
        ));
    }
    for (kind, payload) in &bad {
        let stored = failed.iter().find(|f| &f.payload == payload);
        match stored {
            Some(f) if f.exception.starts_with(kind) => {}
            Some(f) => row.problems.push(format!(
                "{kind} recorded as {:?}",
                f.exception.lines().next()
            )),
            None => row.problems.push(format!(
                "a {kind} payload was not kept unchanged in the failed store"
            )),
        }
    }
    Ok(())
}
