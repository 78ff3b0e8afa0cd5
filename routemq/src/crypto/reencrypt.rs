//! `queue-reencrypt`: every job, failed record and batch callback sealed under an older key,
//! sealed again under the current one, so that the older key can be retired.

use serde::Serialize;

use super::{CryptoError, Keyring, reseal};
use crate::batch::store;
use crate::driver::{DriverError, Edit, Editor, QueueDriver};

/// How many times the stored jobs are read at most: until a read finds nothing to rewrite (a job
/// that moved during one read, a callback stored meanwhile, is found by the next).
const READS: usize = 4;

/// What a reencryption did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Reencrypted {
    /// Queued and delayed jobs sealed again.
    pub jobs: u64,
    /// Failed-job records sealed again.
    pub failed: u64,
    /// Batches whose callbacks were sealed again.
    pub batches: u64,
    /// Jobs under an older key that a worker holds (or moved while they were read), left as
    /// they are: run the reencryption again once they are settled, before retiring the older
    /// key.
    pub leased: u64,
    /// Sealed data that cannot be opened (its key is not given, or it was altered), left as it
    /// is; batches whose document cannot be read count here too.
    pub unreadable: u64,
    /// Whether the last read of the store found nothing left to seal again (else the store
    /// kept changing under repeated reads: run it again).
    pub verified: bool,
}

impl Reencrypted {
    /// Whether nothing is left under an older key: every older key can be retired.
    pub fn is_complete(&self) -> bool {
        self.verified && self.leased == 0 && self.unreadable == 0
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

/// Seals the callbacks of every batch under an older key again; returns how many batches
/// changed and how many payloads or documents could not be read.
async fn reseal_batches(
    driver: &dyn QueueDriver,
    edit: Editor<'_>,
) -> Result<(u64, u64), DriverError> {
    let batches = match driver.batch_list(usize::MAX).await {
        // A custom driver without batches has no callbacks to seal.
        Err(DriverError::Unsupported { .. }) => return Ok((0, 0)),
        listed => listed?,
    };
    let (mut changed, mut unreadable) = (0, 0);
    for batch in batches {
        if !store::is_readable(&batch) {
            unreadable += 1;
            continue;
        }
        let (resealed, unopened) = store::rewrite_callbacks(driver, &batch.id, edit).await?;
        changed += u64::from(resealed);
        unreadable += unopened;
    }
    Ok((changed, unreadable))
}

/// Seals everything `driver` stores under an older key again under `keyring`'s current key:
/// batches' callbacks, then queued, delayed and failed jobs (with the jobs their chains carry),
/// read again until a read finds nothing to change. Each change is a compare-and-set, so it runs
/// beside live workers; a job a worker holds is counted in [`Reencrypted::leased`] and left for
/// a later run. One connection per call: run it for each connection that holds encrypted jobs.
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
    let mut done = Reencrypted::default();
    // Batches first: a callback stored from a copy read before its batch was rewritten lands in
    // a queue, where the reads below find it.
    let (batches, unreadable_batches) = reseal_batches(driver, &edit).await?;
    done.batches = batches;
    for _ in 0..READS {
        let read = driver.rewrite_payloads(&edit).await?;
        done.jobs += read.jobs;
        done.failed += read.failed;
        done.leased = read.leased;
        done.unreadable = read.unreadable + unreadable_batches;
        done.verified = read.jobs + read.failed == 0;
        if done.verified {
            break;
        }
    }
    Ok(done)
}

/// [`reencrypt_with`] the process's keys ([`keyring`](super::keyring)).
pub async fn reencrypt(driver: &dyn QueueDriver) -> Result<Reencrypted, ReencryptError> {
    reencrypt_with(driver, super::keyring()?).await
}
