//! The driver conformance suite on a Redis Cluster (`ROUTEMQ_TEST_REDIS_CLUSTER`: node URLs, or
//! `start` for six loopback nodes of the tests' own), under a test-only key prefix.

use std::sync::Arc;

use routemq::driver::QueueDriver;
use routemq::driver::redis::{KeyLayout, RedisDriver};
use routemq_tests::redis_cluster::cluster_nodes;

async fn connect() -> Option<Arc<dyn QueueDriver>> {
    let nodes = cluster_nodes()?;
    let layout = KeyLayout::new("routemq-test:", false);
    let driver = RedisDriver::connect_cluster(&nodes, layout)
        .await
        .expect("connects to the test cluster");
    assert!(driver.layout().hash_tags(), "a cluster forces hash tags");
    Some(Arc::new(driver))
}

routemq_tests::conformance_suite!(connect);
