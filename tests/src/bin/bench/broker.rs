//! What the broker spends while the benchmark runs: its CPU time and its memory.
//!
//! Redis answers for itself (`INFO cpu`, `INFO memory`: the server process with all its threads).
//! PostgreSQL and MariaDB are read from `/proc` on this machine: the server process (the
//! postmaster, or `mariadbd` with its threads) and every child process (PostgreSQL's backends and
//! background workers); a child that exits during the run is counted through its parent's
//! `cutime`/`cstime` once reaped. SQLite and the in-memory driver run inside the benchmark's own
//! process, so they have no broker apart from it.
//!
//! CPU time barely moves with the machine's load, unlike jobs per second: it is the figure to
//! compare across runs. The servers must run on this host, in its PID namespace (the ids the
//! servers report are read in this `/proc`); a child that exits between the reading of the root
//! and the listing of its children is missed by that one reading. A server this process cannot
//! see (another container, another PID namespace) is reported as unseen: the run goes on and its
//! JSON carries `broker_unseen` with the reason instead of the broker's figures.

use std::error::Error;

use routemq::sqlx;

use crate::{sql_pool, url};

/// Clock ticks per second in `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on Linux).
const TICKS: f64 = 100.0;

/// Where the broker's usage is read from.
#[derive(Debug)]
pub(crate) enum Broker {
    /// Redis servers (one, or a cluster's nodes), through `INFO`, summed.
    Redis(Vec<routemq::redis::Client>),
    /// A server process on this machine and its children.
    Process(u32),
    /// The broker runs inside this process.
    InProcess,
    /// The broker's process cannot be read from here; the reason why.
    Unseen(String),
}

/// A reading of the broker's usage.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Usage {
    /// CPU time the broker has spent, user and system, in seconds.
    pub(crate) cpu: f64,
    /// Resident memory, in bytes (PostgreSQL: proportional set size summed over its processes,
    /// so shared buffers count once).
    pub(crate) memory: u64,
}

type BoxError = Box<dyn Error + Send + Sync>;

impl Broker {
    /// Finds the server of a connection kind (`redis`, `postgres`, `mysql`) at its [`url`].
    ///
    /// Fails only when the server cannot be reached; a server process that cannot be read from
    /// this `/proc` gives [`Broker::Unseen`].
    pub(crate) async fn find(kind: &str) -> Result<Self, BoxError> {
        let root = match kind {
            "redis" | "redis-cluster" => {
                let clients = url(kind)
                    .split(',')
                    .map(routemq::redis::Client::open)
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(Self::Redis(clients));
            }
            "postgres" => {
                let pool = sql_pool::connect(kind, 1).await?;
                let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(&pool)
                    .await?;
                // Read while the connection is open: its backend exits with it.
                let parent = u32::try_from(backend)
                    .map_err(BoxError::from)
                    .and_then(read_stat)
                    .map(|backend| backend.parent)
                    .map_err(|error| format!("PostgreSQL backend {backend}: {error}"));
                pool.close().await;
                parent
            }
            "mysql" => {
                let pool = sql_pool::connect(kind, 1).await?;
                let file: String = sqlx::query_scalar("SELECT @@pid_file")
                    .fetch_one(&pool)
                    .await?;
                pool.close().await;
                match std::fs::read_to_string(&file) {
                    Ok(text) => text
                        .trim()
                        .parse()
                        .map_err(|error| format!("{file}: {error}")),
                    Err(_) => only_process(&["mariadbd", "mysqld"]).map_err(|e| e.to_string()),
                }
            }
            _ => return Ok(Self::InProcess),
        };
        let seen = root.and_then(|pid| match process_tree(pid) {
            Ok(_) => Ok(pid),
            Err(error) => Err(format!("server process {pid}: {error}")),
        });
        Ok(match seen {
            Ok(pid) => Self::Process(pid),
            Err(reason) => {
                eprintln!("bench: the {kind} server's CPU and memory are not reported: {reason}");
                Self::Unseen(reason)
            }
        })
    }

    /// The broker's usage now; `None` when it runs in this process.
    pub(crate) async fn usage(&self) -> Result<Option<Usage>, BoxError> {
        match self {
            Self::Redis(clients) => {
                let mut total = Usage {
                    cpu: 0.0,
                    memory: 0,
                };
                for client in clients {
                    let mut con = client.get_multiplexed_async_connection().await?;
                    let info: String = routemq::redis::cmd("INFO")
                        .arg("cpu")
                        .arg("memory")
                        .query_async(&mut con)
                        .await?;
                    let field = |name: &str| -> Result<f64, BoxError> {
                        let line = info
                            .lines()
                            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                            .ok_or_else(|| format!("INFO has no {name}"))?;
                        Ok(line.trim().parse()?)
                    };
                    total.cpu += field("used_cpu_user")? + field("used_cpu_sys")?;
                    total.memory += field("used_memory_rss")? as u64;
                }
                Ok(Some(total))
            }
            Self::Process(root) => Ok(Some(process_tree(*root)?)),
            Self::InProcess | Self::Unseen(_) => Ok(None),
        }
    }
}

/// This process's own CPU time in seconds (the worker and producer side).
pub(crate) fn own_cpu() -> f64 {
    read_stat_at("/proc/self/stat").map_or(f64::NAN, |stat| stat.cpu)
}

/// This process's resident memory in bytes.
pub(crate) fn own_memory() -> u64 {
    memory_of("/proc/self").unwrap_or(0)
}

/// The fields of `/proc/<pid>/stat` the readings need.
struct Stat {
    parent: u32,
    /// Own CPU plus that of reaped children, in seconds.
    cpu: f64,
}

fn read_stat(pid: u32) -> Result<Stat, BoxError> {
    read_stat_at(&format!("/proc/{pid}/stat"))
}

fn read_stat_at(path: &str) -> Result<Stat, BoxError> {
    let text = std::fs::read_to_string(path)?;
    // The command name is in parentheses and may hold spaces: the fields start after the last ')'.
    let rest = text
        .rsplit_once(')')
        .ok_or_else(|| format!("{path}: no command name"))?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): field n is fields[n - 3].
    let number = |n: usize| -> Result<f64, BoxError> {
        Ok(fields
            .get(n - 3)
            .ok_or_else(|| format!("{path}: no field {n}"))?
            .parse()?)
    };
    Ok(Stat {
        parent: number(4)? as u32,
        cpu: (number(14)? + number(15)? + number(16)? + number(17)?) / TICKS,
    })
}

fn process_tree(root: u32) -> Result<Usage, BoxError> {
    let mut usage = Usage {
        cpu: read_stat(root)?.cpu,
        memory: memory_of(&format!("/proc/{root}"))?,
    };
    for pid in pids()? {
        // A child may exit between the listing and the read: skip it (its time went to the root).
        let Ok(stat) = read_stat(pid) else { continue };
        if stat.parent == root {
            usage.cpu += stat.cpu;
            usage.memory += memory_of(&format!("/proc/{pid}")).unwrap_or(0);
        }
    }
    Ok(usage)
}

fn pids() -> Result<Vec<u32>, BoxError> {
    Ok(std::fs::read_dir("/proc")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// The only running process named one of `names`.
fn only_process(names: &[&str]) -> Result<u32, BoxError> {
    let found: Vec<u32> = pids()?
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| names.contains(&comm.trim()))
        })
        .collect();
    match found[..] {
        [pid] => Ok(pid),
        _ => Err(format!("expected one {names:?} process, found {}", found.len()).into()),
    }
}

/// Proportional set size (shared pages divided among their users), else resident size, in bytes.
fn memory_of(dir: &str) -> Result<u64, BoxError> {
    let kib = |file: &str, key: &str| -> Option<u64> {
        let text = std::fs::read_to_string(format!("{dir}/{file}")).ok()?;
        let line = text.lines().find_map(|line| line.strip_prefix(key))?;
        line.trim().trim_end_matches("kB").trim().parse().ok()
    };
    kib("smaps_rollup", "Pss:")
        .or_else(|| kib("status", "VmRSS:"))
        .map(|kib| kib * 1024)
        .ok_or_else(|| format!("{dir}: no memory figure").into())
}

/// Runs `work`, which handles `jobs` jobs, and adds to `out` its rate (`<prefix>jobs_per_s`),
/// the CPU it cost per job on both sides and the broker's memory; returns what `work` returned
/// and how long it took, in seconds.
pub(crate) async fn measure<T>(
    broker: &Broker,
    jobs: usize,
    prefix: &str,
    out: &mut serde_json::Value,
    work: impl std::future::Future<Output = Result<T, BoxError>>,
) -> Result<(T, f64), BoxError> {
    let window = Window::open(broker).await?;
    let started = std::time::Instant::now();
    let value = work.await?;
    let seconds = started.elapsed().as_secs_f64();
    out[format!("{prefix}jobs_per_s")] = serde_json::json!(jobs as f64 / seconds);
    window.close(broker, jobs, prefix, out).await?;
    Ok((value, seconds))
}

/// CPU and memory over one measured window.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    broker: Option<Usage>,
    own: f64,
}

impl Window {
    /// Starts a window.
    async fn open(broker: &Broker) -> Result<Self, BoxError> {
        Ok(Self {
            broker: broker.usage().await?,
            own: own_cpu(),
        })
    }

    /// Closes the window over `jobs` jobs, adding `<prefix>broker_cpu_us_per_job`,
    /// `<prefix>client_cpu_us_per_job` and `broker_memory_mb` to `out`.
    async fn close(
        self,
        broker: &Broker,
        jobs: usize,
        prefix: &str,
        out: &mut serde_json::Value,
    ) -> Result<(), BoxError> {
        let per_job = |seconds: f64| seconds * 1e6 / jobs.max(1) as f64;
        let own = own_cpu() - self.own;
        out[format!("{prefix}client_cpu_us_per_job")] = serde_json::json!(per_job(own));
        if let (Some(before), Some(after)) = (self.broker, broker.usage().await?) {
            out[format!("{prefix}broker_cpu_us_per_job")] =
                serde_json::json!(per_job(after.cpu - before.cpu));
            out["broker_memory_mb"] = serde_json::json!(mb(after.memory));
        }
        if let Broker::Unseen(reason) = broker {
            out["broker_unseen"] = serde_json::json!(reason);
        }
        Ok(())
    }
}

/// Bytes as mebibytes, one decimal.
pub(crate) fn mb(bytes: u64) -> f64 {
    (bytes as f64 / 1_048_576.0 * 10.0).round() / 10.0
}
