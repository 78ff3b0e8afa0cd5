//! `routemq::cli::App` through the door: the `test-worker` binary registers shared data, an async
//! setup and lifecycle hooks the way an application does, and runs as a process. On SQLite with no
//! server; with servers, on connections the setup builds on the application's own PostgreSQL and
//! MySQL pools and Redis `ConnectionManager`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use routemq::driver::QueueDriver;
use routemq::driver::sqlite::SqliteDriver;
use routemq::{QueueManager, Settings};
use routemq_tests::app::{APP_MYSQL, APP_POSTGRES, APP_REDIS, NeedsUnregisteredData, UsesAppData};
use routemq_tests::databases::{Server, with_fresh_database};
use routemq_tests::jobs::FailTimes;
use routemq_tests::ledger::unique_key;
use routemq_tests::process::run_bounded;
use routemq_tests::process_env::drain_args;
use routemq_tests::services::redis_url;
use routemq_tests::sqlite_files::fresh_path;

/// The test worker with `args`, `env`, and no routemq configuration of the caller's.
fn test_worker(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_test-worker"));
    command
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .env_remove("QUEUE_CONNECTION")
        .envs(env.iter().copied());
    let output = run_bounded(command, Duration::from_secs(60));
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    }
    output
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The hook file's lines for one job id, without the id: `"{lifecycle} {name} {attempt}"`.
fn hooks_of(hook_lines: &[String], id: &str) -> Vec<String> {
    hook_lines
        .iter()
        .filter_map(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            (parts.get(2) == Some(&id)).then(|| format!("{} {} {}", parts[0], parts[1], parts[3]))
        })
        .collect()
}

struct Files {
    db: PathBuf,
    data: PathBuf,
    hooks: PathBuf,
}

impl Files {
    fn new(name: &str) -> Self {
        let db = fresh_path(name);
        let files = Self {
            data: db.with_extension("data"),
            hooks: db.with_extension("hooks"),
            db,
        };
        let _ = std::fs::remove_file(&files.data);
        let _ = std::fs::remove_file(&files.hooks);
        files
    }

    fn data_path(&self) -> String {
        self.data.to_str().expect("utf-8").to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_data_setup_and_hooks_reach_handlers_in_the_worker_binary() {
    let files = Files::new("app-e2e-sqlite");
    let queue = "app-e2e";
    let driver: Arc<dyn QueueDriver> = Arc::new(
        SqliteDriver::open(files.db.to_str().expect("utf-8"))
            .await
            .expect("open"),
    );
    let manager = QueueManager::new(Settings::default());
    manager.register("sqlite", Arc::clone(&driver));
    let uses = manager
        .push(UsesAppData {
            path: files.data_path(),
        })
        .on_queue(queue)
        .await
        .expect("push");
    let needs = manager
        .push(NeedsUnregisteredData)
        .on_queue(queue)
        .await
        .expect("push");
    let flaky = manager
        .push(FailTimes {
            key: unique_key("app-e2e"),
            fail_times: 1,
        })
        .on_queue(queue)
        .await
        .expect("push");

    let db = files.db.to_str().expect("utf-8").to_owned();
    let hooks = files.hooks.to_str().expect("utf-8").to_owned();
    let output = test_worker(
        &[&drain_args(queue)[..], &["--concurrency", "1"]].concat(),
        &[
            ("QUEUE_CONNECTION", "sqlite"),
            ("QUEUE_SQLITE_PATH", &db),
            ("TEST_WORKER_HOOK_FILE", &hooks),
        ],
    );
    assert!(output.status.success());

    // App::data reached the handler; no application pool was configured.
    assert_eq!(lines(&files.data), ["from-app-data "]);
    // Data nobody registered: a permanent failure naming the type, in the failed store.
    let failed = driver.failed_list(Some(queue)).await.expect("failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]
            .exception
            .starts_with("Permanent: no shared data of type `routemq_tests::app::NeverRegistered`"),
        "{}",
        failed[0].exception
    );
    // Every hook, in order, with the attempt it saw.
    let hook_lines = lines(&files.hooks);
    assert_eq!(
        hooks_of(&hook_lines, &uses),
        ["Before e2e.UsesAppData 1", "After e2e.UsesAppData 1"]
    );
    assert_eq!(
        hooks_of(&hook_lines, &needs),
        [
            "Before e2e.NeedsUnregisteredData 1",
            "Failure e2e.NeedsUnregisteredData 1",
            "FinalFailure e2e.NeedsUnregisteredData 1"
        ]
    );
    assert_eq!(
        hooks_of(&hook_lines, &flaky),
        [
            "Before conformance.FailTimes 1",
            "Failure conformance.FailTimes 1",
            "Release conformance.FailTimes 1",
            "Before conformance.FailTimes 2",
            "After conformance.FailTimes 2"
        ]
    );
}

#[test]
fn a_failing_setup_stops_the_command_with_its_error() {
    let db = fresh_path("app-e2e-setup");
    let db = db.to_str().expect("utf-8");
    let env = [
        ("QUEUE_CONNECTION", "sqlite"),
        ("QUEUE_SQLITE_PATH", db),
        ("TEST_WORKER_SETUP_FAILS", "the app database is down"),
    ];
    for command in [&["queue-work", "--stop-when-empty"][..], &["queue-size"]] {
        let output = test_worker(command, &env);
        assert_eq!(output.status.code(), Some(1), "{command:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("error: setup failed: the app database is down"),
            "{stderr}"
        );
    }
    // `list-jobs` needs no setup.
    assert!(test_worker(&["list-jobs"], &env).status.success());
}

/// Pushes a [`UsesAppData`] with `driver`, works `connection` with the test worker whose setup
/// builds it on the application's pool (`env`), and checks the handler used that pool.
async fn work_on_app_pool(
    driver: Arc<dyn QueueDriver>,
    connection: &str,
    env: &[(&str, &str)],
    answer: &str,
) {
    let files = Files::new(&format!("app-e2e-{connection}"));
    let queue = unique_key("app-pool");
    let manager = QueueManager::new(Settings::default());
    manager.register(connection, Arc::clone(&driver));
    manager
        .push(UsesAppData {
            path: files.data_path(),
        })
        .on_connection(connection)
        .on_queue(queue.clone())
        .await
        .expect("push");
    let args = [
        "queue-work",
        "--connection",
        connection,
        "--queue",
        queue.as_str(),
        "--stop-when-empty",
        "--sleep",
        "0.1",
    ];
    let output = tokio::task::block_in_place(|| test_worker(&args, env));
    assert!(output.status.success());
    assert_eq!(lines(&files.data), [format!("from-app-data {answer}")]);
    assert_eq!(driver.size(&queue).await.expect("size"), 0);
    assert!(
        driver
            .failed_list(Some(&queue))
            .await
            .expect("failed")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_on_the_apps_postgres_pool() {
    with_fresh_database(Server::Postgres, "app_pool_pg", |driver, url| async move {
        let env = [("TEST_WORKER_APP_POSTGRES", url.as_str())];
        work_on_app_pool(driver, APP_POSTGRES, &env, "postgres=1").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_on_the_apps_mysql_pool() {
    with_fresh_database(Server::Mysql, "app_pool_my", |driver, url| async move {
        let env = [("TEST_WORKER_APP_MYSQL", url.as_str())];
        work_on_app_pool(driver, APP_MYSQL, &env, "mysql=1").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_on_the_apps_redis_connection_manager() {
    use routemq::driver::redis::{KeyLayout, RedisDriver};
    let Some(url) = redis_url() else { return };
    let prefix = format!("{}:", unique_key("routemq-app-pool"));
    let driver = RedisDriver::connect(&url, KeyLayout::new(prefix.clone(), false))
        .await
        .expect("connect");
    let env = [
        ("TEST_WORKER_APP_REDIS", url.as_str()),
        ("TEST_WORKER_APP_REDIS_PREFIX", prefix.as_str()),
    ];
    work_on_app_pool(Arc::new(driver), APP_REDIS, &env, "redis=PONG").await;
    routemq_tests::services::delete_redis_keys(&url, &prefix).await;
}
