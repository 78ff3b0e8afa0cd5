//! Slots: the one coordination primitive every limit is built on, shared by all processes and
//! hosts on a connection.
//!
//! A slot table is a counting semaphore per name whose holders expire. Taking a slot
//! ([`QueueDriver::acquire_slot`]) succeeds while fewer than `limit` unexpired holders hold the
//! name; a holder keeps its slot until it releases it or its `ttl` passes, so a crashed holder
//! cannot keep one forever. From it:
//!
//! - a lock is a name with limit 1, held by the job's lease for as long as it runs;
//! - a concurrency limit is limit N, held the same way;
//! - a rate of N per period is limit N where every hit takes a slot of its own (a fresh holder)
//!   that is never released and expires after the period: a sliding window, exact over any
//!   window of the period's length;
//! - a flag (a paused queue, a cool-down) is a slot held by a fixed holder, read with a probe
//!   (`ttl` zero).
//!
//! | driver | where | atomic by |
//! |---|---|---|
//! | memory | a map in the process | a mutex |
//! | SQLite | table `queue_slots` | `BEGIN IMMEDIATE` |
//! | PostgreSQL, MySQL | table `queue_slots` | a row lock on the name's head row |
//! | Redis | a sorted set `{prefix}slots::{name}` | a Lua script |
//!
//! [`QueueDriver::acquire_slot`]: super::QueueDriver::acquire_slot

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// The answer to [`acquire_slot`](super::QueueDriver::acquire_slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Whether the holder holds a slot now (for a probe: whether one is free).
    pub taken: bool,
    /// When refused: how long until the soonest-expiring holder's slot expires (it may be released
    /// sooner). `None` when taken.
    pub free_in: Option<Duration>,
}

impl Slot {
    /// A slot taken (or free, for a probe).
    pub const TAKEN: Slot = Slot {
        taken: true,
        free_in: None,
    };

    /// Refused; the soonest holder expires in `free_in`.
    pub fn refused(free_in: Duration) -> Self {
        Self {
            taken: false,
            free_in: Some(free_in),
        }
    }
}

/// Longest slot lifetime a driver stores (ten years, like every other duration).
pub(crate) fn clamped_ttl(ttl: Duration) -> Duration {
    crate::limits::clamp(ttl)
}

/// `ttl` in whole microseconds (at least one for a non-zero ttl), as SQL and Redis store expiries.
#[cfg_attr(not(any(feature = "_sql", feature = "redis")), allow(dead_code))]
pub(crate) fn ttl_micros(ttl: Duration) -> i64 {
    let micros = i64::try_from(clamped_ttl(ttl).as_micros()).unwrap_or(i64::MAX);
    if micros == 0 && !ttl.is_zero() {
        1
    } else {
        micros
    }
}

/// Slots kept in this process (the memory driver's).
#[derive(Debug, Default)]
pub(crate) struct LocalSlots {
    names: HashMap<String, HashMap<String, Instant>>,
}

impl LocalSlots {
    pub(crate) fn acquire(
        &mut self,
        name: &str,
        holder: &str,
        limit: u32,
        ttl: Duration,
        now: Instant,
    ) -> Slot {
        let holders = self.names.entry(name.to_owned()).or_default();
        holders.retain(|_, expires| *expires > now);
        let expires = now + clamped_ttl(ttl);
        if let Some(mine) = holders.get_mut(holder) {
            if !ttl.is_zero() {
                *mine = expires;
            }
            return Slot::TAKEN;
        }
        let held = u32::try_from(holders.len()).unwrap_or(u32::MAX);
        let answer = if held < limit {
            if !ttl.is_zero() {
                holders.insert(holder.to_owned(), expires);
            }
            Slot::TAKEN
        } else {
            let soonest = holders.values().min().copied().unwrap_or(now);
            Slot::refused(soonest.saturating_duration_since(now))
        };
        if holders.is_empty() {
            self.names.remove(name);
        }
        answer
    }

    pub(crate) fn release(&mut self, name: &str, holder: Option<&str>) {
        match holder {
            None => {
                self.names.remove(name);
            }
            Some(holder) => {
                if let Some(holders) = self.names.get_mut(name) {
                    holders.remove(holder);
                    if holders.is_empty() {
                        self.names.remove(name);
                    }
                }
            }
        }
    }

    /// The unexpired holders of `name` and how long each still holds it.
    pub(crate) fn holders(&self, name: &str, now: Instant) -> Vec<(String, Duration)> {
        self.names.get(name).map_or_else(Vec::new, |holders| {
            holders
                .iter()
                .filter(|(_, expires)| **expires > now)
                .map(|(holder, expires)| (holder.clone(), expires.saturating_duration_since(now)))
                .collect()
        })
    }

    /// Deletes expired holders and names with none left; returns how many holders went.
    pub(crate) fn sweep(&mut self, now: Instant) -> u64 {
        let mut swept = 0;
        self.names.retain(|_, holders| {
            let before = holders.len();
            holders.retain(|_, expires| *expires > now);
            swept += (before - holders.len()) as u64;
            !holders.is_empty()
        });
        swept
    }

    pub(crate) fn renew(&mut self, name: &str, holder: &str, ttl: Duration, now: Instant) -> bool {
        match self.names.get_mut(name).and_then(|h| h.get_mut(holder)) {
            Some(expires) if *expires > now => {
                *expires = now + clamped_ttl(ttl);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_count_expire_and_renew() {
        let mut slots = LocalSlots::default();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        assert!(slots.acquire("k", "a", 2, ttl, t0).taken);
        assert!(slots.acquire("k", "b", 2, ttl, t0).taken);
        let refused = slots.acquire("k", "c", 2, ttl, t0 + Duration::from_secs(4));
        assert_eq!(refused, Slot::refused(Duration::from_secs(6)));
        // A holder asking again keeps its slot; a probe takes nothing.
        assert!(slots.acquire("k", "a", 2, ttl, t0).taken);
        assert!(!slots.acquire("k", "probe", 2, Duration::ZERO, t0).taken);
        slots.release("k", Some("a"));
        assert!(slots.acquire("k", "probe", 2, Duration::ZERO, t0).taken);
        assert!(slots.renew("k", "b", ttl, t0 + Duration::from_secs(9)));
        assert!(
            slots
                .acquire("k", "c", 2, ttl, t0 + Duration::from_secs(12))
                .taken
        );
        assert!(!slots.renew("k", "gone", ttl, t0));
        assert_eq!(slots.sweep(t0 + Duration::from_secs(30)), 2);
        assert!(slots.names.is_empty());
        assert!(slots.acquire("k", "a", 1, ttl, t0).taken);
        slots.release("k", None);
        assert!(slots.names.is_empty());
    }
}
