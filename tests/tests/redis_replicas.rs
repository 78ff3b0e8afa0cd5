//! `REDIS_WAIT_REPLICAS`: a dispatch waits until that many replicas have it. On a server with no
//! replica it returns an error that says so, and the job is stored all the same; on a cluster,
//! whose primaries have a replica each, it returns the id.

use std::time::Duration;

use routemq::QueueDriver;
use routemq::driver::NewJob;
use routemq::driver::redis::{KeyLayout, RedisDriver};
use routemq_tests::ledger::unique_key;
use routemq_tests::redis_cluster::cluster_nodes;
use routemq_tests::services::{delete_redis_keys, redis_url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_no_replica_confirms_is_an_error_and_stays_stored() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("{}:", unique_key("routemq-wait"));
    let driver = RedisDriver::connect(&url, KeyLayout::new(prefix.clone(), false))
        .await
        .expect("connect")
        .wait_for_replicas(1, Duration::from_millis(100));
    let pushed = driver
        .push(&[NewJob::new("waited", "{}", Duration::ZERO)])
        .await;
    let size = driver.size("waited").await.expect("size");
    delete_redis_keys(&url, &prefix).await;
    let error = pushed
        .expect_err("the test server has no replica")
        .to_string();
    assert!(
        error.contains("stored on the primary, but 0 of the 1 replicas"),
        "{error}"
    );
    assert_eq!(size, 1, "the job is stored all the same");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_waiting_for_replicas_holds_up_no_other_operation() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("{}:", unique_key("routemq-wait"));
    let driver = std::sync::Arc::new(
        RedisDriver::connect(&url, KeyLayout::new(prefix.clone(), false))
            .await
            .expect("connect")
            .wait_for_replicas(1, Duration::from_secs(3)),
    );
    let waiting = {
        let driver = std::sync::Arc::clone(&driver);
        tokio::spawn(async move {
            driver
                .push(&[NewJob::new("waited", "{}", Duration::ZERO)])
                .await
        })
    };
    // While the dispatch waits for a replica the server does not have, the driver's other
    // operations go on: a reservation, and the size of a queue.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reserved = driver.reserve(&["other".to_owned()], 1).await;
    let size = driver.size("waited").await;
    let still_waiting = !waiting.is_finished();
    let pushed = waiting.await.expect("joins");
    delete_redis_keys(&url, &prefix).await;
    assert!(reserved.expect("reserve").is_empty());
    assert_eq!(size.expect("size"), 1, "stored before the wait");
    assert!(
        still_waiting,
        "the reservation did not queue behind the WAIT"
    );
    assert!(pushed.is_err(), "no replica confirmed it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_dispatch_returns_once_a_replica_has_it() {
    let Some(nodes) = cluster_nodes() else { return };
    let prefix = format!("{}:", unique_key("routemq-wait"));
    let driver = RedisDriver::connect_cluster(&nodes, KeyLayout::new(prefix.clone(), true))
        .await
        .expect("connect")
        .wait_for_replicas(1, Duration::from_secs(5));
    let queues = ["waited-a", "waited-b", "waited-c", "waited-d"];
    let jobs: Vec<NewJob> = queues
        .iter()
        .map(|queue| NewJob::new(*queue, "{}", Duration::ZERO))
        .collect();
    let pushed = driver.push(&jobs).await;
    let mut sizes = Vec::new();
    for queue in queues {
        sizes.push(driver.size(queue).await.expect("size"));
    }
    for node in &nodes {
        delete_redis_keys(node, &prefix).await;
    }
    assert_eq!(pushed.expect("each queue's primary has a replica").len(), 4);
    assert_eq!(sizes, [1, 1, 1, 1]);
}
