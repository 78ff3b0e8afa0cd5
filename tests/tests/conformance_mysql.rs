//! The driver conformance suite on a real MySQL or MariaDB (`ROUTEMQ_TEST_MYSQL_URL`).

use std::sync::Arc;

use routemq::driver::QueueDriver;
use routemq::driver::mysql::MySqlDriver;
use routemq_tests::services::mysql_url;

async fn connect() -> Option<Arc<dyn QueueDriver>> {
    let url = mysql_url()?;
    Some(Arc::new(
        MySqlDriver::connect(&url)
            .await
            .expect("connects to the test MySQL"),
    ))
}

routemq_tests::conformance_suite!(connect);
