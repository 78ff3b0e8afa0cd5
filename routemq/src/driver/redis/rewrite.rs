//! [Rewriting payloads](crate::driver::rewrite) on Redis. Records hold their envelope as a JSON
//! string (`"payload": "..."`) beside RouteMQ's other fields, which are kept byte for byte. Each
//! queue's delayed and prioritized sets and its ready and failed lists are read in chunks of
//! [`CHUNK`] records and changed by `rewrite.lua`, which replaces a record only where it still
//! is (a sorted set keeps its score; a list keeps its order). A structure where some record
//! moved meanwhile is read again, up to [`PASSES`] times; leased jobs (the in-flight hash) are
//! read and counted, never written.

use super::connection::Connection;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::keys::QueueKeys;
use super::lease::split_lease;
use super::scripts::REWRITE;
use super::{RedisDriver, backend, json_literal, scan_step};
use crate::driver::rewrite::Place;
use crate::driver::{DriverError, Edit, Editor, Rewritten};

/// Records read per round trip.
const CHUNK: isize = 1_000;

/// How far from where it was read `rewrite.lua` looks for a list's record.
const MARGIN: isize = 1_000;

/// Reads of one structure while records still move under the rewrite.
const PASSES: usize = 3;

#[derive(Deserialize)]
struct RecordPayload<'a> {
    #[serde(borrow)]
    payload: &'a RawValue,
}

/// The envelope a record holds, and where its JSON string starts and ends in the record.
fn payload_of(record: &str) -> Option<(String, usize, usize)> {
    let parsed: RecordPayload<'_> = serde_json::from_str(record).ok()?;
    let raw = parsed.payload.get();
    let start = raw.as_ptr() as usize - record.as_ptr() as usize;
    let payload = serde_json::from_str::<String>(raw).ok()?;
    Some((payload, start, start + raw.len()))
}

/// What `edit` makes of a record: the record with its new envelope, when it changes.
fn edit_record(edit: Editor<'_>, record: &str) -> Edit {
    let Some((payload, start, end)) = payload_of(record) else {
        return Edit::Keep;
    };
    match edit(&payload) {
        Edit::Replace(new) => Edit::Replace(format!(
            "{}{}{}",
            &record[..start],
            json_literal(&new),
            &record[end..]
        )),
        other => other,
    }
}

/// A list or a sorted set of records.
#[derive(Clone, Copy)]
enum Structure<'a> {
    List(&'a str),
    Set(&'a str),
}

/// What one read of a structure found.
#[derive(Default)]
struct Scan {
    replaced: u64,
    missed: u64,
    unreadable: u64,
}

const OPERATION: &str = "rewriting payloads";

/// Replaces `pairs` (old, new) in `structure`, read from the window `window` of a list.
async fn replace(
    con: &mut Connection,
    structure: Structure<'_>,
    window: (isize, isize),
    pairs: &[(String, String)],
) -> Result<u64, DriverError> {
    if pairs.is_empty() {
        return Ok(0);
    }
    let (key, kind) = match structure {
        Structure::List(key) => (key, "list"),
        Structure::Set(key) => (key, "zset"),
    };
    let mut call = REWRITE.prepare_invoke();
    call.key(key)
        .arg(kind)
        .arg(MARGIN)
        .arg(window.0)
        .arg(window.1);
    for (old, new) in pairs {
        call.arg(old).arg(new);
    }
    call.invoke_async(con).await.map_err(backend(OPERATION))
}

/// One chunk's records that change, and how many of them cannot be read.
fn changes(edit: Editor<'_>, records: &[String], scan: &mut Scan) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for record in records {
        match edit_record(edit, record) {
            Edit::Keep => {}
            Edit::Unreadable => scan.unreadable += 1,
            Edit::Replace(new) => pairs.push((record.clone(), new)),
        }
    }
    pairs
}

/// One read of `structure`, replacing as it goes.
async fn scan(
    con: &mut Connection,
    structure: Structure<'_>,
    edit: Editor<'_>,
) -> Result<Scan, DriverError> {
    let mut found = Scan::default();
    let mut cursor: u64 = 0;
    // Lists are read from the tail, like `remove`: pops at the head leave a record's distance
    // from the tail as it is.
    let mut end = -1;
    loop {
        let (records, window, done) = match structure {
            Structure::Set(key) => {
                let (next, entries) =
                    scan_step(con, "ZSCAN", key, cursor, CHUNK, OPERATION).await?;
                cursor = next;
                // Members and scores alternate.
                let records = entries.into_iter().step_by(2).collect();
                (records, (0, 0), next == 0)
            }
            Structure::List(key) => {
                let records: Vec<String> = redis::cmd("LRANGE")
                    .arg(key)
                    .arg(end - CHUNK + 1)
                    .arg(end)
                    .query_async(con)
                    .await
                    .map_err(backend(OPERATION))?;
                let window = (end - CHUNK + 1, end);
                end -= CHUNK;
                let done = records.len() < CHUNK.unsigned_abs();
                (records, window, done)
            }
        };
        let pairs = changes(edit, &records, &mut found);
        let replaced = replace(con, structure, window, &pairs).await?;
        found.replaced += replaced;
        found.missed += pairs.len() as u64 - replaced;
        if done {
            return Ok(found);
        }
    }
}

/// Reads `structure` until no record moved under the rewrite (at most [`PASSES`] times), and
/// counts what it changed in `rewritten` (`failed`: a failed list). Records that still moved on
/// the last pass count as leased.
async fn rewrite_structure(
    con: &mut Connection,
    structure: Structure<'_>,
    failed: bool,
    edit: Editor<'_>,
    rewritten: &mut Rewritten,
) -> Result<(), DriverError> {
    let mut pass = 1;
    loop {
        let found = scan(con, structure, edit).await?;
        if failed {
            rewritten.failed += found.replaced;
        } else {
            rewritten.jobs += found.replaced;
        }
        if found.missed == 0 || pass == PASSES {
            rewritten.unreadable += found.unreadable;
            rewritten.leased += found.missed;
            return Ok(());
        }
        pass += 1;
    }
}

/// Counts the leased jobs of one queue whose payload would change: the records in `leased`,
/// and those still inside `inflight` values (leases taken before the two were kept apart).
async fn count_leased(
    con: &mut Connection,
    keys: &QueueKeys,
    edit: Editor<'_>,
    rewritten: &mut Rewritten,
) -> Result<(), DriverError> {
    for (hash, inline) in [(&keys.leased, false), (&keys.inflight, true)] {
        let mut cursor: u64 = 0;
        loop {
            let (next, entries) = scan_step(con, "HSCAN", hash, cursor, CHUNK, OPERATION).await?;
            // Fields (job ids) and values alternate.
            for value in entries.iter().skip(1).step_by(2) {
                let record = if inline {
                    split_lease(value).map(|(_, _, record)| record)
                } else {
                    Some(value.as_str())
                };
                if let Some(record) = record {
                    rewritten.count(&edit_record(edit, record), Place::Leased, false);
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(())
}

pub(super) async fn rewrite(
    driver: &RedisDriver,
    edit: Editor<'_>,
) -> Result<Rewritten, DriverError> {
    let mut rewritten = Rewritten::default();
    let mut con = driver.con();
    for queue in crate::driver::queue_or_all(driver, None).await? {
        let keys = driver.layout.queue(&queue);
        for (structure, failed) in [
            (Structure::Set(&keys.delayed), false),
            (Structure::Set(&keys.prio), false),
            (Structure::List(&keys.ready), false),
            (Structure::List(&keys.failed), true),
        ] {
            rewrite_structure(&mut con, structure, failed, edit, &mut rewritten).await?;
        }
        count_leased(&mut con, &keys, edit, &mut rewritten).await?;
    }
    Ok(rewritten)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_keeps_every_field_but_its_payload() {
        let record = r#"{"id": "q:1", "payload": "{\"class\": \"a\", \"data\": \"x\"}", "attempts": 0, "created_at": "t"}"#;
        let edit = |payload: &str| {
            assert_eq!(payload, r#"{"class": "a", "data": "x"}"#);
            Edit::Replace(r#"{"class": "a", "data": "y"}"#.to_owned())
        };
        assert_eq!(
            edit_record(&edit, record),
            Edit::Replace(
                r#"{"id": "q:1", "payload": "{\"class\": \"a\", \"data\": \"y\"}", "attempts": 0, "created_at": "t"}"#
                    .to_owned()
            )
        );
        assert_eq!(edit_record(&edit, "not a record"), Edit::Keep);
    }
}
