//! The driver conformance suite on a real Redis (`ROUTEMQ_TEST_REDIS_URL`), under a test-only key
//! prefix so that nothing touches `routemq:queue:*` data.

use std::sync::Arc;

use routemq::driver::QueueDriver;
use routemq::driver::redis::{KeyLayout, RedisDriver};
use routemq_tests::services::redis_url;

async fn connect(hash_tags: bool) -> Option<Arc<dyn QueueDriver>> {
    let url = redis_url()?;
    let layout = KeyLayout::new("routemq-test:", hash_tags);
    Some(Arc::new(
        RedisDriver::connect(&url, layout)
            .await
            .expect("connects to the test Redis"),
    ))
}

routemq_tests::conformance_suite!(|| connect(false));

mod hash_tagged {
    routemq_tests::conformance_suite!(|| super::connect(true));
}
