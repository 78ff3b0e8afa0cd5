//! `queue-keygen` and `queue-reencrypt`: the keys of encrypted jobs.

use serde_json::json;

use super::admin::{Summary, driver};
use super::output::print;
use super::{Common, EXIT_INCOMPLETE, Failure, OutputFormat};

pub(super) fn keygen(format: OutputFormat) -> Result<(), Failure> {
    let (key, key_id) = crate::crypto::generate_key();
    print(&Summary(json!({ "key": key, "key_id": key_id })), format)
}

pub(super) async fn reencrypt(common: Common) -> Result<(), Failure> {
    let keyring = crate::crypto::keyring()?;
    let (_, driver) = driver(&common).await?;
    let done = crate::crypto::reencrypt_with(driver.as_ref(), keyring).await?;
    let mut summary = serde_json::to_value(done).unwrap_or_default();
    summary["key_id"] = json!(keyring.current_id());
    print(&Summary(summary), common.format.format)?;
    if done.is_complete() {
        return Ok(());
    }
    let mut left = Vec::new();
    if !done.verified {
        left.push(
            "the store kept changing while it was read: run queue-reencrypt again".to_owned(),
        );
    }
    if done.leased > 0 {
        left.push(format!(
            "{} jobs under an older key are held by workers: run queue-reencrypt again once they are settled",
            done.leased
        ));
    }
    if done.unreadable > 0 {
        left.push(format!(
            "{} sealed values cannot be opened with ROUTEMQ_KEY or ROUTEMQ_PREVIOUS_KEYS (their key is not given, or they were altered) and stay as they are",
            done.unreadable
        ));
    }
    Err(Failure {
        message: format!("{}; keep the older keys until then", left.join("; ")),
        code: EXIT_INCOMPLETE,
    })
}
