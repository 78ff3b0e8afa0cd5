//! Delayed jobs kept apart from ready ones in the SQL drivers' `queue_jobs`, so that a claim
//! reads a bounded number of index entries however many jobs wait for later.
//!
//! The `priority` column holds a row's band as well as its priority `p` (0 to 255): the ready
//! band stores `p`, the scheduled band `-1 - p`. routemq writes a job dispatched or released with
//! a delay into the scheduled band. A claim is two bounded index reads, merged: the ready band in
//! priority then id order (as before), and the scheduled band's due rows in due-time order (an
//! index on the due time of scheduled rows only); the merged rows are taken by priority, then id,
//! and a claimed row gets its priority back in the ready form. Without the split, a claim read
//! past every job not due yet: with a million delayed jobs ahead of the ready ones, a claim cost
//! tens of milliseconds.
//!
//! Due delayed jobs are read earliest-due first: when more fall due at once than a claim takes,
//! a later-due job of a higher priority waits for earlier-due ones of lower priority.
//!
//! Rows written without the split (by RouteMQ Python, by an earlier routemq, or by a
//! transactional push of jobs without a priority, which never names the column) sit in the ready
//! band with a future due time: the ready read passes over them as before, and they run when due.
//! RouteMQ Python's workers claim by due time and id and ignore the band, so they run scheduled
//! rows when due too. Earlier routemq workers claim by `priority DESC, id`: they run scheduled
//! rows when due, but after every ready job (stop them before starting these).

use super::NewJob;

/// The claim's condition on the ready band.
pub(crate) const READY: &str = "priority >= 0";

/// The claim's condition on the scheduled band (the condition of its partial index).
pub(crate) const SCHEDULED: &str = "priority < 0";

/// The assignment a claim makes: a scheduled row gets its priority back in the ready form.
pub(crate) const CLAIMED: &str =
    "priority = CASE WHEN priority < 0 THEN -1 - priority ELSE priority END";

/// The assignment a release with a delay makes: the row moves to the scheduled band.
pub(crate) const POSTPONED: &str =
    "priority = CASE WHEN priority >= 0 THEN -1 - priority ELSE priority END";

/// The name of the index on the due time of scheduled rows.
pub(crate) const INDEX: &str = "routemq_queue_jobs_scheduled";

/// That index where the database has partial indexes (PostgreSQL, SQLite): a queue's scheduled
/// rows by due time, and no entry for a ready row.
#[cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(dead_code))]
pub(crate) fn partial_index() -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS {INDEX} ON queue_jobs (queue, available_at) WHERE {SCHEDULED}"
    )
}

/// MySQL's and MariaDB's generated column: a scheduled row's due time, else `NULL` (they have no
/// partial indexes; its index holds scheduled rows only, as PostgreSQL's and SQLite's does).
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
pub(crate) const DUE: &str = "routemq_due";

/// The stored `priority` of a new job: its priority, in the scheduled form when it has a delay
/// and the table keeps the bands apart (`split`).
pub(crate) fn stored(job: &NewJob, split: bool) -> i16 {
    let priority = i16::from(job.priority);
    if job.delay.is_zero() || !split {
        priority
    } else {
        -1 - priority
    }
}

/// Whether any of `jobs` has a delay (then an insert names the priority column where it can).
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
pub(crate) fn any_delayed(jobs: &[NewJob]) -> bool {
    jobs.iter().any(|job| !job.delay.is_zero())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_delayed_job_is_stored_in_the_scheduled_band_with_its_priority_kept() {
        let mut job = NewJob::new("q", "{}", Duration::ZERO);
        assert_eq!(stored(&job, true), 0);
        job.priority = 7;
        assert_eq!(stored(&job, true), 7);
        job.delay = Duration::from_millis(1);
        assert_eq!(stored(&job, true), -8);
        assert_eq!(stored(&job, false), 7, "a table without the split");
        job.priority = 0;
        assert_eq!(stored(&job, true), -1);
        job.priority = u8::MAX;
        assert_eq!(stored(&job, true), -256);
        assert!(!any_delayed(&[NewJob::new("q", "{}", Duration::ZERO)]));
        assert!(any_delayed(&[NewJob::new("q", "{}", Duration::ZERO), job]));
    }
}
