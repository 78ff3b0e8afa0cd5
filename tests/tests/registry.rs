//! The registry: what `#[job]` registers, lookups, and the messages for unknown tags.

use routemq::prelude::*;
use routemq::{Registry, RegistryError};
// Links the crate that defines the conformance and interop jobs: without a `use`, a dependency
// that nothing names is not linked, and its jobs are not registered (the pitfall the docs warn of).
use routemq_tests as _;

mod jobs {
    use routemq::prelude::*;

    /// Tagged by its module path.
    #[derive(Debug)]
    #[job]
    pub(crate) struct DefaultTagged;

    impl Job for DefaultTagged {
        async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
            Ok(())
        }
    }
}

#[derive(Debug)]
#[job(name = "billing.ChargeCard", queue = "billing", max_tries = 7)]
struct Renamed {
    amount: u64,
}

impl Job for Renamed {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        assert!(self.amount > 0);
        Ok(())
    }
}

#[test]
fn default_tag_is_the_module_path_written_routemq_style() {
    assert_eq!(jobs::DefaultTagged::NAME, "registry.jobs.DefaultTagged");
    assert_eq!(Renamed::NAME, "billing.ChargeCard");
}

#[test]
fn names_lists_every_linked_job() {
    let registry = Registry::global().expect("no duplicates");
    let names = registry.names();
    for expected in [
        "billing.ChargeCard",
        "registry.jobs.DefaultTagged",
        "conformance.Record",
        "interop_jobs.EchoJob",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
    assert_eq!(registry.len(), names.len());
    registry
        .expect_registered(&["billing.ChargeCard", "interop_jobs.FailJob"])
        .expect("registered");
}

#[test]
fn registration_records_options_and_where_the_type_is() {
    let registration = Registry::global()
        .expect("registry")
        .get("billing.ChargeCard")
        .expect("registered");
    assert_eq!(registration.options().max_tries, 7);
    assert_eq!(registration.options().queue, "billing");
    let site = registration.site();
    assert_eq!((site.type_name, site.module_path), ("Renamed", "registry"));
    assert!(site.file.ends_with("registry.rs"), "{}", site.file);
    assert!(site.line > 20 && site.line < 30, "{}", site.line);
}

#[test]
fn unknown_tags_say_how_to_link_the_crate() {
    let registry = Registry::global().expect("registry");
    let error = registry.get("shop.ShipOrder").expect_err("unknown");
    assert!(matches!(error, RegistryError::UnknownJob { .. }));
    let message = error.to_string();
    assert!(
        message.starts_with("job `shop.ShipOrder` is not registered in this binary"),
        "{message}"
    );
    assert!(
        message.contains("add `use <that_crate> as _;`"),
        "{message}"
    );
    assert!(
        message.contains("`billing.ChargeCard`"),
        "lists what is registered: {message}"
    );
    assert!(
        registry
            .expect_registered(&["billing.ChargeCard", "shop.ShipOrder"])
            .is_err()
    );
}

#[test]
fn decoding_checks_the_tag_before_the_data() {
    let registry = Registry::global().expect("registry");
    // `data` would not fit any type, but the unknown tag is reported first.
    let error = registry
        .decode(r#"{"class": "shop.ShipOrder", "data": {"amount": "x"}}"#)
        .err()
        .expect("fails");
    assert!(error.to_string().contains("not registered"), "{error}");
    let error = registry
        .decode(r#"{"class": "billing.ChargeCard", "data": {"amount": "x"}}"#)
        .err()
        .expect("fails");
    let message = error.to_string();
    assert!(
        message.starts_with("payload of job `billing.ChargeCard` does not decode into Renamed"),
        "{message}"
    );
    assert!(
        message.contains("invalid type: string \"x\", expected u64"),
        "{message}"
    );
    assert!(
        registry
            .decode(r#"{"class": "billing.ChargeCard", "data": {"amount": 5}}"#)
            .is_ok()
    );
}
