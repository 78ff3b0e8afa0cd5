//! Throwaway broker servers the suite owns: started on a spare loopback port in a directory of
//! their own, killed with `kill -9` and started again on the same data, removed when dropped.
//! The machine's shared servers are never touched.
//!
//! - Redis: `redis-server` with an append-only file (`appendfsync always` or `everysec`).
//! - PostgreSQL: a cluster made by `initdb`, run by `postgres` as the `postgres` user.
//! - MariaDB: a data directory made by `mariadb-install-db`, run by `mariadbd`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which server, and how it is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Redis with `appendfsync always`: every write is on disk before it is acknowledged.
    RedisAlways,
    /// Redis with `appendfsync everysec`: a crash can lose about the last second of writes.
    RedisEverysec,
    /// PostgreSQL with its defaults (`fsync` and `synchronous_commit` on).
    Postgres,
    /// MariaDB with its defaults (`innodb_flush_log_at_trx_commit = 1`).
    Mariadb,
}

impl Kind {
    /// The routemq driver that talks to it.
    pub fn driver(self) -> &'static str {
        match self {
            Self::RedisAlways | Self::RedisEverysec => "redis",
            Self::Postgres => "postgres",
            Self::Mariadb => "mysql",
        }
    }

    /// A short label for reports.
    pub fn label(self) -> &'static str {
        match self {
            Self::RedisAlways => "redis/aof-always",
            Self::RedisEverysec => "redis/aof-everysec",
            Self::Postgres => "postgres",
            Self::Mariadb => "mariadb",
        }
    }
}

/// A running (or killed) private server.
#[derive(Debug)]
pub struct PrivateServer {
    kind: Kind,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

/// A free loopback port (bound, then released for the server to take).
fn spare_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|e| e.to_string())
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The directory of PostgreSQL's programs: where `initdb` on the path leads, else Debian's
/// `/usr/lib/postgresql/<version>/bin` (the newest).
fn postgres_bin() -> Result<PathBuf, String> {
    if let Ok(initdb) = which("initdb")
        && let Some(dir) = std::fs::canonicalize(&initdb)
            .ok()
            .and_then(|path| path.parent().map(Path::to_path_buf))
    {
        return Ok(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "PostgreSQL's programs are not installed".to_owned())?
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .ok_or_else(|| "initdb is not installed".to_owned())
}

fn which(program: &str) -> Result<PathBuf, String> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .ok_or_else(|| format!("{program} is not installed"))
}

/// One of the `postgres` user's ids (`flag`: `-u` or `-g`), as `id` prints it.
fn postgres_id(flag: &str) -> Result<u32, String> {
    let output = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .map_err(|e| e.to_string())?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("no postgres user (id {flag} postgres)"))
}

/// The `postgres` user's uid and gid, as `setpriv` takes them.
fn postgres_user() -> Result<(u32, u32), String> {
    Ok((postgres_id("-u")?, postgres_id("-g")?))
}

/// `command` run as the `postgres` user (PostgreSQL refuses to run as root).
fn as_postgres(program: &Path) -> Result<Command, String> {
    let (uid, gid) = postgres_user()?;
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--init-groups")
        .args(["--pdeathsig", "KILL"])
        .arg(program);
    Ok(command)
}

/// The processes whose parent is `parent` (from `/proc/*/stat`).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid ...`: the name can hold spaces, the last ')' ends it.
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

impl PrivateServer {
    /// Makes the server's data directory and starts it; returns once it answers.
    pub async fn start(kind: Kind) -> Result<Self, String> {
        Self::start_in(kind, &std::env::temp_dir()).await
    }

    /// [`start`](Self::start) with its directory made inside `parent` (a small filesystem, for
    /// the full-disk scenario).
    pub async fn start_in(kind: Kind, parent: &Path) -> Result<Self, String> {
        let dir = parent.join(format!(
            "routemq-private-{}-{}-{:08x}",
            kind.driver(),
            std::process::id(),
            fastrand::u32(..)
        ));
        let port = spare_port()?;
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut server = Self {
            kind,
            dir,
            port,
            child: None,
        };
        server.init()?;
        server.launch().await?;
        Ok(server)
    }

    /// The URL routemq connects to.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::RedisAlways | Kind::RedisEverysec => format!("redis://127.0.0.1:{}", self.port),
            Kind::Postgres => format!("postgres://postgres@127.0.0.1:{}/postgres", self.port),
            Kind::Mariadb => format!("mysql://root@127.0.0.1:{}/routemq", self.port),
        }
    }

    fn init(&self) -> Result<(), String> {
        match self.kind {
            Kind::RedisAlways | Kind::RedisEverysec => Ok(()),
            Kind::Postgres => {
                let (uid, gid) = postgres_user()?;
                std::os::unix::fs::chown(&self.dir, Some(uid), Some(gid))
                    .map_err(|e| e.to_string())?;
                run(
                    as_postgres(&postgres_bin()?.join("initdb"))?
                        .arg("-D")
                        .arg(self.dir.join("data"))
                        .args(["-U", "postgres", "-A", "trust", "--no-sync"]),
                    "initdb",
                )
            }
            Kind::Mariadb => run(
                Command::new("mariadb-install-db")
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", self.dir.join("data").display()))
                    .args([
                        "--user=root",
                        "--skip-test-db",
                        "--auth-root-authentication-method=normal",
                    ]),
                "mariadb-install-db",
            ),
        }
    }

    fn command(&self) -> Result<Command, String> {
        let dir = self.dir.display();
        let port = self.port.to_string();
        let command = match self.kind {
            Kind::RedisAlways | Kind::RedisEverysec => {
                let fsync = if self.kind == Kind::RedisAlways {
                    "always"
                } else {
                    "everysec"
                };
                let mut command = Command::new("setpriv");
                command.args(["--pdeathsig", "KILL", "redis-server"]);
                command.args([
                    "--port",
                    &port,
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    &dir.to_string(),
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    fsync,
                    "--save",
                    "",
                    "--protected-mode",
                    "no",
                ]);
                command
            }
            Kind::Postgres => {
                let mut command = as_postgres(&postgres_bin()?.join("postgres"))?;
                command
                    .arg("-D")
                    .arg(self.dir.join("data"))
                    .args(["-p", &port, "-k"])
                    .arg(&self.dir)
                    .args([
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-c",
                        "max_connections=200",
                    ]);
                command
            }
            Kind::Mariadb => {
                let mut command = Command::new("setpriv");
                command
                    .args(["--pdeathsig", "KILL", "mariadbd"])
                    .arg("--no-defaults")
                    .arg(format!("--datadir={dir}/data"))
                    .arg(format!("--socket={dir}/mysqld.sock"))
                    .arg(format!("--pid-file={dir}/mysqld.pid"))
                    .arg(format!("--port={port}"))
                    .args([
                        "--bind-address=127.0.0.1",
                        "--user=root",
                        "--skip-grant-tables",
                        "--skip-log-bin",
                        "--innodb-buffer-pool-size=64M",
                        "--max-connections=300",
                    ]);
                command
            }
        };
        Ok(command)
    }

    /// Starts the server on its data directory and waits until it answers.
    async fn launch(&mut self) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.join("server.log")).map_err(|e| e.to_string())?;
        let errors = log.try_clone().map_err(|e| e.to_string())?;
        let mut command = self.command()?;
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(errors)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.kind.label()))?;
        self.child = Some(child);
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.answers().await {
                return self.prepare().await;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "{} exited ({status}): {}",
                    self.kind.label(),
                    std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!("{} did not answer within 60 s", self.kind.label()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the server accepts a session within two seconds.
    async fn answers(&self) -> bool {
        tokio::time::timeout(Duration::from_secs(2), self.session())
            .await
            .unwrap_or(false)
    }

    async fn session(&self) -> bool {
        match self.kind {
            Kind::RedisAlways | Kind::RedisEverysec => {
                let Ok(client) = redis::Client::open(self.url()) else {
                    return false;
                };
                let Ok(mut con) = client.get_multiplexed_async_connection().await else {
                    return false;
                };
                redis::cmd("PING")
                    .query_async::<String>(&mut con)
                    .await
                    .is_ok()
            }
            Kind::Postgres => {
                use routemq::sqlx::Connection;
                routemq::sqlx::PgConnection::connect(&self.url())
                    .await
                    .is_ok()
            }
            Kind::Mariadb => {
                use routemq::sqlx::Connection;
                let server = format!("mysql://root@127.0.0.1:{}/mysql", self.port);
                routemq::sqlx::MySqlConnection::connect(&server)
                    .await
                    .is_ok()
            }
        }
    }

    /// Creates what routemq's URL names (MariaDB's database).
    async fn prepare(&self) -> Result<(), String> {
        if self.kind != Kind::Mariadb {
            return Ok(());
        }
        use routemq::sqlx::Connection;
        let server = format!("mysql://root@127.0.0.1:{}/mysql", self.port);
        let mut con = routemq::sqlx::MySqlConnection::connect(&server)
            .await
            .map_err(|e| e.to_string())?;
        routemq::sqlx::query("CREATE DATABASE IF NOT EXISTS routemq")
            .execute(&mut con)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// `kill -9` of the server and every process it started (PostgreSQL's children each start a
    /// session of their own, so they are found by their parent and killed first); returns once
    /// they are all gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let children = children_of(child.id());
            for pid in &children {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            let deadline = Instant::now() + Duration::from_secs(10);
            while children
                .iter()
                .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts the server again on the same data after a [`kill`](Self::kill).
    pub async fn restart(&mut self) -> Result<(), String> {
        self.launch().await
    }

    /// Whether the server process is still running (a server can stop itself, as PostgreSQL
    /// does when it cannot write its log).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
