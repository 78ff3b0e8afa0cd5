//! Jobs for end-to-end tests with real worker processes: they write what they do to a file, so a
//! test can see every run across processes (and across a `kill -9`).

use std::io::Write;
use std::time::Duration;

use routemq::prelude::*;

/// Appends `"{event} {n} {pid} {attempt}"` to `path` in one `write` (an `O_APPEND` write is
/// atomic, so lines from several processes never interleave).
fn append(path: &str, event: &str, n: u64, attempt: u32) -> std::io::Result<()> {
    let line = format!("{event} {n} {} {attempt}\n", std::process::id());
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(line.as_bytes())
}

/// Records its start and end in a file; its first attempt can be slow.
#[derive(Debug, Clone)]
#[job(name = "e2e.FileRecord", max_tries = 3, timeout = 120)]
pub struct FileRecord {
    /// The ledger file.
    pub path: String,
    /// Its number.
    pub n: u64,
    /// How long the first attempt sleeps (later attempts do not).
    pub first_attempt_sleep_ms: u64,
}

impl Job for FileRecord {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        append(&self.path, "start", self.n, ctx.attempts())?;
        if ctx.attempts() == 1 && self.first_attempt_sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.first_attempt_sleep_ms)).await;
        }
        append(&self.path, "done", self.n, ctx.attempts())?;
        Ok(())
    }
}

/// One line of a ledger file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// `start`, `done`, or `pill` (a [`KillsItsWorker`] about to kill its worker).
    pub event: String,
    /// The job's number.
    pub n: u64,
    /// The worker process.
    pub pid: u32,
    /// The attempt.
    pub attempt: u32,
}

/// How many of `lines` record `event` for job `n`.
pub fn count(lines: &[Line], event: &str, n: u64) -> usize {
    lines
        .iter()
        .filter(|line| line.event == event && line.n == n)
        .count()
}

/// Reads a ledger file (missing: empty).
pub fn read_ledger(path: &std::path::Path) -> Vec<Line> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split(' ');
            Some(Line {
                event: parts.next()?.to_owned(),
                n: parts.next()?.parse().ok()?,
                pid: parts.next()?.parse().ok()?,
                attempt: parts.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// The reliability suite's job: records its start and end, can sleep, and can fail for good.
#[derive(Debug, Clone)]
#[job(name = "reliability.Ledgered", max_tries = 5, timeout = 60)]
pub struct Ledgered {
    /// The ledger file.
    pub path: String,
    /// Its number.
    pub n: u64,
    /// How long each run sleeps.
    pub sleep_ms: u64,
    /// Fail permanently (these are the jobs meant to end in the failed store).
    pub fail: bool,
    /// Free text carried through the queue (SQL fragments, quotes, non-ASCII).
    pub note: String,
}

impl Job for Ledgered {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        append(&self.path, "start", self.n, ctx.attempts())?;
        if self.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
        }
        if self.fail {
            return Err(JobError::permanent(format!(
                "job {} is meant to fail",
                self.n
            )));
        }
        append(&self.path, "done", self.n, ctx.attempts())?;
        Ok(())
    }
}

/// A poison pill: records its start, then kills its worker process on the spot (as a crash in
/// native code, a stack overflow or the OOM killer would), before anything else can be written.
#[derive(Debug, Clone)]
#[job(name = "e2e.KillsItsWorker", max_tries = 2, timeout = 60)]
pub struct KillsItsWorker {
    /// The ledger file.
    pub path: String,
}

impl Job for KillsItsWorker {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        append(&self.path, "pill", 0, ctx.attempts())?;
        std::process::abort()
    }
}

/// An encrypted job: records `open` when it sees its secret in plaintext, then fails for good
/// when `fail` is set, else records `done`.
#[derive(Debug, Clone)]
#[job(name = "e2e.SealedNote", max_tries = 1, timeout = 60, encrypted)]
pub struct SealedNote {
    /// The ledger file.
    pub path: String,
    /// Its number.
    pub n: u64,
    /// What must never reach the store in plaintext.
    pub secret: String,
    /// Whether it fails for good.
    pub fail: bool,
}

impl Job for SealedNote {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        if self.secret.starts_with("PLAINTEXT-") {
            append(&self.path, "open", self.n, ctx.attempts())?;
        }
        if self.fail {
            // The error names no data: the secret must not reach the failed store this way either.
            return Err(JobError::permanent(format!(
                "note {} is meant to fail",
                self.n
            )));
        }
        append(&self.path, "done", self.n, ctx.attempts())?;
        Ok(())
    }
}

/// An encrypted unique job (its key is made of its data, secret included): records `done`.
#[derive(Debug, Clone)]
#[job(name = "e2e.SealedOnce", max_tries = 1, encrypted, unique_for = 600)]
pub struct SealedOnce {
    /// The ledger file.
    pub path: String,
    /// Its number.
    pub n: u64,
    /// What must never reach the store in plaintext, not even in the unique key's slot.
    pub secret: String,
}

impl Job for SealedOnce {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        append(&self.path, "done", self.n, ctx.attempts())?;
        Ok(())
    }
}
