//! End-to-end: the real worker binary (`test-worker`, built like a user's) as processes, on a
//! SQLite file shared with this test: runs, signals, `kill -9`, and the admin commands' JSON.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use routemq::driver::QueueDriver;
use routemq::driver::sqlite::SqliteDriver;
use routemq::{QueueManager, Settings};
use routemq_tests::hostile::Blocking;
use routemq_tests::jobs::AlwaysFail;
use routemq_tests::process::run_bounded;
use routemq_tests::process_jobs::{FileRecord, KillsItsWorker, Line, read_ledger};
use routemq_tests::sqlite_files::fresh_path;
use serde_json::Value;

/// A two-second visibility timeout and a reaper every half second: a dead worker's lease comes
/// back quickly.
const QUICK_REAPER: &[(&str, &str)] = &[
    ("QUEUE_VISIBILITY_TIMEOUT", "2"),
    ("QUEUE_REAPER_INTERVAL", "0.5"),
];

/// One test's database file, ledger file and queue.
struct Setup {
    db: PathBuf,
    ledger: PathBuf,
    queue: String,
    manager: QueueManager,
    driver: Arc<dyn QueueDriver>,
}

impl Setup {
    async fn new(name: &str) -> Self {
        let db = fresh_path(name);
        let ledger = db.with_extension("ledger");
        let _ = std::fs::remove_file(&ledger);
        let driver: Arc<dyn QueueDriver> = Arc::new(
            SqliteDriver::open(db.to_str().expect("utf-8"))
                .await
                .expect("open"),
        );
        let manager = QueueManager::new(Settings::default());
        manager.register("sqlite", Arc::clone(&driver));
        Self {
            db,
            ledger,
            queue: format!("e2e-{name}"),
            manager,
            driver,
        }
    }

    async fn dispatch(&self, count: u64, first_attempt_sleep_ms: u64) {
        let path = self.ledger.to_str().expect("utf-8").to_owned();
        let jobs = (0..count).map(|n| FileRecord {
            path: path.clone(),
            n,
            first_attempt_sleep_ms,
        });
        self.manager
            .bulk(jobs)
            .on_queue(self.queue.clone())
            .await
            .expect("dispatch");
    }

    /// Dispatches `count` jobs that fail for good to this test's queue.
    async fn fail_jobs(&self, count: usize) {
        for _ in 0..count {
            self.manager
                .push(AlwaysFail {
                    key: "e2e".to_owned(),
                    permanent: true,
                })
                .on_queue(self.queue.clone())
                .await
                .expect("push");
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_test-worker"));
        command
            .args(args)
            .current_dir(self.db.parent().expect("temp dir"))
            .env("QUEUE_CONNECTION", "sqlite")
            .env("QUEUE_SQLITE_PATH", &self.db)
            .env("RUST_LOG", "warn")
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null());
        command
    }

    /// Runs a command to completion (bounded by 60 s; killed after that).
    fn run(&self, args: &[&str]) -> Output {
        run_bounded(self.command(args), Duration::from_secs(60))
    }

    fn work(&self, extra: &[&str]) -> Guard {
        self.work_with(extra, &[])
    }

    /// `queue-work` on this test's queue with `extra` flags and `env` settings, output discarded.
    fn work_with(&self, extra: &[&str], env: &[(&str, &str)]) -> Guard {
        let mut args = vec![
            "queue-work",
            "--queue",
            self.queue.as_str(),
            "--sleep",
            "0.1",
        ];
        args.extend_from_slice(extra);
        let mut command = self.command(&args);
        command.envs(env.iter().copied());
        Guard(
            command
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn worker"),
        )
    }

    fn ledger(&self) -> Vec<Line> {
        read_ledger(&self.ledger)
    }

    fn json(&self, args: &[&str]) -> Value {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e})"))
    }
}

/// A child process that is killed if the test ends early.
struct Guard(Child);

impl Guard {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit; panics after `limit`.
    fn wait_for_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process {} did not exit within {limit:?}",
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn done_counts(lines: &[Line]) -> HashMap<u64, usize> {
    let mut counts = HashMap::new();
    for line in lines.iter().filter(|l| l.event == "done") {
        *counts.entry(line.n).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn stop_when_empty_runs_every_job_once() {
    let setup = Setup::new("once").await;
    setup.dispatch(40, 0).await;
    let status = setup
        .work(&["--stop-when-empty", "--concurrency", "4"])
        .wait_for_exit(Duration::from_secs(60));
    assert!(status.success(), "{status}");
    let counts = done_counts(&setup.ledger());
    assert_eq!(counts.len(), 40);
    assert!(counts.values().all(|c| *c == 1));
    assert_eq!(
        setup.json(&["queue-size", "--queue", &setup.queue])[&setup.queue],
        0
    );
}

#[tokio::test]
async fn two_worker_processes_share_one_file_without_double_delivery() {
    let setup = Setup::new("two-processes").await;
    setup.dispatch(300, 0).await;
    let mut first = setup.work(&["--stop-when-empty", "--concurrency", "8"]);
    let mut second = setup.work(&["--stop-when-empty", "--concurrency", "8"]);
    assert!(first.wait_for_exit(Duration::from_secs(60)).success());
    assert!(second.wait_for_exit(Duration::from_secs(60)).success());
    let lines = setup.ledger();
    let counts = done_counts(&lines);
    let stats = setup.driver.stats(&setup.queue).await.expect("stats");
    let starts = lines.iter().filter(|l| l.event == "start").count();
    assert_eq!(
        counts.len(),
        300,
        "every job ran; {stats:?}; {starts} starts; failed: {:?}",
        setup
            .driver
            .failed_list(None)
            .await
            .ok()
            .map(|f| f.into_iter().map(|j| j.exception).collect::<Vec<_>>())
    );
    assert!(counts.values().all(|c| *c == 1), "no job ran twice");
    let pids: std::collections::HashSet<u32> = lines.iter().map(|l| l.pid).collect();
    assert_eq!(pids.len(), 2, "both processes worked");
}

#[tokio::test]
async fn sigterm_lets_a_running_job_finish() {
    let setup = Setup::new("sigterm-drain").await;
    setup.dispatch(1, 1_500).await;
    let mut worker = setup.work(&[]);
    wait_until(Duration::from_secs(20), || {
        setup.ledger().iter().any(|l| l.event == "start")
    });
    worker.signal("TERM");
    let status = worker.wait_for_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}");
    let lines = setup.ledger();
    assert!(
        lines.iter().any(|l| l.event == "done" && l.attempt == 1),
        "the job finished: {lines:?}"
    );
    assert_eq!(setup.driver.size(&setup.queue).await.expect("size"), 0);
}

#[tokio::test]
async fn grace_expiry_releases_the_job_without_using_an_attempt() {
    let setup = Setup::new("grace").await;
    setup.dispatch(1, 60_000).await;
    let mut worker = setup.work_with(&[], &[("QUEUE_SHUTDOWN_GRACE", "0.5")]);
    wait_until(Duration::from_secs(20), || !setup.ledger().is_empty());
    worker.signal("TERM");
    assert!(worker.wait_for_exit(Duration::from_secs(20)).success());
    assert!(
        setup.ledger().iter().all(|l| l.event == "start"),
        "the job did not finish"
    );
    let again = setup
        .driver
        .reserve(std::slice::from_ref(&setup.queue), 1)
        .await
        .expect("reserve");
    assert_eq!(again.len(), 1, "released back to its queue");
    assert_eq!(
        again[0].lease.attempts, 1,
        "the interrupted run was not counted"
    );
}

#[tokio::test]
async fn a_second_signal_stops_at_once() {
    let setup = Setup::new("second-signal").await;
    setup.dispatch(1, 60_000).await;
    let mut worker = setup.work(&[]);
    wait_until(Duration::from_secs(20), || !setup.ledger().is_empty());
    worker.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    worker.signal("INT");
    let started = Instant::now();
    assert!(worker.wait_for_exit(Duration::from_secs(10)).success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not wait for the 300 s grace period"
    );
    assert_eq!(
        setup.driver.size(&setup.queue).await.expect("size"),
        1,
        "the job is back in its queue"
    );
}

/// A handler that blocks its thread for 30 s cannot hold the process: SIGTERM, the 1 s grace, and
/// the worker releases the job and exits without waiting for the blocked thread.
#[tokio::test]
async fn a_blocked_handler_cannot_keep_the_process_alive() {
    let setup = Setup::new("blocked").await;
    setup
        .manager
        .push(Blocking {
            key: "cli-blocked".to_owned(),
            block_ms: 30_000,
        })
        .on_queue(setup.queue.clone())
        .await
        .expect("dispatch");
    let mut worker = setup.work_with(&[], &[("QUEUE_SHUTDOWN_GRACE", "1")]);
    let started = Instant::now();
    loop {
        let stats = setup.driver.stats(&setup.queue).await.expect("stats");
        if stats.reserved == 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.signal("TERM");
    let signalled = Instant::now();
    assert!(worker.wait_for_exit(Duration::from_secs(20)).success());
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "exited without waiting for the blocked thread: {:?}",
        signalled.elapsed()
    );
    let stats = setup.driver.stats(&setup.queue).await.expect("stats");
    assert_eq!(
        (stats.ready, stats.reserved),
        (1, 0),
        "the job is back in its queue"
    );
}

#[tokio::test]
async fn after_kill_9_another_worker_runs_the_job_once_the_lease_expires() {
    let setup = Setup::new("kill9").await;
    setup.dispatch(1, 60_000).await;
    let mut crashed = setup.work(&[]);
    wait_until(Duration::from_secs(20), || !setup.ledger().is_empty());
    crashed.signal("KILL");
    crashed.wait_for_exit(Duration::from_secs(10));

    let started = Instant::now();
    let mut rescuer = setup.work_with(&["--max-jobs", "1"], QUICK_REAPER);
    assert!(rescuer.wait_for_exit(Duration::from_secs(30)).success());
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "not before the lease could expire"
    );
    let lines = setup.ledger();
    let done: Vec<&Line> = lines.iter().filter(|l| l.event == "done").collect();
    assert_eq!(done.len(), 1, "{lines:?}");
    assert_eq!(done[0].attempt, 2, "the killed run counted as attempt 1");
    assert_eq!(done[0].pid, rescuer.pid());
    assert_ne!(lines[0].pid, rescuer.pid());
}

/// A worker killed with jobs in its prefetch buffer used up no attempt of those jobs: with one
/// try each, they still run once (as attempt 1); only the job that was running fails.
#[tokio::test]
async fn after_kill_9_prefetched_jobs_still_have_their_tries() {
    let setup = Setup::new("kill9-prefetch").await;
    setup.dispatch(1, 60_000).await; // job 0, the one that will be running
    let path = setup.ledger.to_str().expect("utf-8").to_owned();
    let waiting = (1..5).map(|n| FileRecord {
        path: path.clone(),
        n,
        first_attempt_sleep_ms: 0,
    });
    setup
        .manager
        .bulk(waiting)
        .on_queue(setup.queue.clone())
        .await
        .expect("dispatch");
    // One slot and a buffer of four: job 0 runs, jobs 1-4 wait prefetched.
    let mut crashed = setup.work(&["--concurrency", "1", "--prefetch", "4"]);
    wait_until(Duration::from_secs(20), || !setup.ledger().is_empty());
    let stats = setup.driver.stats(&setup.queue).await.expect("stats");
    assert_eq!((stats.ready, stats.reserved), (0, 5), "all five are leased");
    crashed.signal("KILL");
    crashed.wait_for_exit(Duration::from_secs(10));

    let mut rescuer = setup.work_with(&["--max-tries", "1", "--stop-when-empty"], QUICK_REAPER);
    assert!(rescuer.wait_for_exit(Duration::from_secs(30)).success());
    let lines = setup.ledger();
    let mut done: Vec<(u64, u32)> = lines
        .iter()
        .filter(|l| l.event == "done")
        .map(|l| (l.n, l.attempt))
        .collect();
    done.sort_unstable();
    assert_eq!(done, [(1, 1), (2, 1), (3, 1), (4, 1)], "{lines:?}");
    let failed = setup.json(&["queue-failed", "--queue", &setup.queue]);
    let failed = failed.as_array().expect("a JSON array");
    assert_eq!(failed.len(), 1, "only the job that was running: {failed:?}");
    assert!(
        failed[0]["exception"]
            .as_str()
            .is_some_and(|e| e.starts_with("ReservationExpired")),
        "{failed:?}"
    );
}

/// A job that kills its worker always ends in the failed store, even when each worker had it
/// prefetched behind other work and died before its start was written: such a job is started
/// (and its attempt stored) before it runs next time. With `max_tries = 2`, at most 2 × 2 workers
/// die before the reaper fails it.
#[tokio::test]
async fn a_job_that_kills_its_worker_still_uses_up_its_tries() {
    let setup = Setup::new("poison").await;
    let path = setup.ledger.to_str().expect("utf-8").to_owned();
    setup
        .manager
        .push(KillsItsWorker { path: path.clone() })
        .on_queue(setup.queue.clone())
        .await
        .expect("dispatch");
    let fill = format!("{}-fill", setup.queue);
    let queues = format!("{fill},{}", setup.queue);
    let mut workers = 0;
    loop {
        assert!(workers < 6, "still not failed after {workers} dead workers");
        // A job of a higher-priority queue takes the one slot, so the pill is prefetched.
        setup
            .manager
            .push(FileRecord {
                path: path.clone(),
                n: workers,
                first_attempt_sleep_ms: 200,
            })
            .on_queue(fill.clone())
            .await
            .expect("dispatch");
        let mut worker = Guard(
            setup
                .command(&[
                    "queue-work",
                    "--queue",
                    &queues,
                    "--sleep",
                    "0.1",
                    "--concurrency",
                    "1",
                    "--stop-when-empty",
                ])
                .env("QUEUE_VISIBILITY_TIMEOUT", "1")
                .env("QUEUE_HEARTBEAT_INTERVAL", "0.3")
                .env("QUEUE_REAPER_INTERVAL", "0.2")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn"),
        );
        let status = worker.wait_for_exit(Duration::from_secs(30));
        if status.success() {
            break;
        }
        workers += 1;
    }
    let failed = setup.json(&["queue-failed", "--queue", &setup.queue]);
    let failed = failed.as_array().expect("a JSON array");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]["exception"]
            .as_str()
            .is_some_and(|e| e.starts_with("ReservationExpired")),
        "{failed:?}"
    );
    let starts = setup
        .ledger()
        .into_iter()
        .filter(|l| l.event == "pill")
        .count();
    assert_eq!(
        u64::try_from(starts).ok(),
        Some(workers),
        "each dead worker ran the pill once"
    );
    assert!(
        (2..=4).contains(&workers),
        "{workers} workers died; the pill ran {starts} times"
    );
}

#[tokio::test]
async fn admin_commands_list_show_retry_forget_and_flush_failed_jobs() {
    let setup = Setup::new("admin").await;
    let q = setup.queue.clone();
    setup.fail_jobs(3).await;
    assert!(
        setup
            .work(&["--stop-when-empty"])
            .wait_for_exit(Duration::from_secs(60))
            .success()
    );

    let failed = setup.json(&["queue-failed", "--queue", &q]);
    let failed = failed.as_array().expect("a JSON list");
    assert_eq!(failed.len(), 3);
    let first = &failed[0];
    for key in [
        "id",
        "connection",
        "queue",
        "payload",
        "exception",
        "failed_at",
    ] {
        assert!(first.get(key).is_some(), "failed job has `{key}`: {first}");
    }
    assert_eq!(first["queue"], q.as_str());
    assert_eq!(first["connection"], "sqlite");
    assert!(
        first["exception"]
            .as_str()
            .expect("text")
            .starts_with("Permanent: the address does not exist")
    );
    assert!(
        first["failed_at"]
            .as_str()
            .expect("text")
            .ends_with("+00:00")
    );
    let id = first["id"].as_str().expect("id").to_owned();

    assert_eq!(&setup.json(&["queue-failed-show", &id]), first);
    let retried = setup.json(&["queue-retry", &id]);
    assert_eq!(retried["retried"], 1);
    assert_eq!(setup.json(&["queue-size", "--queue", &q])[&q], 1);
    let missing = setup.run(&["queue-failed-show", &id]);
    assert_eq!(missing.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&missing.stdout).trim(), "null");

    let second = failed[1]["id"].as_str().expect("id").to_owned();
    assert_eq!(setup.json(&["queue-forget", &second])["forgotten"], true);
    let again = setup.run(&["queue-forget", &second]);
    assert_eq!(again.status.code(), Some(3));

    let table = setup.run(&["queue-failed", "--queue", &q, "--format", "table"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("id"), "{table}");
    assert!(table.contains("conformance.AlwaysFail"), "{table}");

    assert_eq!(setup.json(&["queue-flush", "--queue", &q])["flushed"], 1);
    assert_eq!(
        setup.json(&["queue-failed", "--queue", &q]),
        serde_json::json!([])
    );
    let stats = setup.json(&["queue-stats", "--queue", &q]);
    assert_eq!(stats[0]["ready"], 1, "the retried job waits: {stats}");
    assert!(
        setup
            .json(&["list-jobs"])
            .as_array()
            .expect("list")
            .iter()
            .any(|j| j["name"] == "e2e.FileRecord")
    );
}

#[tokio::test]
async fn bad_arguments_and_unknown_connections_fail_clearly() {
    let setup = Setup::new("errors").await;
    let usage = setup.run(&["queue-retry"]);
    assert_eq!(usage.status.code(), Some(2));
    let unknown = setup.run(&["queue-failed", "--connection", "nowhere"]);
    assert_eq!(unknown.status.code(), Some(1));
    let message = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        message.contains("unknown queue connection `nowhere`; known connections:"),
        "{message}"
    );
    for args in [
        &["queue-size", "--queue", "a b"][..],
        &["queue-failed", "--queue", "ok,no way"],
        &["queue-flush", "--queue", "failed"],
        &["queue-retry", "--all", "--queue", "x;y"],
        &["queue-prune-failed", "--hours", "1", "--queue", "a b"],
        &["queue-work", "--concurrency", "0"],
        &["queue-work", "--queue", "a b"],
        &["queue-work", "--metrics-addr", "no-such-host.invalid:9090"],
        &["queue-work", "--limit", "elsewhere=2"],
        &["queue-work", "--limit", "default=0"],
        &["queue-work", "--limit", "default"],
        &["queue-work", "--rate", "default=5"],
        &["queue-work", "--rate", "default=x/1s"],
        &["queue-work", "--rate", "default=0/1s"],
        &["queue-pause", "a b"],
        &["queue-work", "--queue", "high:0,low:1"],
        &["queue-work", "--queue", "high:x"],
        &["queue-pause"],
    ] {
        let invalid = setup.run(args);
        assert_eq!(invalid.status.code(), Some(2), "{args:?}: {invalid:?}");
    }
    let listed = setup.run(&["list-jobs", "--connection", "sqlite"]);
    assert_eq!(listed.status.code(), Some(0), "{listed:?}");
    // Invalid environment values are errors naming the variable and the value.
    for (variable, value) in [
        ("LOG_FORMAT", "xml"),
        ("RUST_LOG", "info,routemq=loud"),
        ("QUEUE_VISIBILITY_TIMEOUT", "soon"),
    ] {
        let output = setup
            .command(&["queue-failed", "--connection", "sqlite"])
            .env(variable, value)
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{variable}: {stderr}");
        assert!(
            stderr.contains(variable) && stderr.contains(value),
            "{variable}: {stderr}"
        );
    }
    // Human logs written to a pipe carry no colour codes.
    let output = setup
        .command(&["queue-work", "--queue", &setup.queue, "--stop-when-empty"])
        .env("RUST_LOG", "info")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("queue worker started"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI codes in a file: {stderr:?}"
    );
    let output = setup
        .command(&["queue-migrate", "--connection", "redis"])
        .env("REDIS_URL", "http://cache:6379")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.code() == Some(1) && stderr.contains("REDIS_URL"),
        "{stderr}"
    );
    let help = setup.run(&["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    for command in [
        "queue-work",
        "queue-failed",
        "queue-failed-show",
        "queue-retry",
        "queue-forget",
        "queue-flush",
        "queue-prune-failed",
        "queue-size",
        "queue-stats",
        "queue-migrate",
        "list-jobs",
    ] {
        assert!(help.contains(command), "--help lists {command}");
    }
    let work_help = setup.run(&["queue-work", "--help"]);
    let work_help = String::from_utf8_lossy(&work_help.stdout);
    for flag in [
        "--queue",
        "--connection",
        "--concurrency",
        "--sleep",
        "--max-jobs",
        "--max-time",
        "--max-tries",
        "--timeout",
        "--stop-when-empty",
    ] {
        assert!(work_help.contains(flag), "queue-work --help lists {flag}");
    }
}

/// `GET /metrics` over plain TCP.
fn scrape(port: u16) -> Option<String> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_endpoint_counts_successes_retries_and_failures() {
    let setup = Setup::new("metrics").await;
    let q = setup.queue.clone();
    let key = "e2e-metrics".to_owned();
    setup
        .manager
        .push(routemq_tests::jobs::Record {
            key: key.clone(),
            n: 1,
        })
        .on_queue(q.clone())
        .await
        .expect("push");
    setup
        .manager
        .push(routemq_tests::jobs::FailTimes {
            key: key.clone(),
            fail_times: 1,
        })
        .on_queue(q.clone())
        .await
        .expect("push");
    setup
        .manager
        .push(AlwaysFail {
            key: key.clone(),
            permanent: true,
        })
        .on_queue(q.clone())
        .await
        .expect("push");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let _worker = setup.work(&["--metrics-addr", &addr]);

    let queue_label = format!("queue=\"{q}\"");
    let mut text = String::new();
    wait_until(Duration::from_secs(20), || {
        text = scrape(port).unwrap_or_default();
        metric(&text, "routemq_queue_job_failed_total", &queue_label) == Some(1.0)
            && metric(
                &text,
                "routemq_queue_job_succeeded_total",
                "job_class=\"FailTimes\"",
            ) == Some(1.0)
    });
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{text}"
    );
    let class = |c: &str| format!("{queue_label},job_class=\"{c}\"");
    assert_eq!(
        metric(&text, "routemq_queue_job_started_total", &class("Record")),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "routemq_queue_job_succeeded_total", &class("Record")),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "routemq_queue_job_started_total",
            &class("FailTimes")
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &text,
            "routemq_queue_job_retried_total",
            &class("FailTimes")
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "routemq_queue_job_failed_total",
            &format!("{},error=\"Permanent\"", class("AlwaysFail"))
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "routemq_queue_job_duration_seconds_count",
            &class("FailTimes")
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(&text, "routemq_queue_failed_jobs", &queue_label),
        Some(1.0),
        "gauges refreshed at scrape"
    );
    assert_eq!(
        metric(&text, "routemq_queue_ready_jobs", &queue_label),
        Some(0.0)
    );
    assert!(!text.contains("job_id"), "ids are never labels");
}

#[tokio::test]
async fn log_format_json_writes_one_json_object_per_line() {
    let setup = Setup::new("json-logs").await;
    setup.dispatch(2, 0).await;
    let child = setup
        .command(&[
            "queue-work",
            "--queue",
            &setup.queue,
            "--stop-when-empty",
            "--sleep",
            "0.1",
        ])
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut guard = Guard(child);
    let mut stderr = guard.0.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    assert!(guard.wait_for_exit(Duration::from_secs(60)).success());
    let text = reader.join().expect("stderr");
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let messages: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    for expected in [
        "queue worker started",
        "processing job",
        "job completed",
        "queue worker stopped",
    ] {
        assert!(messages.contains(&expected), "{expected:?} in {messages:?}");
    }
}

#[tokio::test]
async fn queue_pause_stops_workers_reserving_until_queue_resume() {
    let setup = Setup::new("pause").await;
    setup.dispatch(3, 0).await;
    let paused = setup.json(&["queue-pause", &setup.queue]);
    assert_eq!(paused["paused"], true, "{paused}");
    assert_eq!(paused["queues"][0], setup.queue.as_str());
    // A worker on the paused queue takes nothing (it stops after its --max-time).
    let idle = setup.run(&[
        "queue-work",
        "--queue",
        &setup.queue,
        "--sleep",
        "0.1",
        "--max-time",
        "1.5",
    ]);
    assert!(idle.status.success(), "{idle:?}");
    assert!(setup.ledger().is_empty(), "no job of a paused queue runs");
    assert_eq!(
        setup.json(&["queue-size", "--queue", &setup.queue])[&setup.queue],
        3
    );
    // Producers keep enqueuing while it is paused.
    setup.dispatch(1, 0).await;
    let resumed = setup.json(&["queue-resume", &setup.queue]);
    assert_eq!(resumed["paused"], false, "{resumed}");
    let worked = setup.run(&[
        "queue-work",
        "--queue",
        &setup.queue,
        "--sleep",
        "0.1",
        "--stop-when-empty",
    ]);
    assert!(worked.status.success(), "{worked:?}");
    let done = setup.ledger().iter().filter(|l| l.event == "done").count();
    assert_eq!(done, 4);
}

/// The failed store's retention through the door: `QUEUE_FAILED_MAX` makes `queue-work` keep the
/// newest failed jobs of its queue on its reaper passes, and `queue-prune-failed --keep` does the
/// same by hand (one of `--hours` or `--keep` is required).
#[tokio::test]
async fn failed_jobs_are_kept_within_their_retention() {
    let setup = Setup::new("retention").await;
    let q = setup.queue.clone();
    let failed_count = |setup: &Setup| {
        setup
            .json(&["queue-failed", "--queue", &q])
            .as_array()
            .expect("a list")
            .len()
    };
    setup.fail_jobs(3).await;
    let env = [("QUEUE_FAILED_MAX", "1"), ("QUEUE_REAPER_INTERVAL", "0.2")];
    assert!(
        setup
            .work_with(&["--max-time", "1.5"], &env)
            .wait_for_exit(Duration::from_secs(60))
            .success()
    );
    assert_eq!(failed_count(&setup), 1, "QUEUE_FAILED_MAX=1");

    setup.fail_jobs(2).await;
    assert!(
        setup
            .work(&["--stop-when-empty"])
            .wait_for_exit(Duration::from_secs(60))
            .success()
    );
    assert_eq!(failed_count(&setup), 3);
    let pruned = setup.json(&["queue-prune-failed", "--keep", "1", "--queue", &q]);
    assert_eq!(pruned["pruned"], 2);
    assert_eq!(failed_count(&setup), 1);
    let neither = setup.run(&["queue-prune-failed"]);
    assert_eq!(neither.status.code(), Some(2), "--hours or --keep");
}
