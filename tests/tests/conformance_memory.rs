//! The driver conformance suite on the in-memory driver.

use std::sync::Arc;

use routemq::driver::QueueDriver;
use routemq::driver::memory::MemoryDriver;

routemq_tests::conformance_suite!(|| async {
    Some(Arc::new(MemoryDriver::new()) as Arc<dyn QueueDriver>)
});
