//! The driver conformance suite on a real PostgreSQL (`ROUTEMQ_TEST_POSTGRES_URL`).

use std::sync::Arc;

use routemq::driver::QueueDriver;
use routemq::driver::postgres::PostgresDriver;
use routemq_tests::services::postgres_url;

async fn connect() -> Option<Arc<dyn QueueDriver>> {
    let url = postgres_url()?;
    Some(Arc::new(
        PostgresDriver::connect(&url)
            .await
            .expect("connects to the test PostgreSQL"),
    ))
}

routemq_tests::conformance_suite!(connect);
