//! Redis leases in the states only a past build or a lost key leaves: leases taken before the
//! driver kept the lease token apart from the record (the in-flight hash then held `token \n
//! attempts \n record` for each job), which a worker upgraded while they are out starts,
//! acknowledges and reaps like its own; and a token whose record is gone, which the reaper
//! clears.

use std::time::Duration;

use routemq::driver::redis::{KeyLayout, RedisDriver};
use routemq::driver::{Lease, NewJob, QueueDriver};
use routemq::redis::AsyncCommands;
use routemq_tests::ledger::unique_key;
use routemq_tests::services::redis_url;

/// A driver on a key prefix of its own, the queue's record popped from the ready list and
/// stored as an old-form lease with `token` and `attempts`, its heartbeat at `beat`.
async fn old_lease(
    url: &str,
    prefix: &str,
    token: &str,
    attempts: u32,
    beat: f64,
) -> (
    RedisDriver,
    routemq::redis::aio::MultiplexedConnection,
    Lease,
) {
    let driver = RedisDriver::connect(url, KeyLayout::new(prefix, false))
        .await
        .expect("connects");
    let id = driver
        .push(&[NewJob::new(
            "q",
            r#"{"class": "x.Y", "data": {}}"#,
            Duration::ZERO,
        )])
        .await
        .expect("push")
        .remove(0);
    let client = routemq::redis::Client::open(url).expect("url");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    let record: String = con.lpop(format!("{prefix}q"), None).await.expect("pop");
    let value = format!("{token}\n{attempts}\n{record}");
    let () = con
        .hset(format!("{prefix}q:inflight"), &id, value)
        .await
        .expect("hset");
    let () = con
        .zadd(format!("{prefix}q:leases"), &id, beat)
        .await
        .expect("zadd");
    let lease = Lease {
        id,
        queue: "q".to_owned(),
        attempts,
        token: token.to_owned(),
    };
    (driver, con, lease)
}

async fn cleanup(con: &mut routemq::redis::aio::MultiplexedConnection, prefix: &str) {
    let keys: Vec<String> = [
        "q",
        "q:inflight",
        "q:leased",
        "q:leases",
        "q:seq",
        "q:delayed",
    ]
    .iter()
    .map(|key| format!("{prefix}{key}"))
    .collect();
    let _: i64 = con.del(keys).await.expect("cleanup");
}

#[tokio::test]
async fn an_old_prefetched_lease_starts_and_is_acknowledged() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("{}:", unique_key("upgrade-start"));
    let (driver, mut con, lease) = old_lease(&url, &prefix, "p41", 0, 1e12).await;
    let started = driver
        .start(std::slice::from_ref(&lease))
        .await
        .expect("start");
    let started = started[0].clone().expect("the old lease is still held");
    assert_eq!((started.attempts, started.token.as_str()), (1, "41"));
    let value: String = con
        .hget(format!("{prefix}q:inflight"), &lease.id)
        .await
        .expect("hget");
    assert!(
        value.starts_with("41\n1\n{"),
        "rewritten whole, attempt counted: {value}"
    );
    driver.ack(&[started]).await.expect("ack");
    let left: i64 = con.hlen(format!("{prefix}q:inflight")).await.expect("hlen");
    assert_eq!(left, 0, "acknowledged");
    cleanup(&mut con, &prefix).await;
}

#[tokio::test]
async fn an_old_lease_past_its_timeout_is_put_back_with_its_attempts() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("{}:", unique_key("upgrade-reap"));
    let (driver, mut con, lease) = old_lease(&url, &prefix, "7", 1, 1.0).await;
    let reaped = driver
        .reap(&["q".to_owned()], Duration::from_secs(60), None, "redis")
        .await
        .expect("reap");
    assert_eq!((reaped.requeued, reaped.failed), (1, 0));
    let jobs = driver.reserve(&["q".to_owned()], 1).await.expect("reserve");
    assert_eq!(jobs.len(), 1, "back in the queue");
    assert_eq!(jobs[0].lease.id, lease.id);
    assert_eq!(
        jobs[0].lease.attempts, 2,
        "the old lease's attempt kept, this one counted"
    );
    assert_eq!(jobs[0].payload, r#"{"class": "x.Y", "data": {}}"#);
    let leased: Option<String> = con
        .hget(format!("{prefix}q:leased"), &lease.id)
        .await
        .expect("hget");
    assert!(leased.is_some(), "the new lease keeps its record apart");
    driver.ack(&[jobs[0].lease.clone()]).await.expect("ack");
    cleanup(&mut con, &prefix).await;
}

#[tokio::test]
async fn an_old_prefetched_lease_past_its_timeout_goes_back_with_a_stall() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("{}:", unique_key("upgrade-stall"));
    let (driver, mut con, lease) = old_lease(&url, &prefix, "p9", 2, 1.0).await;
    let reaped = driver
        .reap(&["q".to_owned()], Duration::from_secs(60), None, "redis")
        .await
        .expect("reap");
    assert_eq!((reaped.requeued, reaped.failed), (1, 0));
    let record: String = con.lindex(format!("{prefix}q"), 0).await.expect("lindex");
    assert!(
        record.contains(r#""attempts": 2"#),
        "never started: {record}"
    );
    assert!(
        record.ends_with(r#", "stalls": 1}"#),
        "the stall counted: {record}"
    );
    assert!(record.contains(&format!(r#""id": "{}""#, lease.id)));
    cleanup(&mut con, &prefix).await;
}

#[tokio::test]
async fn a_token_whose_record_is_gone_is_cleared_by_the_reaper() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("{}:", unique_key("orphan"));
    let driver = RedisDriver::connect(&url, KeyLayout::new(prefix.as_str(), false))
        .await
        .expect("connects");
    driver
        .push(&[NewJob::new(
            "q",
            r#"{"class": "x.Y", "data": {}}"#,
            Duration::ZERO,
        )])
        .await
        .expect("push");
    let jobs = driver.reserve(&["q".to_owned()], 1).await.expect("reserve");
    let id = &jobs[0].lease.id;
    let client = routemq::redis::Client::open(url.as_str()).expect("url");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    // The record evicted, the heartbeat long past.
    let () = con
        .hdel(format!("{prefix}q:leased"), id)
        .await
        .expect("hdel");
    let () = con
        .zadd(format!("{prefix}q:leases"), id, 1.0)
        .await
        .expect("zadd");
    let reaped = driver
        .reap(&["q".to_owned()], Duration::from_secs(60), None, "redis")
        .await
        .expect("reap");
    assert_eq!(
        (reaped.requeued, reaped.failed),
        (0, 0),
        "nothing to put back"
    );
    let (tokens, beats): (i64, i64) = routemq::redis::pipe()
        .hlen(format!("{prefix}q:inflight"))
        .zcard(format!("{prefix}q:leases"))
        .query_async(&mut con)
        .await
        .expect("counts");
    assert_eq!((tokens, beats), (0, 0), "the lease's remains are gone");
    let stats = driver.stats("q").await.expect("stats");
    assert_eq!(stats.reserved, 0);
    cleanup(&mut con, &prefix).await;
}
