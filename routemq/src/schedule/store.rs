//! What schedules keep in the store of each job's connection, as [slots](crate::driver::slots):
//! a claim per tick (`schedule:{name}:{tick}`, held by the scheduler that fired it, so that
//! exactly one scheduler dispatches each tick) and the last tick fired (`schedule-last:{name}`,
//! whose one holder is that tick in epoch seconds).

use std::time::{Duration, SystemTime};

use crate::driver::{DriverError, QueueDriver};

/// How long the last run is remembered after it (for `Missed::RunOnce` and the list).
const LAST_KEPT: Duration = Duration::from_secs(400 * 24 * 3600);

/// A tick in whole seconds since the epoch (cron ticks fall on whole seconds).
pub(crate) fn epoch_secs(tick: SystemTime) -> u64 {
    tick.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn claim_slot(name: &str, tick: u64) -> String {
    format!("schedule:{name}:{tick}")
}

fn last_slot(name: &str) -> String {
    format!("schedule-last:{name}")
}

/// Claims `tick` of schedule `name` for `holder`; `false` when another scheduler has it.
pub(crate) async fn claim(
    driver: &dyn QueueDriver,
    name: &str,
    tick: u64,
    holder: &str,
    ttl: Duration,
) -> Result<bool, DriverError> {
    let slot = driver
        .acquire_slot(&claim_slot(name, tick), holder, 1, ttl)
        .await?;
    Ok(slot.taken)
}

/// Gives a claimed tick back (its dispatch failed), so that it can be claimed again.
pub(crate) async fn unclaim(driver: &dyn QueueDriver, name: &str, tick: u64, holder: &str) {
    if let Err(error) = driver
        .release_slot(&claim_slot(name, tick), Some(holder))
        .await
    {
        tracing::warn!(schedule = name, tick, %error, "could not give back a tick whose dispatch failed; only this scheduler can claim it again");
    }
}

/// The last tick of schedule `name` that was fired, if it is remembered.
pub(crate) async fn last_run(
    driver: &dyn QueueDriver,
    name: &str,
) -> Result<Option<u64>, DriverError> {
    let holders = driver.slot_holders(&last_slot(name)).await?;
    Ok(holders
        .iter()
        .filter_map(|(holder, _)| holder.parse().ok())
        .max())
}

/// Records `tick` as schedule `name`'s last run (a later tick already recorded stays).
pub(crate) async fn record_run(
    driver: &dyn QueueDriver,
    name: &str,
    tick: u64,
) -> Result<(), DriverError> {
    let slot = last_slot(name);
    driver
        .acquire_slot(&slot, &tick.to_string(), u32::MAX, LAST_KEPT)
        .await?;
    for (holder, _) in driver.slot_holders(&slot).await? {
        if holder.parse::<u64>().is_ok_and(|older| older < tick) {
            driver.release_slot(&slot, Some(&holder)).await?;
        }
    }
    Ok(())
}
