//! A full disk under SQLite: the database lives on a small tmpfs of its own, which a filler file
//! then fills. Dispatch must fail with a clear error while nothing stored is lost; a worker keeps
//! going through the failures and drains every job once space is back. Needs `mount` (root);
//! skipped with a message where it cannot mount.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::scenarios::{Run, stop_all};
use super::{Row, Target};

/// The filesystem's size: room for the database and a few hundred jobs.
const TMPFS: &str = "size=6m";

/// Jobs stored before the disk fills.
const BEFORE: u64 = 300;

/// A tmpfs mounted for the scenario, unmounted and removed when dropped.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount() -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!(
            "routemq-diskfull-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", TMPFS, "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !mounted.status.success() {
            let _ = std::fs::remove_dir(&dir);
            return Err(String::from_utf8_lossy(&mounted.stderr).trim().to_owned());
        }
        Ok(Self { dir })
    }

    /// Writes a filler file until the filesystem is full.
    fn fill(&self) -> PathBuf {
        let path = self.dir.join("filler");
        if let Ok(mut file) = std::fs::File::create(&path) {
            let block = vec![0xA5u8; 64 * 1024];
            while file.write_all(&block).is_ok() {}
            let small = vec![0xA5u8; 512];
            while file.write_all(&small).is_ok() {}
            let _ = file.sync_all();
        }
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The disk-full scenario on SQLite (`None` when no filesystem can be mounted here).
pub(super) async fn sqlite_disk_full() -> Option<Row> {
    let disk = match SmallDisk::mount() {
        Ok(disk) => disk,
        Err(error) => {
            eprintln!("skipped sqlite disk-full: cannot mount a tmpfs ({error})");
            return None;
        }
    };
    let mut row = Row {
        driver: "sqlite".to_owned(),
        scenario: "disk-full",
        ..Row::default()
    };
    if let Err(problem) = disk_full_run(&disk, &mut row).await {
        row.problems.push(problem);
    }
    Some(row)
}

async fn dispatch(run: &Run, n: u64) -> Result<(), String> {
    run.manager
        .push(run.job(n, 5, false))
        .on_queue(run.queue.clone())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn disk_full_run(disk: &SmallDisk, row: &mut Row) -> Result<(), String> {
    let target = Target {
        driver: "sqlite".to_owned(),
        location: disk.dir.join("queue.sqlite").to_string_lossy().into_owned(),
    };
    let run = Run::new(&target, "diskfull").await?;
    let mut dispatched = BTreeSet::new();
    for n in 0..BEFORE {
        dispatch(&run, n).await?;
        dispatched.insert(n);
    }
    let filler = disk.fill();
    // Dispatch until the store says it is full (the write-ahead log may hold a little more).
    let mut refused = None;
    for n in BEFORE..BEFORE + 10_000 {
        match dispatch(&run, n).await {
            Ok(()) => {
                dispatched.insert(n);
            }
            Err(error) => {
                refused = Some(error);
                break;
            }
        }
    }
    let refused = refused.ok_or("dispatch never failed on a full disk")?;
    row.faults = 1;
    if !refused.contains("full") {
        row.problems
            .push(format!("unclear error on a full disk: {refused}"));
    }
    eprintln!("sqlite disk-full: dispatch said: {refused}");
    let stored = run
        .driver
        .size(&run.queue)
        .await
        .map_err(|e| e.to_string())?;
    if stored != dispatched.len() as u64 {
        row.problems.push(format!(
            "{stored} jobs stored on the full disk, {} dispatched",
            dispatched.len()
        ));
    }
    // A worker on the full disk: it must keep going, whatever it manages to settle.
    let mut workers = vec![run.worker(Duration::from_secs(1))?];
    tokio::time::sleep(Duration::from_secs(2)).await;
    if !workers[0].running() {
        row.problems
            .push("the worker stopped on a full disk".to_owned());
        workers[0] = run.worker(Duration::from_secs(1))?;
    }
    free(&filler);
    let freed = Instant::now();
    let drained = run.drained(Duration::from_secs(120)).await;
    row.recovery_secs = freed.elapsed().as_secs_f64();
    stop_all(&mut workers).await;
    drained?;
    row.dispatched = dispatched.len() as u64;
    run.account(row, &dispatched, &BTreeSet::new(), &BTreeSet::new())
        .await;
    // Acknowledgements refused by the full disk are retried: a job may run again.
    row.explained = row.duplicated;
    Ok(())
}

fn free(filler: &Path) {
    let _ = std::fs::remove_file(filler);
}
