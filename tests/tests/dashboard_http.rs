//! The dashboard's HTTP surface, in process on the memory driver: the JSON API reads and acts on
//! the store, authentication, the loopback host check, CSRF tokens, the read-only mode, the
//! security headers, and the refusal to serve a non-loopback address without authentication.

use std::sync::Arc;
use std::time::Duration;

use routemq::dashboard::{Auth, Dashboard, DashboardError};
use routemq::driver::QueueDriver;
use routemq::driver::memory::MemoryDriver;
use routemq_tests::http::call;
use routemq_tests::jobs::{AlwaysFail, Record};

const XSS: &str = "<script>alert('owned')</script>";

async fn serve(dashboard: Dashboard) -> u16 {
    let server = dashboard
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serves");
    let port = server.addr().port();
    // Kept for the test's life: the runtime ends with the test.
    std::mem::forget(server);
    port
}

/// A memory store, and a manager whose default connection `memory` it is.
fn memory_store() -> (Arc<dyn QueueDriver>, routemq::QueueManager) {
    let driver: Arc<dyn QueueDriver> = Arc::new(MemoryDriver::new());
    let manager = routemq::QueueManager::new(routemq::Settings {
        default_connection: "memory".to_owned(),
        ..routemq::Settings::default()
    });
    manager.register("memory", Arc::clone(&driver));
    (driver, manager)
}

/// A store with five succeeded jobs and one failed job whose data holds markup.
async fn store_with_a_failed_job(queue: &str) -> Arc<dyn QueueDriver> {
    let (driver, manager) = memory_store();
    for n in 0..5 {
        manager
            .push(Record {
                key: XSS.to_owned(),
                n,
            })
            .on_queue(queue.to_owned())
            .await
            .expect("dispatch");
    }
    manager
        .push(AlwaysFail {
            key: XSS.to_owned(),
            permanent: true,
        })
        .on_queue(queue.to_owned())
        .await
        .expect("dispatch");
    let options = routemq::WorkerOptions {
        queues: vec![queue.to_owned()],
        stop_when_empty: true,
        sleep: Duration::from_millis(20),
        ..routemq::WorkerOptions::default()
    };
    let report = routemq::Worker::new(Arc::clone(&driver), "memory", options)
        .run()
        .await
        .expect("worker ran");
    assert_eq!((report.succeeded, report.failed), (5, 1));
    driver
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reads_and_acts_on_the_store() {
    let queue = "dash-api";
    let driver = store_with_a_failed_job(queue).await;
    let port = serve(Dashboard::new(Arc::clone(&driver), "memory")).await;

    let overview = call(port, "GET", "/api/overview", &[], "").await;
    assert_eq!(overview.status, 200, "{}", overview.body);
    assert_eq!(overview.header("cache-control"), Some("no-store"));
    let overview = overview.json();
    let row = overview["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .find(|q| q["queue"] == queue)
        .expect("the queue is listed");
    assert_eq!(
        (row["ready"].as_u64(), row["failed"].as_u64()),
        (Some(0), Some(1))
    );
    let worker = &overview["workers"][0];
    assert_eq!(worker["state"], "stopped");
    assert_eq!(worker["processed"], 6);
    assert_eq!(worker["queues"][0], queue);
    let minutes = overview["throughput"].as_array().expect("throughput");
    assert_eq!(minutes.len(), 60);
    let succeeded: u64 = minutes
        .iter()
        .map(|m| m["succeeded"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(succeeded, 5);

    let types = call(port, "GET", "/api/job-types", &[], "").await.json();
    assert_eq!(types["workers_error"], serde_json::Value::Null);
    let record = types["items"]
        .as_array()
        .expect("types")
        .iter()
        .find(|t| t["name"] == "conformance.Record")
        .expect("listed");
    assert_eq!(record["linked"], true);
    assert_eq!(record["runs"], 5);
    assert_eq!(record["failure_rate"], 0.0);
    assert!(record["p50_seconds"].as_f64().is_some());
    assert_eq!(record["declared"]["max_tries"], 3);

    // Search, then the detail: the markup is data in JSON, served as JSON, never as HTML.
    let found = call(port, "GET", "/api/failed?q=SCRIPT&per_page=10", &[], "")
        .await
        .json();
    assert_eq!(found["total"], 1);
    let id = found["items"][0]["id"].as_str().expect("an id").to_owned();
    assert_eq!(found["items"][0]["job"], "conformance.AlwaysFail");
    let none = call(port, "GET", "/api/failed?job=conformance.Record", &[], "")
        .await
        .json();
    assert_eq!(none["total"], 0);
    let detail = call(port, "GET", &format!("/api/failed/{id}"), &[], "").await;
    assert!(
        detail
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
    );
    assert_eq!(detail.header("x-content-type-options"), Some("nosniff"));
    assert!(
        detail
            .header("content-security-policy")
            .is_some_and(|c| c.contains("script-src 'self'"))
    );
    let detail = detail.json();
    assert!(detail["data"].as_str().expect("data").contains(XSS));
    assert!(
        detail["exception"]
            .as_str()
            .expect("exception")
            .contains("the address does not exist")
    );
    assert_eq!(
        call(port, "GET", "/api/failed/999999", &[], "")
            .await
            .status,
        404
    );

    // Actions need the session's CSRF token.
    let csrf = call(port, "GET", "/api/session", &[], "").await.json()["csrf"]
        .as_str()
        .expect("a token")
        .to_owned();
    let retry = format!("/api/failed/{id}/retry");
    assert_eq!(call(port, "POST", &retry, &[], "{}").await.status, 403);
    assert_eq!(
        call(port, "POST", &retry, &[("X-CSRF-Token", "wrong")], "{}")
            .await
            .status,
        403
    );
    assert_eq!(
        driver.failed_list(Some(queue)).await.expect("list").len(),
        1,
        "refused: nothing changed"
    );
    let retried = call(port, "POST", &retry, &[("X-CSRF-Token", &csrf)], "{}").await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert!(
        driver
            .failed_list(Some(queue))
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        driver.size(queue).await.expect("size"),
        1,
        "back in its queue"
    );
    assert_eq!(
        call(port, "POST", &retry, &[("X-CSRF-Token", &csrf)], "{}")
            .await
            .status,
        404
    );
    // GET on an action is not one.
    assert_eq!(call(port, "GET", &retry, &[], "").await.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_and_retry_all_by_queue() {
    let queue = "dash-bulk";
    let driver = store_with_a_failed_job(queue).await;
    let port = serve(Dashboard::new(Arc::clone(&driver), "memory")).await;
    let csrf = call(port, "GET", "/api/session", &[], "").await.json()["csrf"]
        .as_str()
        .expect("a token")
        .to_owned();
    let header = [("X-CSRF-Token", csrf.as_str())];
    let other = call(
        port,
        "POST",
        "/api/failed/flush",
        &header,
        r#"{"queue":"other"}"#,
    )
    .await
    .json();
    assert_eq!(other["flushed"], 0, "another queue's flush leaves this one");
    let bad = call(
        port,
        "POST",
        "/api/failed/flush",
        &header,
        r#"{"queue":"a b"}"#,
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let all = call(
        port,
        "POST",
        "/api/failed/retry-all",
        &header,
        &format!(r#"{{"queue":"{queue}"}}"#),
    )
    .await
    .json();
    assert_eq!(all["retried"], 1);
    assert_eq!(driver.size(queue).await.expect("size"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_hosts_and_read_only_mode_are_enforced() {
    let driver: Arc<dyn QueueDriver> = Arc::new(MemoryDriver::new());
    let token =
        Dashboard::new(Arc::clone(&driver), "memory").auth(Auth::Token("s3cret".to_owned()));
    let port = serve(token).await;
    let denied = call(port, "GET", "/api/overview", &[], "").await;
    assert_eq!(denied.status, 401);
    assert!(
        denied
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Basic"))
    );
    assert_eq!(
        call(port, "GET", "/", &[], "").await.status,
        401,
        "pages too"
    );
    assert_eq!(
        call(port, "GET", "/metrics", &[], "").await.status,
        401,
        "metrics too"
    );
    assert_eq!(
        call(port, "GET", "/health", &[], "").await.status,
        200,
        "not health"
    );
    let bearer = [("Authorization", "Bearer s3cret")];
    assert_eq!(
        call(port, "GET", "/api/overview", &bearer, "").await.status,
        200
    );
    // Basic auth with any user and the token as password ("ops:s3cret").
    let basic = [("Authorization", "Basic b3BzOnMzY3JldA==")];
    assert_eq!(
        call(port, "GET", "/api/overview", &basic, "").await.status,
        200
    );
    let wrong = [("Authorization", "Bearer s3cre")];
    assert_eq!(
        call(port, "GET", "/api/overview", &wrong, "").await.status,
        401
    );
    // With auth, any Host name is fine (it may sit behind a proxy).
    let proxied = [
        ("Authorization", "Bearer s3cret"),
        ("Host", "queues.example.com"),
    ];
    assert_eq!(
        call(port, "GET", "/api/session", &proxied, "").await.status,
        200
    );

    // Without auth, only loopback host names: a DNS-rebinding page gets nothing.
    let open = serve(Dashboard::new(Arc::clone(&driver), "memory")).await;
    let rebound = call(
        open,
        "GET",
        "/api/overview",
        &[("Host", "evil.example:8080")],
        "",
    )
    .await;
    assert_eq!(rebound.status, 403);
    let page = call(open, "GET", "/", &[("Host", "127.0.0.1:8080")], "").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("assets/app.js"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    let script = call(open, "GET", "/assets/app.js", &[], "").await;
    assert!(
        script
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/javascript"))
    );
    assert!(
        !script.body.contains("innerHTML"),
        "job data is never parsed as markup"
    );
    let metrics = call(open, "GET", "/metrics", &[], "").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|t| t.contains("version=0.0.4"))
    );

    // Read-only: the session says so and every POST is refused, token or not.
    let read_only = serve(Dashboard::new(Arc::clone(&driver), "memory").read_only(true)).await;
    let session = call(read_only, "GET", "/api/session", &[], "").await.json();
    assert_eq!(session["read_only"], true);
    let csrf = session["csrf"].as_str().expect("token").to_owned();
    let flush = call(
        read_only,
        "POST",
        "/api/failed/flush",
        &[("X-CSRF-Token", &csrf)],
        "{}",
    )
    .await;
    assert_eq!(flush.status, 403);
    assert!(flush.body.contains("read-only"));
}

#[tokio::test]
async fn a_non_loopback_address_needs_authentication() {
    let driver: Arc<dyn QueueDriver> = Arc::new(MemoryDriver::new());
    let refused = Dashboard::new(driver, "memory")
        .serve("0.0.0.0:0".parse().expect("addr"))
        .await;
    match refused {
        Err(error @ DashboardError::AuthRequired { .. }) => {
            assert!(
                error.to_string().contains("ROUTEMQ_DASHBOARD_TOKEN"),
                "{error}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_listed_with_their_progress() {
    let (driver, manager) = memory_store();
    let jobs = (0..3).map(|n| Record {
        key: "dash-batch".to_owned(),
        n,
    });
    manager
        .batch(jobs.collect::<Vec<_>>())
        .name("nightly import")
        .on_queue("dash-batch")
        .dispatch()
        .await
        .expect("dispatch");
    let port = serve(Dashboard::new(Arc::clone(&driver), "memory")).await;
    let batches = call(port, "GET", "/api/batches", &[], "").await.json();
    assert_eq!(batches["supported"], true);
    let batch = &batches["items"][0];
    assert_eq!(batch["name"], "nightly import");
    assert_eq!(
        (batch["total"].as_u64(), batch["pending"].as_u64()),
        (Some(3), Some(3))
    );
    let schedules = call(port, "GET", "/api/schedules", &[], "").await.json();
    assert_eq!(schedules["items"], serde_json::json!([]));
}
