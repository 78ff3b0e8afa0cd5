//! The dashboard through the door, on every driver: `test-worker queue-dashboard` (a binary that
//! calls `routemq::cli::main()`) configured only by the environment the README names, beside a
//! `queue-work` process. The overview shows the queue's counts and the worker that ran, the
//! failed job can be found and opened, and retrying it puts it back in its queue.

use std::sync::Arc;

use routemq::driver::QueueDriver;
use routemq_tests::http::{call, request, wait_until_served};
use routemq_tests::process::{Process, run_command};
use routemq_tests::process_env::{Env, Stage, drain_args, sqlite, with_vars};
use routemq_tests::process_jobs::Ledgered;

const MARKUP: &str = "<img src=x onerror=alert(1)>";
const WORKER: &str = env!("CARGO_BIN_EXE_test-worker");

async fn prove(driver: Arc<dyn QueueDriver>, connection: &str, env: Env) {
    let stage = Stage::new(&driver, connection, "dash");
    let queue = stage.queue.clone();
    for n in 1..=4 {
        stage
            .manager
            .push(Ledgered {
                path: stage.path.clone(),
                n,
                sleep_ms: 0,
                fail: n == 4,
                note: MARKUP.to_owned(),
            })
            .on_queue(queue.clone())
            .await
            .expect("dispatch");
    }
    let dashboard = Process::start(
        WORKER,
        &env,
        &[
            "queue-dashboard".to_owned(),
            "--addr".to_owned(),
            "127.0.0.1:0".to_owned(),
        ],
    );
    let port = tokio::task::block_in_place(|| dashboard.printed_port());
    let env_for_worker = env.clone();
    let queue_for_worker = queue.clone();
    let (session, worked) = tokio::task::spawn_blocking(move || {
        let session = wait_until_served(port, "/api/session");
        let before = request(port, "GET", "/api/overview", &[], "").json();
        let worked = run_command(WORKER, &env_for_worker, &drain_args(&queue_for_worker));
        (session, (before, worked))
    })
    .await
    .expect("requests");
    let (before, worked) = worked;
    assert!(worked.status.success(), "{worked:?}");
    assert_eq!(session.status, 200, "{}", session.body);
    let session = session.json();
    assert_eq!(session["connection"], connection);
    let ready_before = queue_row(&before, &queue)["ready"].as_u64();
    assert_eq!(ready_before, Some(4), "{before}");

    let get = |path: String| async move { call(port, "GET", &path, &[], "").await };
    let overview = get("/api/overview".to_owned()).await.json();
    let row = queue_row(&overview, &queue);
    assert_eq!(
        (row["ready"].as_u64(), row["failed"].as_u64()),
        (Some(0), Some(1)),
        "{row}"
    );
    let worker = overview["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .find(|w| w["queues"][0] == queue.as_str())
        .unwrap_or_else(|| panic!("the worker is listed: {overview}"));
    assert_eq!(worker["state"], "stopped");
    assert_eq!(
        (worker["succeeded"].as_u64(), worker["failed"].as_u64()),
        (Some(3), Some(1))
    );

    let listed = get(format!("/api/failed?queue={queue}")).await.json();
    assert_eq!(listed["total"], 1, "{listed}");
    let id = listed["items"][0]["id"].as_str().expect("id").to_owned();
    let detail = get(format!("/api/failed/{id}")).await.json();
    assert!(detail["data"].as_str().expect("data").contains(MARKUP));
    assert!(
        detail["exception"]
            .as_str()
            .expect("exception")
            .contains("meant to fail")
    );

    let csrf = session["csrf"].as_str().expect("csrf").to_owned();
    let retry = format!("/api/failed/{id}/retry");
    let retried = call(port, "POST", &retry, &[("X-CSRF-Token", &csrf)], "{}").await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert!(
        driver
            .failed_list(Some(&queue))
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        driver.size(&queue).await.expect("size"),
        1,
        "back in its queue"
    );
}

fn queue_row<'a>(overview: &'a serde_json::Value, queue: &str) -> &'a serde_json::Value {
    overview["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .find(|q| q["queue"] == queue)
        .unwrap_or_else(|| panic!("queue {queue} listed: {overview}"))
}

routemq_tests::on_every_driver!(prove, "dashboard_e2e");

/// A non-loopback address without a token: the command refuses to start, and says why.
#[test]
fn a_public_address_without_a_token_is_refused() {
    let env = vec![("QUEUE_CONNECTION".to_owned(), "memory".to_owned())];
    let out = run_command(WORKER, &env, &["queue-dashboard", "--addr", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ROUTEMQ_DASHBOARD_TOKEN"), "{stderr}");
}

/// `queue-work --dashboard ADDR` serves the dashboard beside the worker: the worker shows as
/// running while it runs, the binary's schedules are listed, and SIGTERM stops both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_serves_the_dashboard_beside_it() {
    let (_driver, env) = sqlite("dashboard-beside").await;
    let queue = "beside";
    let env = with_vars(
        &env,
        &[
            ("TEST_WORKER_SCHEDULE_CRON", "0 3 * * *".to_owned()),
            ("TEST_WORKER_SCHEDULE_LEDGER", "/dev/null".to_owned()),
            ("TEST_WORKER_SCHEDULE_QUEUE", queue.to_owned()),
        ],
    );
    let mut worker = Process::start(
        WORKER,
        &env,
        &[
            "queue-work".to_owned(),
            "--queue".to_owned(),
            queue.to_owned(),
            "--schedule".to_owned(),
            "--dashboard".to_owned(),
            "127.0.0.1:0".to_owned(),
        ],
    );
    let port = tokio::task::block_in_place(|| worker.printed_port());
    let (overview, schedules) = tokio::task::spawn_blocking(move || {
        wait_until_served(port, "/health");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let overview = loop {
            let overview = request(port, "GET", "/api/overview", &[], "").json();
            if overview["workers"][0]["state"] == "running" || std::time::Instant::now() > deadline
            {
                break overview;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        (
            overview,
            request(port, "GET", "/api/schedules", &[], "").json(),
        )
    })
    .await
    .expect("requests");
    let worker_row = &overview["workers"][0];
    assert_eq!(worker_row["state"], "running", "{overview}");
    assert_eq!(worker_row["queues"][0], queue);
    assert_eq!(worker_row["pid"], worker.id());
    assert_eq!(
        schedules["items"][0]["name"],
        format!("test-{queue}"),
        "{schedules}"
    );
    assert_eq!(schedules["items"][0]["cron"], "0 3 * * *");
    worker.signal("TERM");
    assert!(worker.wait(std::time::Duration::from_secs(20)).success());
}
