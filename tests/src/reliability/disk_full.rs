//! A full disk under SQLite, and under a private PostgreSQL's data directory: the data lives on a
//! small tmpfs of its own, which a filler file then fills. Dispatch must fail with a clear error
//! while nothing stored is lost; a worker keeps going through the failures and drains every job
//! once space is back. Needs `mount` (root); skipped with a message where it cannot mount.
//! (MariaDB is left out: InnoDB waits for space instead of failing the write, so a dispatch
//! would block rather than fail.)

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::private::{Kind, PrivateServer};
use super::scenarios::{Run, stop_all};
use super::{Row, Target};

/// The filesystem's size for SQLite: room for the database and a few hundred jobs.
const SQLITE_TMPFS: &str = "size=16m";

/// The filesystem's size for PostgreSQL: a cluster (about 40 MB) and its first log segment.
const POSTGRES_TMPFS: &str = "size=96m";

/// Jobs stored before the disk fills.
const BEFORE: u64 = 300;

/// A tmpfs mounted for the scenario, unmounted and removed when dropped.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(options: &str) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!(
            "routemq-diskfull-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
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
        let unmounted = Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status()
            .is_ok_and(|status| status.success());
        // Still mounted: leave it (and say so) rather than empty a filesystem in use.
        if unmounted {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("could not unmount {}", self.dir.display());
        }
    }
}

/// A filesystem for `scenario`: mounted, or a skip message (a failing row when
/// `ROUTEMQ_TEST_REQUIRE_SERVICES=1`, so that coverage cannot vanish from CI).
fn small_disk(options: &str, row: &mut Row) -> Option<SmallDisk> {
    match SmallDisk::mount(options) {
        Ok(disk) => Some(disk),
        Err(error) => {
            let message = format!("cannot mount a tmpfs ({error})");
            if std::env::var("ROUTEMQ_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
                row.problems.push(message);
            } else {
                eprintln!("skipped {} disk-full: {message}", row.driver);
            }
            None
        }
    }
}

/// The disk-full scenario on SQLite (`None` when no filesystem can be mounted here and it is
/// not required).
pub(super) async fn sqlite_disk_full() -> Option<Row> {
    let mut row = Row::new("sqlite".to_owned(), "disk-full");
    let Some(disk) = small_disk(SQLITE_TMPFS, &mut row) else {
        return (!row.problems.is_empty()).then_some(row);
    };
    let result = disk_full_run(&disk, &mut row).await;
    row.record(result);
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
    fill_and_drain(&run, disk, row, None).await
}

/// The disk-full scenario on a private PostgreSQL whose data directory is on a small tmpfs.
pub(super) async fn postgres_disk_full() -> Option<Row> {
    let mut row = Row::new("postgres".to_owned(), "disk-full");
    let Some(disk) = small_disk(POSTGRES_TMPFS, &mut row) else {
        return (!row.problems.is_empty()).then_some(row);
    };
    let scenario = async {
        let mut server = PrivateServer::start_in(Kind::Postgres, &disk.dir).await?;
        let target = Target {
            driver: "postgres".to_owned(),
            location: server.url(),
        };
        let run = Run::new(&target, "diskfull").await?;
        fill_and_drain(&run, &disk, &mut row, Some(&mut server)).await
    };
    let result = scenario.await;
    row.record(result);
    Some(row)
}

/// Stores [`BEFORE`] jobs, fills the disk, dispatches until refused, checks what is stored, runs a
/// worker on the full disk, frees the space and checks every job ran. A `server` that stopped
/// itself on the full disk is started again once there is space, and counted as a problem.
async fn fill_and_drain(
    run: &Run,
    disk: &SmallDisk,
    row: &mut Row,
    server: Option<&mut PrivateServer>,
) -> Result<(), String> {
    let mut dispatched = BTreeSet::new();
    for n in 0..BEFORE {
        dispatch(run, n).await?;
        dispatched.insert(n);
    }
    let filler = disk.fill();
    // Dispatch until the store says it is full (the write-ahead log may hold a little more).
    let mut refused = None;
    for n in BEFORE..BEFORE + 10_000 {
        match dispatch(run, n).await {
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
    if !refused.contains("full") && !refused.contains("No space left") {
        row.problems
            .push(format!("unclear error on a full disk: {refused}"));
    }
    eprintln!("{} disk-full: dispatch said: {refused}", run.target.driver);
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
    if let Some(server) = server
        && !server.running()
    {
        row.problems
            .push("the server stopped on the full disk".to_owned());
        server.restart().await?;
    }
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
