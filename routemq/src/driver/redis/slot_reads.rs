//! Reading slots beyond acquiring them: which names have holders, and who holds one.

use std::time::Duration;

use super::{RedisDriver, backend, scripts};
use crate::driver::DriverError;

/// Which slot names have a holder: one `EXISTS` per name, pipelined (on a cluster, sent all at
/// once), since a slot's key expires with its last holder.
pub(super) async fn held_slots(
    driver: &RedisDriver,
    names: &[String],
) -> Result<Vec<bool>, DriverError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for name in names {
        pipe.cmd("EXISTS").arg(driver.layout.slot(name));
    }
    driver
        .con()
        .spread(&pipe)
        .await
        .map_err(backend("read slots"))
}

/// The unexpired holders of `name` and the time each has left, by the server's clock.
pub(super) async fn holders(
    driver: &RedisDriver,
    name: &str,
) -> Result<Vec<(String, Duration)>, DriverError> {
    let flat: Vec<(String, u64)> = scripts::SLOT_HOLDERS
        .key(driver.layout.slot(name))
        .invoke_async(&mut driver.con())
        .await
        .map_err(backend("read slots"))?;
    Ok(flat
        .into_iter()
        .map(|(holder, left)| (holder, Duration::from_micros(left)))
        .collect())
}
