//! Which rows a MySQL / MariaDB claim locks, and how, so that a claim on one queue does not hold
//! a row of another.
//!
//! A locking range scan under InnoDB (`… WHERE queue = ? … ORDER BY … LIMIT n FOR UPDATE SKIP
//! LOCKED`) also locks the first index record past its range until commit, and the row behind
//! it. When the scan runs off the end of its queue (the ready read of an empty queue, which is
//! every idle worker's poll, or of one the claim empties; the scheduled band's read whenever the
//! queue has nothing due later), that record is the next queue's first one in index order: its
//! head job. Another worker's claim on that queue then skips its head, taking a later job first
//! or, with one job ready, none at all until its next poll.
//!
//! So a claim reads its candidates first, without locks and outside its transaction (the same
//! bounded index reads, in claim order, a few more than it wants), then, in its transaction,
//! locks the first `limit` of them by primary key, re-checking that they are still free (`SKIP
//! LOCKED`: rows other workers are claiming are passed over), and more of the rest for any that
//! were taken. Primary-key lookups lock only the rows they read. Only if every candidate was
//! taken by other workers in between does the claim fall back to the locking range scan, which
//! reads on past them (and may then hold the next queue's head for that one claim).
//!
//! A candidate may have been taken by another worker between the two steps. The claim must not
//! keep a lock on such a row: a worker cut off from the server in the middle of its claim keeps
//! its locks until the server notices, and a lock on another worker's job would hold back that
//! worker's heartbeats and acknowledgement until its lease ran out and the job ran twice. So the
//! transaction runs at READ COMMITTED (see `mysql::BEGIN`), under which InnoDB lets go of a row
//! that fails the `WHERE` as soon as it has read it, and reads the candidates as a range of the
//! primary key ([`push_id_range`]): a constant lookup keeps its lock whatever the isolation.

use sqlx::mysql::MySqlRow;
use sqlx::{MySql, MySqlConnection, QueryBuilder, Row};

use super::bands_sql as bands;
use super::mysql::NOW;

/// A claimed row: `(id, payload, attempts, unstarted)`.
pub(super) type Candidate = (i64, String, i32, i64);

/// The claim's order: what the table has.
#[derive(Clone, Copy, Debug)]
pub(super) enum Order {
    /// The ready band by priority, then id, merged with the scheduled band's due rows by due
    /// time (see `bands_sql`).
    Banded,
    /// One read of ready and delayed rows alike, by priority, then id.
    Priority,
    /// By id (no priority column).
    Id,
}

/// How many candidates a claim of `limit` reads: a few more, for rows other workers take first.
fn window(limit: i64) -> i64 {
    limit.saturating_mul(2).max(limit.saturating_add(4))
}

/// Step one: the ids of up to a window's worth of `queue`'s claimable jobs, in claim order, read
/// without locks. Run it on a connection outside any transaction: it then keeps no snapshot,
/// which MariaDB 11.6+ (`innodb_snapshot_isolation`) would hold the locking read after it to.
pub(super) async fn candidate_ids(
    conn: &mut MySqlConnection,
    queue: &str,
    limit: i64,
    order: Order,
) -> Result<Vec<i64>, sqlx::Error> {
    read(conn, order, "id", "", queue, window(limit))
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect()
}

/// Step two, inside the claim's transaction `tx`: locks up to `limit` of the candidate `ids`
/// that are still claimable, taking them in claim order (the first `limit`, then more of the
/// rest for those other workers took meanwhile). `unstarted` is the column (or constant) read
/// as the unstarted count. If every candidate was taken and there may be more jobs, reads on
/// past them with the locking range scan.
pub(super) async fn lock(
    tx: &mut MySqlConnection,
    queue: &str,
    limit: i64,
    unstarted: &str,
    order: Order,
    ids: &[i64],
) -> Result<Vec<Candidate>, sqlx::Error> {
    let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut claimed: Vec<Candidate> = Vec::new();
    let mut next = 0;
    while claimed.len() < wanted && next < ids.len() {
        let take = &ids[next..ids.len().min(next + wanted - claimed.len())];
        next += take.len();
        let mut lock = QueryBuilder::<MySql>::new(format!(
            "SELECT id, payload, attempts, {unstarted} FROM queue_jobs FORCE INDEX (PRIMARY)
             WHERE reserved_at IS NULL AND available_at <= {NOW} AND "
        ));
        push_id_range(&mut lock, take);
        lock.push(" FOR UPDATE SKIP LOCKED");
        for row in lock.build().fetch_all(&mut *tx).await? {
            claimed.push(candidate(&row)?);
        }
    }
    if claimed.is_empty() && i64::try_from(ids.len()).unwrap_or(i64::MAX) >= window(limit) {
        // Every candidate went to other workers meanwhile: read on past them, locking.
        let columns = format!("id, payload, attempts, {unstarted}");
        return read(tx, order, &columns, " FOR UPDATE SKIP LOCKED", queue, limit)
            .await?
            .iter()
            .map(candidate)
            .collect();
    }
    // In the candidates' (claim) order.
    claimed.sort_by_key(|(id, ..)| ids.iter().position(|candidate| candidate == id));
    Ok(claimed)
}

/// A claim's bounded read of `columns` of `queue`'s claimable rows in claim order, at most
/// `limit`, with `locking` on each index read. Banded: the two bands' reads, merged.
async fn read(
    tx: &mut MySqlConnection,
    order: Order,
    columns: &str,
    locking: &str,
    queue: &str,
    limit: i64,
) -> Result<Vec<MySqlRow>, sqlx::Error> {
    let sort = match order {
        Order::Banded => {
            let statement = format!(
                "(SELECT {columns}, CAST(priority AS SIGNED) AS p FROM queue_jobs
                  WHERE queue = ? AND reserved_at IS NULL AND {ready} AND available_at <= {NOW}
                  ORDER BY priority DESC, id LIMIT ?{locking})
                 UNION ALL
                 (SELECT {columns}, CAST(-1 - priority AS SIGNED) FROM queue_jobs
                  WHERE queue = ? AND {due} <= {NOW} AND reserved_at IS NULL
                  ORDER BY {due} LIMIT ?{locking})
                 ORDER BY p DESC, id LIMIT ?",
                ready = bands::READY,
                due = bands::DUE,
            );
            return sqlx::query(&statement)
                .bind(queue)
                .bind(limit)
                .bind(queue)
                .bind(limit)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await;
        }
        Order::Priority => "priority DESC, id",
        Order::Id => "id",
    };
    sqlx::query(&format!(
        "SELECT {columns} FROM queue_jobs
         WHERE queue = ? AND reserved_at IS NULL AND available_at <= {NOW}
         ORDER BY {sort} LIMIT ?{locking}"
    ))
    .bind(queue)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await
}

/// Pushes a condition that `id` is one of `ids` (at least one, no repeats), written so that InnoDB
/// reads them as ranges of the primary key: a query that selects `FORCE INDEX (PRIMARY)` and
/// locks at READ COMMITTED then keeps no lock on a row that fails the rest of its `WHERE`. One
/// id is `id >= ? AND id <= ?`: `id = ?`, `id IN (?)` and even `id BETWEEN ? AND ?` become a
/// constant lookup, whose lock lasts until the transaction ends (tested on MariaDB 10.11 by
/// `tests/tests/mysql_stalled_claims.rs`).
pub(super) fn push_id_range(query: &mut QueryBuilder<'_, MySql>, ids: &[i64]) {
    if let [id] = ids {
        query
            .push("id >= ")
            .push_bind(*id)
            .push(" AND id <= ")
            .push_bind(*id);
        return;
    }
    query.push("id IN (");
    let mut list = query.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    query.push(")");
}

fn candidate(row: &MySqlRow) -> Result<Candidate, sqlx::Error> {
    Ok((
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
    ))
}
