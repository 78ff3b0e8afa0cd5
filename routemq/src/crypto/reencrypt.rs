//! `queue-reencrypt`: every job, failed record and batch callback sealed under an older key,
//! sealed again under the current one, so that the older key can be retired.

use serde::Serialize;

use super::{CryptoError, Keyring, reseal};
use crate::batch::store;
use crate::driver::{DriverError, Edit, QueueDriver};

/// What a reencryption did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Reencrypted {
    /// Queued and delayed jobs sealed again.
    pub jobs: u64,
    /// Failed-job records sealed again.
    pub failed: u64,
    /// Batches whose callbacks were sealed again.
    pub batches: u64,
    /// Jobs under an older key that a worker holds, left as they are: run the reencryption again
    /// once they are settled, before retiring the older key.
    pub leased: u64,
    /// Sealed data that cannot be opened (its key is not given, or it was altered), left as it
    /// is.
    pub unreadable: u64,
}

impl Reencrypted {
    /// Whether nothing is left under an older key: every older key can be retired.
    pub fn is_complete(&self) -> bool {
        self.leased == 0 && self.unreadable == 0
    }
}

/// Why a reencryption could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReencryptError {
    /// There is no current key to seal with, or a key does not parse.
    #[error(transparent)]
    Keys(#[from] CryptoError),
    /// The store failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
}

/// Seals everything `driver` stores under an older key again under `keyring`'s current key:
/// queued, delayed and failed jobs (with the jobs their chains carry) and batches' callbacks.
/// Each change is a compare-and-set, so it runs beside live workers; a job a worker holds is
/// counted in [`Reencrypted::leased`] and left for a later run.
pub async fn reencrypt_with(
    driver: &dyn QueueDriver,
    keyring: &Keyring,
) -> Result<Reencrypted, ReencryptError> {
    keyring.current()?;
    let edit = |payload: &str| match reseal(keyring, payload) {
        Ok(Some(payload)) => Edit::Replace(payload),
        Ok(None) => Edit::Keep,
        Err(error) => {
            tracing::warn!(%error, "cannot seal a stored job again");
            Edit::Unreadable
        }
    };
    let rewritten = driver.rewrite_payloads(&edit).await?;
    let mut done = Reencrypted {
        jobs: rewritten.jobs,
        failed: rewritten.failed,
        leased: rewritten.leased,
        unreadable: rewritten.unreadable,
        batches: 0,
    };
    let batches = match driver.batch_list(usize::MAX).await {
        // A custom driver without batches has no callbacks to seal.
        Err(DriverError::Unsupported { .. }) => Vec::new(),
        listed => listed?,
    };
    for batch in batches {
        let (changed, unreadable) = store::rewrite_callbacks(driver, &batch.id, &edit).await?;
        done.batches += u64::from(changed);
        done.unreadable += unreadable;
    }
    Ok(done)
}

/// [`reencrypt_with`] the process's keys ([`keyring`](super::keyring)).
pub async fn reencrypt(driver: &dyn QueueDriver) -> Result<Reencrypted, ReencryptError> {
    reencrypt_with(driver, super::keyring()?).await
}
