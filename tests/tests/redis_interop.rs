//! Redis interop with RouteMQ (Python): records it wrote are processed by our worker, and what we
//! write has the shape its worker and failed-job commands read. Uses RouteMQ's real key layout
//! (`routemq:queue:*`) with queue names unique to this run, removed afterwards.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use routemq::driver::QueueDriver;
use routemq::driver::redis::{KeyLayout, RedisDriver};
use routemq::{QueueManager, Settings, Worker, WorkerOptions};
use routemq_tests::interop::{EchoJob, fixture};
use routemq_tests::ledger::{self, unique_key};
use routemq_tests::services::redis_url;
use serde_json::Value;

struct Fixture {
    driver: Arc<dyn QueueDriver>,
    redis: redis::aio::MultiplexedConnection,
    queue: String,
}

impl Fixture {
    async fn new(name: &str) -> Option<Self> {
        let url = redis_url()?;
        let driver: Arc<dyn QueueDriver> = Arc::new(
            RedisDriver::connect(&url, KeyLayout::default())
                .await
                .expect("connects"),
        );
        let redis = redis::Client::open(url)
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("connects");
        Some(Self {
            driver,
            redis,
            queue: unique_key(&format!("interop-{name}")),
        })
    }

    async fn cleanup(mut self) {
        let q = &self.queue;
        let keys = [
            format!("routemq:queue:{q}"),
            format!("routemq:queue:{q}:delayed"),
            format!("routemq:queue:failed:{q}"),
            format!("routemq:queue:{q}:inflight"),
            format!("routemq:queue:{q}:leased"),
            format!("routemq:queue:{q}:leases"),
            format!("routemq:queue:{q}:seq"),
        ];
        let _: () = self.redis.del(&keys[..]).await.expect("cleanup");
    }
}

/// The record exactly as RouteMQ pushed it, moved to this test's queue.
fn routemq_record(file: &str, queue: &str) -> String {
    let text = fixture(file);
    let line = text.lines().next().expect("record line");
    line.replace("\"id\": \"samples:", &format!("\"id\": \"{queue}:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_routemq_pushed_are_processed_by_our_worker() {
    let Some(mut f) = Fixture::new("consume").await else {
        return;
    };
    let ready = routemq_record("redis-ready-record.json", &f.queue);
    let delayed = routemq_record("redis-delayed-member-and-score.txt", &f.queue);
    let _: () = f
        .redis
        .rpush(format!("routemq:queue:{}", f.queue), &ready)
        .await
        .expect("rpush");
    // The delayed member with a score already due.
    let _: () = f
        .redis
        .zadd(format!("routemq:queue:{}:delayed", f.queue), &delayed, 1.0)
        .await
        .expect("zadd");
    assert_eq!(f.driver.size(&f.queue).await.expect("size"), 2);

    let options = WorkerOptions {
        queues: vec![f.queue.clone()],
        stop_when_empty: true,
        sleep: Duration::from_millis(50),
        ..WorkerOptions::default()
    };
    let report = Worker::new(Arc::clone(&f.driver), "redis", options)
        .run()
        .await
        .expect("runs");
    assert_eq!(report.succeeded, 2, "{report:?}");
    let runs = ledger::of(&format!("interop-{}", f.queue), "echo");
    assert_eq!(runs.len(), 2, "both RouteMQ jobs ran");
    assert!(runs.iter().all(|r| r.attempt == 1));
    assert_eq!(f.driver.size(&f.queue).await.expect("size"), 0);
    f.cleanup().await;
}

#[tokio::test]
async fn failed_records_routemq_wrote_are_listed_shown_and_retried() {
    let Some(mut f) = Fixture::new("failed").await else {
        return;
    };
    let record = fixture("redis-failed-record.json").replace("samples-fail", &f.queue);
    let _: () = f
        .redis
        .rpush(format!("routemq:queue:failed:{}", f.queue), record.trim())
        .await
        .expect("rpush");

    let listed = f.driver.failed_list(Some(&f.queue)).await.expect("list");
    assert_eq!(listed.len(), 1);
    let job = &listed[0];
    assert_eq!(job.id, format!("failed:{}:1795901704253379", f.queue));
    assert_eq!(job.connection, "redis");
    assert!(
        job.exception
            .starts_with("RuntimeError: FailJob: forced-0\nTraceback")
    );
    assert!(
        job.payload
            .starts_with("{\"class\": \"interop_jobs.FailJob\"")
    );
    let failed_at = job
        .failed_at
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    assert_eq!(
        failed_at.as_micros(),
        1_795_901_704_253_381,
        "2026-11-28T21:35:04.253381+00:00"
    );
    assert_eq!(
        f.driver.failed_get(&job.id).await.expect("get").as_ref(),
        Some(job)
    );

    let new_id = f
        .driver
        .failed_retry(&job.id)
        .await
        .expect("retry")
        .expect("found");
    assert!(new_id.starts_with(&format!("{}:", f.queue)));
    let raw: Vec<String> = f
        .redis
        .lrange(format!("routemq:queue:{}", f.queue), 0, -1)
        .await
        .expect("lrange");
    let pushed: Value = serde_json::from_str(&raw[0]).expect("record JSON");
    assert_eq!(
        pushed["payload"].as_str(),
        Some(job.payload.as_str()),
        "payload pushed back unchanged"
    );
    assert_eq!(pushed["attempts"], 0);
    assert!(
        f.driver
            .failed_list(Some(&f.queue))
            .await
            .expect("list")
            .is_empty()
    );
    f.cleanup().await;
}

#[tokio::test]
async fn what_we_write_is_in_routemqs_form() {
    let Some(mut f) = Fixture::new("produce").await else {
        return;
    };
    let manager = QueueManager::new(Settings::default());
    manager.register("redis", Arc::clone(&f.driver));
    let job = EchoJob {
        text: "héllo".into(),
        number: 7,
        items: vec![],
        meta: Value::Null,
    };
    let id = manager
        .push(job.clone())
        .on_connection("redis")
        .on_queue(f.queue.clone())
        .await
        .expect("push");
    manager
        .push(job)
        .on_connection("redis")
        .on_queue(f.queue.clone())
        .delay(Duration::from_secs(600))
        .await
        .expect("later");

    let raw: Vec<String> = f
        .redis
        .lrange(format!("routemq:queue:{}", f.queue), 0, -1)
        .await
        .expect("lrange");
    assert_eq!(raw.len(), 1);
    let record = &raw[0];
    assert!(
        record.starts_with(&format!(
            "{{\"id\": \"{id}\", \"payload\": \"{{\\\"class\\\": \\\"interop_jobs.EchoJob\\\""
        )),
        "{record}"
    );
    let parsed: serde_json::Map<String, Value> = serde_json::from_str(record).expect("JSON");
    assert_eq!(
        parsed.len(),
        4,
        "id, payload, attempts, created_at: {record}"
    );
    assert_eq!(parsed["attempts"], 0);
    assert!(
        parsed["created_at"]
            .as_str()
            .expect("text")
            .ends_with("+00:00")
    );
    let envelope =
        routemq::Envelope::decode(parsed["payload"].as_str().expect("payload")).expect("envelope");
    assert_eq!(envelope.class(), "interop_jobs.EchoJob");
    assert!(
        record.is_ascii(),
        "non-ASCII is escaped, as Python writes it"
    );

    let delayed: Vec<(String, f64)> = f
        .redis
        .zrange_withscores(format!("routemq:queue:{}:delayed", f.queue), 0, -1)
        .await
        .expect("zrange");
    assert_eq!(delayed.len(), 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        (delayed[0].1 - (now + 600.0)).abs() < 5.0,
        "score = epoch seconds when due"
    );

    // A failed job is recorded in RouteMQ's failed-record shape, id failed:{queue}:{n}.
    let reserved = f
        .driver
        .reserve(std::slice::from_ref(&f.queue), 1)
        .await
        .expect("reserve");
    let failure = routemq::driver::Failure {
        connection: "redis".into(),
        exception: "Failed: boom".into(),
    };
    assert!(
        f.driver
            .fail(&reserved[0].lease, &failure)
            .await
            .expect("fail")
    );
    let failed: Vec<String> = f
        .redis
        .lrange(format!("routemq:queue:failed:{}", f.queue), 0, -1)
        .await
        .expect("lrange");
    let failed: serde_json::Map<String, Value> = serde_json::from_str(&failed[0]).expect("JSON");
    let keys: Vec<&str> = failed.keys().map(String::as_str).collect();
    for key in [
        "id",
        "connection",
        "queue",
        "payload",
        "exception",
        "failed_at",
    ] {
        assert!(keys.contains(&key), "{key} in {keys:?}");
    }
    let failed_id = failed["id"].as_str().expect("id");
    assert!(
        failed_id.starts_with(&format!("failed:{}:", f.queue)),
        "{failed_id}"
    );
    assert_eq!(
        failed["payload"].as_str(),
        Some(reserved[0].payload.as_str())
    );
    f.cleanup().await;
}
