//! Through the user's door: the bundled `quickstart` and `worker` binaries run as processes,
//! configured by environment variables alone, exactly as the README tells a user, on every durable
//! connection: SQLite (the default), PostgreSQL (RouteMQ's `database` connection and its
//! `postgresql+asyncpg://` URL, from a `.env` file), MariaDB (RouteMQ's `DB_*` variables) and Redis (`REDIS_URL`).
//!
//! Each server case works in a database (or Redis key prefix) of its own, made for the run and
//! removed after it. Without a server URL the case prints `skipped: set …` (or fails under
//! `ROUTEMQ_TEST_REQUIRE_SERVICES=1`).

use std::io::{Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use routemq_tests::databases::{Server, TempDatabase};
use routemq_tests::ledger::unique_key;
use routemq_tests::services::{mysql_url, postgres_url, redis_url};
use serde_json::Value;

/// The environment of one case: what a user would put in `.env`.
struct Door {
    env: Vec<(String, String)>,
    dir: std::path::PathBuf,
}

impl Door {
    fn new(env: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(unique_key("door"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self {
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            dir,
        }
    }

    fn command(&self, binary: &str, args: &[&str]) -> Command {
        let mut command = Command::new(binary);
        command
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        for var in [
            "QUEUE_CONNECTION",
            "DATABASE_URL",
            "QUEUE_SQLITE_PATH",
            "REDIS_URL",
            "REDIS_PREFIX",
            "DB_CONNECTION",
            "DB_HOST",
            "DB_PORT",
            "DB_NAME",
            "DB_USER",
            "DB_PASSWORD",
            "LOG_FORMAT",
        ] {
            command.env_remove(var);
        }
        command.env("RUST_LOG", "warn");
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }

    /// Runs a binary to completion (killed after 60 s).
    fn run(&self, binary: &str, args: &[&str]) -> Output {
        let mut child = self
            .command(binary, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let started = Instant::now();
        while child.try_wait().expect("wait").is_none() {
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("{binary} {args:?} ran for more than 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("output")
    }

    /// Runs the worker binary's command and returns its JSON output, asserting the exit code.
    fn worker(&self, args: &[&str], code: i32) -> Value {
        let output = self.run(env!("CARGO_BIN_EXE_worker"), args);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(code),
            "worker {args:?}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str(&stdout).unwrap_or(Value::Null)
    }

    fn quickstart(&self, connection: &str) -> String {
        let output = self.run(env!("CARGO_BIN_EXE_quickstart"), &[]);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains(&format!("routemq quick start on connection `{connection}`")),
            "{stdout}"
        );
        for line in [
            "processed: 13",
            "succeeded: 11",
            "retried:   1",
            "failed:    1",
        ] {
            assert!(stdout.contains(line), "summary has `{line}`: {stdout}");
        }
        assert!(
            stdout.contains("Permanent: invalid address \"not-an-address\""),
            "the summary shows the failed email: {stdout}"
        );
        stdout
    }

    /// The failed email jobs, as `queue-failed --queue emails` lists them.
    fn failed_emails(&self) -> Vec<Value> {
        self.worker(&["queue-failed", "--queue", "emails"], 0)
            .as_array()
            .expect("a JSON list")
            .clone()
    }

    fn only_failed_id(&self) -> String {
        let failed = self.failed_emails();
        assert_eq!(failed.len(), 1, "{failed:?}");
        failed[0]["id"].as_str().expect("id").to_owned()
    }

    /// `queue-work` on the emails queue until it is empty.
    fn work_emails(&self) {
        self.worker(
            &[
                "queue-work",
                "--queue",
                "emails",
                "--stop-when-empty",
                "--sleep",
                "0.1",
            ],
            0,
        );
    }
}

impl Drop for Door {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The whole tour: migrate, quick start, every failed-job command, sizes, stats, the job list
/// and the metrics endpoint, all on the connection the environment names.
fn tour(door: &Door, connection: &str) {
    let migrated = door.worker(&["queue-migrate"], 0);
    assert_eq!(migrated["migrated"], true);
    assert_eq!(migrated["connection"], connection);

    door.quickstart(connection);
    let failed = door.failed_emails();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["queue"], "emails");
    assert_eq!(failed[0]["connection"], connection);
    assert!(
        failed[0]["exception"]
            .as_str()
            .is_some_and(|e| e.starts_with("Permanent: invalid address")),
        "{failed:?}"
    );
    let id = failed[0]["id"].as_str().expect("id").to_owned();
    let table = door.run(
        env!("CARGO_BIN_EXE_worker"),
        &["queue-failed", "--format", "table"],
    );
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("exception") && table.contains(&id),
        "{table}"
    );
    let shown = door.worker(&["queue-failed-show", &id], 0);
    assert!(
        shown["payload"]
            .as_str()
            .is_some_and(|p| p.contains("not-an-address")),
        "{shown}"
    );
    // An id of the right shape that does not exist: exit code 3 (`null` in JSON).
    let missing = if id.contains(':') {
        "failed:emails:99999999"
    } else {
        "99999999"
    };
    door.worker(&["queue-failed-show", missing], 3);

    // Retry by id: refused for the wrong queue, then back on its queue and worked again.
    door.worker(&["queue-retry", &id, "--queue", "reports"], 3);
    assert_eq!(door.failed_emails().len(), 1);
    assert_eq!(door.worker(&["queue-retry", &id], 0)["retried"], 1);
    assert!(door.failed_emails().is_empty());
    assert_eq!(
        door.worker(&["queue-size", "--queue", "emails"], 0)["emails"],
        1
    );
    let stats = door.worker(&["queue-stats", "--queue", "emails"], 0);
    assert_eq!(stats[0]["ready"], 1, "{stats}");
    door.work_emails();

    // Retry all, work again, then prune by age.
    let again = door.only_failed_id();
    assert_ne!(
        again, id,
        "a retried job fails again as a new failed record"
    );
    assert_eq!(door.worker(&["queue-retry", "--all"], 0)["retried"], 1);
    door.work_emails();
    door.only_failed_id();
    assert_eq!(
        door.worker(&["queue-prune-failed", "--hours", "1"], 0)["pruned"],
        0
    );
    assert_eq!(
        door.worker(&["queue-prune-failed", "--hours", "0"], 0)["pruned"],
        1
    );
    assert!(door.failed_emails().is_empty());

    // Forget and flush, each on a fresh quick start's failed email.
    door.quickstart(connection);
    let forget = door.only_failed_id();
    assert_eq!(
        door.worker(&["queue-forget", &forget], 0)["forgotten"],
        true
    );
    assert!(door.failed_emails().is_empty());
    door.quickstart(connection);
    door.only_failed_id();
    assert_eq!(
        door.worker(&["queue-flush", "--queue", "emails"], 0)["flushed"],
        1
    );
    assert!(door.failed_emails().is_empty());

    let jobs = door.worker(&["list-jobs", "--connection", connection], 0);
    assert!(
        jobs.as_array()
            .expect("list")
            .iter()
            .any(|j| j["queue"] == "emails"),
        "{jobs}"
    );
    metrics_endpoint(door);
}

/// `queue-work --metrics-addr localhost:PORT` serves `/metrics` and `/health`.
fn metrics_endpoint(door: &Door) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = format!("localhost:{port}");
    let mut worker = Running(
        door.command(
            env!("CARGO_BIN_EXE_worker"),
            &["queue-work", "--queue", "emails", "--metrics-addr", &addr],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn worker"),
    );
    let started = Instant::now();
    let metrics = loop {
        if let Some(body) = get(port, "/metrics") {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no metrics on {addr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        metrics.contains("routemq_queue_ready_jobs{queue=\"emails\"}"),
        "{metrics}"
    );
    assert!(get(port, "/health").is_some_and(|b| b.contains("ok")));
    worker.stop();
}

/// The body of a 200 response to `GET path`, or `None`.
fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// A worker process, stopped with SIGTERM (killed if it does not exit).
struct Running(Child);

impl Running {
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(status)) = self.0.try_wait() {
                assert!(status.success(), "worker exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the worker did not stop on SIGTERM");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sqlite_default_connection() {
    // No configuration at all: the default connection, `./routemq.sqlite` in the working directory.
    let door = Door::new(&[]);
    tour(&door, "sqlite");
    assert!(door.dir.join("routemq.sqlite").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_as_routemqs_database_connection() {
    let Some(base) = postgres_url() else { return };
    let database = TempDatabase::create(Server::Postgres, &base, "door_pg").await;
    let url = database
        .url()
        .replacen("postgres://", "postgresql+asyncpg://", 1);
    // Configured the way the README's mixed-fleet example does it: a `.env` file.
    let door = Door::new(&[]);
    std::fs::write(
        door.dir.join(".env"),
        format!("QUEUE_CONNECTION=database\nDATABASE_URL={url}\n"),
    )
    .expect("write .env");
    database
        .run(blocking(move || tour(&door, "database")))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_from_routemqs_db_variables() {
    let Some(base) = mysql_url() else { return };
    let database = TempDatabase::create(Server::Mysql, &base, "door_my").await;
    let url = url::Url::parse(&base).expect("mysql URL");
    let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = url.port().unwrap_or(3306).to_string();
    let user = url.username().to_owned();
    let password = url.password().unwrap_or("").to_owned();
    let mut env = vec![
        ("QUEUE_CONNECTION", "mysql"),
        ("DB_HOST", host.as_str()),
        ("DB_PORT", port.as_str()),
        ("DB_USER", user.as_str()),
        ("DB_NAME", database.name()),
    ];
    if !password.is_empty() {
        env.push(("DB_PASSWORD", password.as_str()));
    }
    let door = Door::new(&env);
    database.run(blocking(move || tour(&door, "mysql"))).await;
}

/// Runs blocking test code (the tour waits on processes) off the async runtime.
async fn blocking(test: impl FnOnce() + Send + 'static) {
    if let Err(error) = tokio::task::spawn_blocking(test).await {
        std::panic::resume_unwind(error.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_from_redis_url() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("{}:queue:", unique_key("routemq-door"));
    let door = Door::new(&[
        ("QUEUE_CONNECTION", "redis"),
        ("REDIS_URL", &url),
        ("REDIS_PREFIX", &prefix),
    ]);
    let result = tokio::spawn(blocking(move || tour(&door, "redis"))).await;
    routemq_tests::services::delete_redis_keys(&url, &prefix).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic.into_panic());
    }
}
