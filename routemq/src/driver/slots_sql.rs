//! [Slots](super::slots) in SQL: table `queue_slots` (`name`, `holder`, `expires_at`; made by
//! `migrate` with the other tables), one row per holder (`expires_at` in microseconds since the
//! epoch). PostgreSQL and MySQL serialise the holders of one name on a head row (`holder = ''`)
//! locked `FOR UPDATE`, and read the clock of the server, so hosts with drifting clocks agree;
//! SQLite takes its write lock first (`BEGIN IMMEDIATE`). Each acquisition is one transaction
//! that sqlx rolls back if its caller is cancelled half-way. The head row is only a lock: a sweep
//! ([`QueueDriver::sweep_slots`](super::QueueDriver::sweep_slots)) deletes it with the expired
//! holders once a name has none left, and an acquisition that finds it gone makes it again.

use std::borrow::Cow;
use std::time::Duration;

#[cfg(any(feature = "postgres", feature = "mysql"))]
use super::DriverError;
use super::slots::{Slot, ttl_micros};

/// Longest name or holder stored as it is, in bytes (MySQL's `VARBINARY(191)`).
const MAX_KEY: usize = 191;

/// How many times an acquisition makes a head row a sweep deleted under it before giving up.
#[cfg(any(feature = "postgres", feature = "mysql"))]
const HEAD_TRIES: usize = 5;

/// `key` as stored: itself when it fits the column, else its first 150 bytes (at a character
/// boundary) and a 64-bit FNV-1a hash of the whole in hex.
pub(crate) fn column_key(key: &str) -> Cow<'_, str> {
    if key.len() <= MAX_KEY {
        return Cow::Borrowed(key);
    }
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut end = 150;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}#{hash:016x}", &key[..end]))
}

/// The answer once the holders are counted: `held` unexpired holders other than the caller,
/// whether the caller holds one, and when the soonest expires (`soonest - now`, microseconds).
fn answer(held: i64, mine: bool, limit: u32, free_in_micros: Option<i64>) -> Slot {
    if mine || held < i64::from(limit) {
        Slot::TAKEN
    } else {
        let micros = u64::try_from(free_in_micros.unwrap_or(0)).unwrap_or(0);
        Slot::refused(Duration::from_micros(micros))
    }
}

/// [`held`](super::QueueDriver::held_slots)'s answer for `names`, from the stored names (column
/// keys) that have an unexpired holder.
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "sqlite")),
    allow(dead_code)
)]
fn held_answer(names: &[String], held: &[String]) -> Vec<bool> {
    let held: std::collections::HashSet<&str> = held.iter().map(String::as_str).collect();
    names
        .iter()
        .map(|name| held.contains(&*column_key(name)))
        .collect()
}

/// Holders with the microseconds each has left, as durations.
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "sqlite")),
    allow(dead_code)
)]
fn remaining(rows: Vec<(String, i64)>) -> Vec<(String, Duration)> {
    rows.into_iter()
        .map(|(holder, left)| {
            let left = Duration::from_micros(u64::try_from(left).unwrap_or(0));
            (holder, left)
        })
        .collect()
}

/// `names` as stored, for an `IN` list.
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "sqlite")),
    allow(dead_code)
)]
fn column_keys(names: &[String]) -> Vec<String> {
    names.iter().map(|n| column_key(n).into_owned()).collect()
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn backend(operation: &'static str) -> impl Fn(sqlx::Error) -> DriverError {
    move |error| DriverError::backend(operation, error)
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn head_vanished() -> DriverError {
    DriverError::backend(
        "acquire slot",
        "the slot's head row was deleted under every try",
    )
}

#[cfg(feature = "postgres")]
pub(crate) mod postgres {
    use super::*;
    use sqlx::PgPool;

    const NOW: &str = "(extract(epoch from clock_timestamp()) * 1000000)::bigint";

    pub(crate) async fn acquire(
        pool: &PgPool,
        name: &str,
        holder: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<Slot, DriverError> {
        let (name, holder) = (column_key(name), column_key(holder));
        if ttl.is_zero() {
            return probe(pool, &name, &holder, limit).await;
        }
        // READ COMMITTED whatever the pool's default: the count below must see every holder
        // committed before the head row's lock was granted.
        let mut tx = pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(backend("acquire slot"))?;
        let mut locked = false;
        for _ in 0..HEAD_TRIES {
            sqlx::query(
                "INSERT INTO queue_slots (name, holder, expires_at) VALUES ($1, '', 0)
                 ON CONFLICT (name, holder) DO NOTHING",
            )
            .bind(&*name)
            .execute(&mut *tx)
            .await
            .map_err(backend("acquire slot"))?;
            locked =
                sqlx::query("SELECT 1 FROM queue_slots WHERE name = $1 AND holder = '' FOR UPDATE")
                    .bind(&*name)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(backend("acquire slot"))?
                    .is_some();
            if locked {
                break;
            }
        }
        if !locked {
            return Err(head_vanished());
        }
        // The head row is locked: this statement's snapshot sees every earlier holder.
        let (held, mine, free_in): (i64, bool, Option<i64>) = sqlx::query_as(&format!(
            "WITH now AS (SELECT {NOW} AS t),
             live AS (SELECT holder, expires_at FROM queue_slots, now
                      WHERE name = $1 AND holder <> '' AND expires_at > now.t),
             gone AS (DELETE FROM queue_slots USING now
                      WHERE name = $1 AND holder <> '' AND holder <> $2 AND expires_at <= now.t),
             state AS (SELECT count(*) FILTER (WHERE holder <> $2) AS held,
                              coalesce(bool_or(holder = $2), false) AS mine,
                              min(expires_at) AS soonest FROM live),
             taken AS (INSERT INTO queue_slots (name, holder, expires_at)
                       SELECT $1, $2, now.t + $4 FROM state, now
                       WHERE $4 > 0 AND (state.mine OR state.held < $3)
                       ON CONFLICT (name, holder) DO UPDATE SET expires_at = EXCLUDED.expires_at)
             SELECT state.held, state.mine, state.soonest - now.t FROM state, now"
        ))
        .bind(&*name)
        .bind(&*holder)
        .bind(i64::from(limit))
        .bind(ttl_micros(ttl))
        .fetch_one(&mut *tx)
        .await
        .map_err(backend("acquire slot"))?;
        tx.commit().await.map_err(backend("acquire slot"))?;
        Ok(answer(held, mine, limit, free_in))
    }

    /// Whether a slot is free, in one read: no lock, no row written (the answer may be stale by
    /// the time it arrives, as any probe's is).
    async fn probe(
        pool: &PgPool,
        name: &str,
        holder: &str,
        limit: u32,
    ) -> Result<Slot, DriverError> {
        let (held, mine, free_in): (i64, bool, Option<i64>) = sqlx::query_as(&format!(
            "SELECT count(*) FILTER (WHERE holder <> $2), coalesce(bool_or(holder = $2), false),
                    min(expires_at) - {NOW}
             FROM queue_slots WHERE name = $1 AND holder <> '' AND expires_at > {NOW}"
        ))
        .bind(name)
        .bind(holder)
        .fetch_one(pool)
        .await
        .map_err(backend("acquire slot"))?;
        Ok(answer(held, mine, limit, free_in))
    }

    pub(crate) async fn release(
        pool: &PgPool,
        name: &str,
        holder: Option<&str>,
    ) -> Result<(), DriverError> {
        let holder = holder.map(column_key);
        sqlx::query(
            "DELETE FROM queue_slots WHERE name = $1 AND holder <> ''
             AND ($2::varchar IS NULL OR holder = $2)",
        )
        .bind(&*column_key(name))
        .bind(holder.as_deref())
        .execute(pool)
        .await
        .map_err(backend("release slot"))?;
        Ok(())
    }

    pub(crate) async fn renew(
        pool: &PgPool,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, DriverError> {
        let renewed = sqlx::query(&format!(
            "UPDATE queue_slots SET expires_at = {NOW} + $3
             WHERE name = $1 AND holder = $2 AND holder <> '' AND expires_at > {NOW}"
        ))
        .bind(&*column_key(name))
        .bind(&*column_key(holder))
        .bind(ttl_micros(ttl))
        .execute(pool)
        .await
        .map_err(backend("renew slot"))?;
        Ok(renewed.rows_affected() > 0)
    }

    pub(crate) async fn holders(
        pool: &PgPool,
        name: &str,
    ) -> Result<Vec<(String, Duration)>, DriverError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT holder, expires_at - {NOW} FROM queue_slots
             WHERE name = $1 AND holder <> '' AND expires_at > {NOW}"
        ))
        .bind(&*column_key(name))
        .fetch_all(pool)
        .await
        .map_err(backend("read slots"))?;
        Ok(remaining(rows))
    }

    pub(crate) async fn held(pool: &PgPool, names: &[String]) -> Result<Vec<bool>, DriverError> {
        let held: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT DISTINCT name FROM queue_slots
             WHERE name = ANY($1) AND holder <> '' AND expires_at > {NOW}"
        ))
        .bind(column_keys(names))
        .fetch_all(pool)
        .await
        .map_err(backend("read slots"))?;
        Ok(held_answer(names, &held))
    }

    /// Deletes expired holders, then the head rows of names with no holder left.
    pub(crate) async fn sweep(pool: &PgPool) -> Result<u64, DriverError> {
        let expired = sqlx::query(&format!(
            "DELETE FROM queue_slots WHERE holder <> '' AND expires_at <= {NOW}"
        ))
        .execute(pool)
        .await
        .map_err(backend("sweep slots"))?;
        sqlx::query(
            "DELETE FROM queue_slots h WHERE h.holder = ''
             AND NOT EXISTS (SELECT 1 FROM queue_slots s WHERE s.name = h.name AND s.holder <> '')",
        )
        .execute(pool)
        .await
        .map_err(backend("sweep slots"))?;
        Ok(expired.rows_affected())
    }
}

#[cfg(feature = "mysql")]
pub(crate) mod mysql {
    use super::*;
    use sqlx::MySqlPool;

    const NOW: &str = "CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)";

    /// Whether MySQL gave up on a transaction that may simply be tried again (a deadlock, a lock
    /// wait timeout).
    pub(crate) fn is_deadlock(error: &sqlx::Error) -> bool {
        let sqlx::Error::Database(db) = error else {
            return false;
        };
        let number = db
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map(sqlx::mysql::MySqlDatabaseError::number);
        matches!(number, Some(1213 | 1205)) || db.code().as_deref() == Some("40001")
    }

    /// Runs a statement on slots, again after a deadlock or a lock wait timeout (its writes
    /// meet an acquisition's range locks under REPEATABLE READ), up to [`HEAD_TRIES`] times.
    async fn retrying<T, F, Fut>(
        operation: &'static str,
        mut statement: F,
    ) -> Result<T, DriverError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        let mut tries = 0;
        loop {
            match statement().await {
                Err(error) if is_deadlock(&error) && tries + 1 < HEAD_TRIES => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(1..=20))).await;
                }
                result => return result.map_err(backend(operation)),
            }
        }
    }

    pub(crate) async fn acquire(
        pool: &MySqlPool,
        name: &str,
        holder: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<Slot, DriverError> {
        let (name, holder) = (column_key(name), column_key(holder));
        if ttl.is_zero() {
            return probe(pool, &name, &holder, limit).await;
        }
        let mut tries = 0;
        loop {
            match acquire_once(pool, &name, &holder, limit, ttl).await {
                Err(Some(error)) if is_deadlock(&error) && tries < 3 => tries += 1,
                Err(Some(error)) => return Err(DriverError::backend("acquire slot", error)),
                Err(None) => return Err(head_vanished()),
                Ok(slot) => return Ok(slot),
            }
        }
    }

    /// Whether a slot is free, in one read: no lock, no row written.
    async fn probe(
        pool: &MySqlPool,
        name: &str,
        holder: &str,
        limit: u32,
    ) -> Result<Slot, DriverError> {
        let (held, mine, free_in): (i64, i64, Option<i64>) = sqlx::query_as(&format!(
            "SELECT CAST(COALESCE(SUM(holder <> ?), 0) AS SIGNED), CAST(COALESCE(SUM(holder = ?), 0) AS SIGNED),
                    MIN(expires_at) - {NOW}
             FROM queue_slots WHERE name = ? AND holder <> '' AND expires_at > {NOW}"
        ))
        .bind(holder)
        .bind(holder)
        .bind(name)
        .fetch_one(pool)
        .await
        .map_err(backend("acquire slot"))?;
        Ok(answer(held, mine > 0, limit, free_in))
    }

    /// One transaction; `Err(None)` when the head row kept vanishing.
    async fn acquire_once(
        pool: &MySqlPool,
        name: &str,
        holder: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<Slot, Option<sqlx::Error>> {
        let lock_head =
            format!("SELECT {NOW} FROM queue_slots WHERE name = ? AND holder = '' FOR UPDATE");
        let mut tx = pool.begin().await?;
        let mut now: Option<i64> = None;
        for attempt in 0..HEAD_TRIES {
            now = sqlx::query_scalar(&lock_head)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            if now.is_some() || attempt + 1 == HEAD_TRIES {
                break;
            }
            // The name's first use (or its head was swept): the head row is made outside the
            // transaction (an insert inside it would take a shared lock that two callers could
            // not both upgrade).
            tx.rollback().await?;
            sqlx::query(
                "INSERT IGNORE INTO queue_slots (name, holder, expires_at) VALUES (?, '', 0)",
            )
            .bind(name)
            .execute(pool)
            .await?;
            tx = pool.begin().await?;
        }
        let now = now.ok_or(None)?;
        sqlx::query(
            "DELETE FROM queue_slots WHERE name = ? AND holder <> '' AND holder <> ? AND expires_at <= ?",
        )
        .bind(name)
        .bind(holder)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let (held, mine, soonest): (i64, i64, Option<i64>) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(holder <> ?), 0) AS SIGNED), CAST(COALESCE(SUM(holder = ?), 0) AS SIGNED),
                    MIN(expires_at)
             FROM queue_slots WHERE name = ? AND holder <> '' AND expires_at > ? FOR UPDATE",
        )
        .bind(holder)
        .bind(holder)
        .bind(name)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let slot = answer(held, mine > 0, limit, soonest.map(|s| s - now));
        if slot.taken && !ttl.is_zero() {
            sqlx::query(
                "INSERT INTO queue_slots (name, holder, expires_at) VALUES (?, ?, ?)
                 ON DUPLICATE KEY UPDATE expires_at = VALUES(expires_at)",
            )
            .bind(name)
            .bind(holder)
            .bind(now.saturating_add(ttl_micros(ttl)))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(slot)
    }

    pub(crate) async fn release(
        pool: &MySqlPool,
        name: &str,
        holder: Option<&str>,
    ) -> Result<(), DriverError> {
        let holder = holder.map(column_key);
        let name = column_key(name);
        retrying("release slot", || {
            sqlx::query(
                "DELETE FROM queue_slots WHERE name = ? AND holder <> '' AND (? IS NULL OR holder = ?)",
            )
            .bind(&*name)
            .bind(holder.as_deref())
            .bind(holder.as_deref())
            .execute(pool)
        })
        .await?;
        Ok(())
    }

    pub(crate) async fn renew(
        pool: &MySqlPool,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, DriverError> {
        let statement = format!(
            "UPDATE queue_slots SET expires_at = {NOW} + ?
             WHERE name = ? AND holder = ? AND holder <> '' AND expires_at > {NOW}"
        );
        let (name, holder) = (column_key(name), column_key(holder));
        let renewed = retrying("renew slot", || {
            sqlx::query(&statement)
                .bind(ttl_micros(ttl))
                .bind(&*name)
                .bind(&*holder)
                .execute(pool)
        })
        .await?;
        Ok(renewed.rows_affected() > 0)
    }

    pub(crate) async fn held(pool: &MySqlPool, names: &[String]) -> Result<Vec<bool>, DriverError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = sqlx::QueryBuilder::new(format!(
            "SELECT DISTINCT name FROM queue_slots
             WHERE holder <> '' AND expires_at > {NOW} AND name IN ("
        ));
        let mut list = query.separated(", ");
        for key in column_keys(names) {
            list.push_bind(key);
        }
        query.push(")");
        let held: Vec<Vec<u8>> = query
            .build_query_scalar()
            .fetch_all(pool)
            .await
            .map_err(backend("read slots"))?;
        let held: Vec<String> = held
            .into_iter()
            .map(|name| String::from_utf8_lossy(&name).into_owned())
            .collect();
        Ok(held_answer(names, &held))
    }

    pub(crate) async fn holders(
        pool: &MySqlPool,
        name: &str,
    ) -> Result<Vec<(String, Duration)>, DriverError> {
        let rows: Vec<(Vec<u8>, i64)> = sqlx::query_as(&format!(
            "SELECT holder, expires_at - {NOW} FROM queue_slots
             WHERE name = ? AND holder <> '' AND expires_at > {NOW}"
        ))
        .bind(&*column_key(name))
        .fetch_all(pool)
        .await
        .map_err(backend("read slots"))?;
        Ok(remaining(
            rows.into_iter()
                .map(|(holder, left)| (String::from_utf8_lossy(&holder).into_owned(), left))
                .collect(),
        ))
    }

    /// Deletes expired holders, then the head rows of names with no holder left.
    pub(crate) async fn sweep(pool: &MySqlPool) -> Result<u64, DriverError> {
        let expired_holders =
            format!("DELETE FROM queue_slots WHERE expires_at <= {NOW} AND holder <> ''");
        let expired = retrying("sweep slots", || {
            sqlx::query(&expired_holders).execute(pool)
        })
        .await?;
        retrying("sweep slots", || {
            sqlx::query(
                "DELETE h FROM queue_slots h LEFT JOIN queue_slots s ON s.name = h.name AND s.holder <> ''
                 WHERE h.holder = '' AND s.name IS NULL",
            )
            .execute(pool)
        })
        .await?;
        Ok(expired.rows_affected())
    }
}

#[cfg(feature = "sqlite")]
pub(crate) mod sqlite {
    use super::*;
    use sqlx::SqlitePool;
    use std::time::SystemTime;

    /// The clock SQLite slots use (this host's: one file is one host's).
    pub(crate) fn now() -> i64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    }

    /// One try: the write lock first, so that no other process counts between our count and
    /// our insert. A cancelled caller's transaction is rolled back by sqlx.
    pub(crate) async fn acquire_once(
        pool: &SqlitePool,
        name: &str,
        holder: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<Slot, sqlx::Error> {
        if ttl.is_zero() {
            // A probe reads without the write lock.
            let now = now();
            let (held, mine, soonest) = count(pool, name, holder, now).await?;
            return Ok(answer(held, mine > 0, limit, soonest.map(|s| s - now)));
        }
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let now = now();
        sqlx::query(
            "DELETE FROM queue_slots WHERE name = ?1 AND holder <> ?2 AND expires_at <= ?3",
        )
        .bind(name)
        .bind(holder)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let (held, mine, soonest) = count(&mut *tx, name, holder, now).await?;
        let slot = answer(held, mine > 0, limit, soonest.map(|s| s - now));
        if slot.taken && !ttl.is_zero() {
            sqlx::query(
                "INSERT INTO queue_slots (name, holder, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name, holder) DO UPDATE SET expires_at = excluded.expires_at",
            )
            .bind(name)
            .bind(holder)
            .bind(now.saturating_add(ttl_micros(ttl)))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(slot)
    }

    /// Unexpired holders of `name` other than `holder`, whether `holder` is one, and the soonest
    /// expiry.
    async fn count<'e, E>(
        executor: E,
        name: &str,
        holder: &str,
        now: i64,
    ) -> Result<(i64, i64, Option<i64>), sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
    {
        sqlx::query_as(
            "SELECT COALESCE(SUM(holder <> ?2), 0), COALESCE(SUM(holder = ?2), 0), MIN(expires_at)
             FROM queue_slots WHERE name = ?1 AND expires_at > ?3",
        )
        .bind(name)
        .bind(holder)
        .bind(now)
        .fetch_one(executor)
        .await
    }

    /// Gives back a holder's slot (`?2`), or every slot of the name (`?2` NULL).
    pub(crate) const RELEASE: &str =
        "DELETE FROM queue_slots WHERE name = ?1 AND (?2 IS NULL OR holder = ?2)";

    /// Extends an unexpired slot: `?3` now, `?4` the ttl.
    pub(crate) const RENEW: &str = "UPDATE queue_slots SET expires_at = ?3 + ?4
         WHERE name = ?1 AND holder = ?2 AND expires_at > ?3";

    /// Deletes expired holders (`?1` now); SQLite has no head rows.
    pub(crate) const SWEEP: &str = "DELETE FROM queue_slots WHERE expires_at <= ?1";

    pub(crate) async fn holders(
        pool: &SqlitePool,
        name: &str,
    ) -> Result<Vec<(String, Duration)>, super::super::DriverError> {
        let now = now();
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT holder, expires_at - ?2 FROM queue_slots
             WHERE name = ?1 AND holder <> '' AND expires_at > ?2",
        )
        .bind(&*column_key(name))
        .bind(now)
        .fetch_all(pool)
        .await
        .map_err(|error| super::super::DriverError::backend("read slots", error))?;
        Ok(remaining(rows))
    }

    pub(crate) async fn held(
        pool: &SqlitePool,
        names: &[String],
    ) -> Result<Vec<bool>, super::super::DriverError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = sqlx::QueryBuilder::new(
            "SELECT DISTINCT name FROM queue_slots WHERE holder <> '' AND expires_at > ",
        );
        query.push_bind(now()).push(" AND name IN (");
        let mut list = query.separated(", ");
        for key in column_keys(names) {
            list.push_bind(key);
        }
        query.push(")");
        let held: Vec<String> = query
            .build_query_scalar()
            .fetch_all(pool)
            .await
            .map_err(|error| super::super::DriverError::backend("read slots", error))?;
        Ok(held_answer(names, &held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_keep_their_start_and_a_hash() {
        assert_eq!(column_key("emails"), "emails");
        let long = "k".repeat(300);
        let stored = column_key(&long);
        assert_eq!(stored.len(), 150 + 1 + 16);
        assert!(stored.starts_with(&"k".repeat(150)));
        assert_ne!(column_key(&format!("{long}x")), stored);
        // Cut at a character boundary, within the column's bytes.
        let wide = "é".repeat(100);
        let stored = column_key(&wide);
        assert!(stored.len() <= MAX_KEY && stored.starts_with(&"é".repeat(75)));
    }

    #[test]
    fn a_holder_keeps_its_slot_and_refusals_say_when() {
        assert_eq!(answer(3, true, 1, Some(5)), Slot::TAKEN);
        assert_eq!(answer(0, false, 1, None), Slot::TAKEN);
        assert_eq!(
            answer(2, false, 2, Some(1_500)),
            Slot::refused(Duration::from_micros(1_500))
        );
    }
}
