//! Two job types with the same tag: the registry refuses to build, naming both, and so does a worker.
//! (Its own test binary: the duplicate would poison every other test's registry.)

use std::sync::Arc;

use routemq::driver::memory::MemoryDriver;
use routemq::prelude::*;
use routemq::{Registry, RegistryError};

#[derive(Debug)]
#[job(name = "dup.SendEmail")]
struct SendEmail;

impl Job for SendEmail {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

mod legacy {
    use routemq::prelude::*;

    #[derive(Debug)]
    #[job(name = "dup.SendEmail")]
    pub(crate) struct OldSendEmail;

    impl Job for OldSendEmail {
        async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
            Ok(())
        }
    }
}

#[test]
fn duplicate_tags_name_both_types_and_their_locations() {
    let error = Registry::build().expect_err("duplicate");
    let RegistryError::DuplicateJobName {
        name,
        first,
        second,
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(*name, "dup.SendEmail");
    let mut types = [first.type_name, second.type_name];
    types.sort_unstable();
    assert_eq!(types, ["OldSendEmail", "SendEmail"]);
    let message = error.to_string();
    assert!(
        message.contains("registry_duplicates::SendEmail (tests/tests/registry_duplicates.rs:12)"),
        "{message}"
    );
    assert!(
        message.contains(
            "registry_duplicates::legacy::OldSendEmail (tests/tests/registry_duplicates.rs:25)"
        ),
        "{message}"
    );
    assert!(
        message.contains("give one of them a unique `#[job(name = \"...\")]`"),
        "{message}"
    );
    assert!(
        Registry::global().is_err(),
        "the cached registry is refused too"
    );
}

#[tokio::test]
async fn a_worker_refuses_to_start() {
    let worker = Worker::new(
        Arc::new(MemoryDriver::new()),
        "memory",
        WorkerOptions::default(),
    );
    let error = worker.run().await.expect_err("refuses");
    assert!(error.to_string().contains("dup.SendEmail"), "{error}");
}
