//! Redis Clusters for tests.
//!
//! `ROUTEMQ_TEST_REDIS_CLUSTER` names the cluster the tests use: comma-separated `redis://` URLs
//! of some of its nodes, or `start`, for a cluster of the tests' own: six `redis-server
//! --cluster-enabled yes` on spare loopback ports (three primaries, a replica each, joined by
//! `redis-cli --cluster create`), started once per test process and gone with it. A test that
//! kills nodes starts a [`LocalCluster`] of its own instead.
//!
//! Every server is started by one thread that lives as long as the test process, through
//! `setpriv --pdeathsig KILL`: when the process ends, however it ends, the kernel kills its
//! servers.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::services::service_url;

/// The variable that names the test cluster.
pub const VARIABLE: &str = "ROUTEMQ_TEST_REDIS_CLUSTER";

/// The node URLs of the test cluster, or `None` after printing why the test is skipped (fails
/// under `ROUTEMQ_TEST_REQUIRE_SERVICES=1`).
///
/// # Panics
/// When `start` is asked for and the cluster cannot be started.
pub fn cluster_nodes() -> Option<Vec<String>> {
    let value = service_url(VARIABLE)?;
    if value.trim() != "start" {
        return Some(
            value
                .split(',')
                .map(|node| node.trim().to_owned())
                .collect(),
        );
    }
    static SHARED: OnceLock<LocalCluster> = OnceLock::new();
    let cluster = SHARED.get_or_init(|| {
        LocalCluster::start()
            .unwrap_or_else(|error| panic!("cannot start a Redis Cluster: {error}"))
    });
    Some(cluster.nodes())
}

/// A six-node cluster (three primaries with a replica each) on loopback; its servers are
/// killed, and its directory removed, when it is dropped.
#[derive(Debug)]
pub struct LocalCluster {
    /// The address the nodes announce (and clients reach them at).
    address: String,
    ports: Vec<u16>,
    dir: PathBuf,
    servers: Mutex<Vec<(u16, Child)>>,
}

impl LocalCluster {
    /// Starts the servers, joins them into a cluster and waits until it serves every slot.
    pub fn start() -> Result<Self, String> {
        Self::start_at("127.0.0.1")
    }

    /// [`start`](Self::start) with the nodes on `address` too (a local address: a bridge's, for
    /// hosts in network namespaces), which they announce to clients.
    pub fn start_at(address: &str) -> Result<Self, String> {
        remove_stale_dirs();
        let dir = std::env::temp_dir().join(format!(
            "routemq-cluster-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        let ports = spare_ports(address, 6)?;
        let cluster = Self {
            address: address.to_owned(),
            ports: ports.clone(),
            dir,
            servers: Mutex::new(Vec::new()),
        };
        for port in &ports {
            cluster.launch(*port)?;
        }
        for port in &ports {
            wait_for(*port, "PING", "PONG")?;
        }
        let mut create = Command::new("redis-cli");
        create
            .arg("--cluster")
            .arg("create")
            .args(ports.iter().map(|port| format!("{address}:{port}")))
            .args(["--cluster-replicas", "1", "--cluster-yes"]);
        let output = create
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("redis-cli: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&output.stdout)
            ));
        }
        for port in &ports {
            wait_for(*port, "CLUSTER INFO", "cluster_state:ok")?;
        }
        // A replica that never reached its primary would not take over from it.
        for port in &ports {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !cli(*port, "INFO replication").is_ok_and(|info| {
                info.contains("role:master") || info.contains("master_link_status:up")
            }) {
                if Instant::now() >= deadline {
                    return Err(format!("127.0.0.1:{port} never reached its primary"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(cluster)
    }

    /// `redis://ADDRESS:PORT` of every node.
    pub fn nodes(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|port| format!("redis://{}:{port}", self.address))
            .collect()
    }

    /// The ports of the nodes that are primaries now (as the first node that answers sees it).
    pub fn primaries(&self) -> Vec<u16> {
        self.roles()
            .into_iter()
            .filter(|(_, primary)| *primary)
            .map(|(port, _)| port)
            .collect()
    }

    /// `(port, is primary)` of the nodes that answer, from `CLUSTER NODES` of the first of them.
    fn roles(&self) -> Vec<(u16, bool)> {
        for port in &self.ports {
            if let Ok(nodes) = cli(*port, "CLUSTER NODES") {
                return nodes
                    .lines()
                    .filter_map(|line| {
                        let fields: Vec<&str> = line.split_whitespace().collect();
                        let address = fields.get(1)?;
                        let port: u16 = address.split(['@', ':']).nth(1)?.parse().ok()?;
                        let flags = fields.get(2)?;
                        (!flags.contains("fail")).then(|| (port, flags.contains("master")))
                    })
                    .collect();
            }
        }
        Vec::new()
    }

    /// The primary that serves `key` now.
    pub fn primary_of(&self, key: &str) -> Option<u16> {
        for port in self.primaries() {
            if let Ok(reply) = cli(port, &format!("CLUSTER KEYSLOT {key}"))
                && let Ok(slot) = reply.trim().parse::<u16>()
                && let Ok(shards) = cli(port, "CLUSTER SLOTS")
            {
                // `redis-cli` prints the reply flat: start, end, primary ip, port, id, replicas...
                let lines: Vec<&str> = shards.lines().map(str::trim).collect();
                for window in lines.windows(4) {
                    if let (Ok(start), Ok(end), Ok(port)) = (
                        window[0].parse::<u16>(),
                        window[1].parse::<u16>(),
                        window[3].parse::<u16>(),
                    ) && window[2] == self.address
                        && (start..=end).contains(&slot)
                    {
                        return Some(port);
                    }
                }
            }
        }
        None
    }

    /// Kills the node on `port` (`kill -9`).
    pub fn kill(&self, port: u16) {
        let mut servers = self
            .servers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (server_port, child) in servers.iter_mut() {
            if *server_port == port {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Starts the node on `port` again, on its data (it rejoins the cluster: a primary that was
    /// replaced comes back as a replica of its replacement).
    pub fn restart(&self, port: u16) -> Result<(), String> {
        self.kill(port);
        self.launch(port)?;
        wait_for(port, "PING", "PONG")
    }

    /// Waits until another node than `old` (a killed primary) serves `key`'s slot, and the
    /// cluster is whole again; returns that node's port.
    pub fn wait_new_primary(&self, key: &str, old: u16, limit: Duration) -> Result<u16, String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(primary) = self.primary_of(key).filter(|primary| *primary != old)
                && cli(primary, "CLUSTER INFO").is_ok_and(|info| info.contains("cluster_state:ok"))
            {
                return Ok(primary);
            }
            if Instant::now() >= deadline {
                return Err(format!("no replica took over from 127.0.0.1:{old}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn launch(&self, port: u16) -> Result<(), String> {
        let dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut command = Command::new("setpriv");
        command
            .args(["--pdeathsig", "KILL", "redis-server"])
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(
                (self.address != "127.0.0.1")
                    // The bridge is this machine's own: no password, as on loopback.
                    .then(|| {
                        [
                            self.address.as_str(),
                            "--cluster-announce-ip",
                            &self.address,
                            "--protected-mode",
                            "no",
                        ]
                    })
                    .into_iter()
                    .flatten(),
            )
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--appendonly", "no", "--save", ""])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn(command).map_err(|e| format!("redis-server: {e}"))?;
        self.servers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((port, child));
        Ok(())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for port in self.ports.clone() {
            self.kill(port);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the directories of clusters whose test process is gone (the shared cluster's stays
/// until then).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("routemq-cluster-")
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !std::path::Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Spawns `command` from a thread that lives as long as the process, so that a child started
/// with `--pdeathsig` outlives the test that asked for it but not the process.
fn spawn(command: Command) -> std::io::Result<Child> {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<Request>();
        std::thread::spawn(move || {
            for (mut command, reply) in incoming {
                let _ = reply.send(command.spawn());
            }
            // Every sender is gone only when the process ends: park until then.
            loop {
                std::thread::park();
            }
        });
        Mutex::new(requests)
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .send((command, reply))
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

/// `count` ports that are free on `address` and loopback, with their cluster bus ports (+10000)
/// free too, below the kernel's ephemeral range (from 32768), and never handed out twice in
/// this process (two clusters starting at once cannot pick the same ones).
fn spare_ports(address: &str, count: usize) -> Result<Vec<u16>, String> {
    static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut taken = TAKEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let free = |port: u16| {
        TcpListener::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind((address, port)).is_ok()
    };
    let mut ports = Vec::new();
    for _ in 0..2_000 {
        let port = fastrand::u16(20_000..22_700);
        if !taken.contains(&port) && !ports.contains(&port) && free(port) && free(port + 10_000) {
            ports.push(port);
            if ports.len() == count {
                taken.extend(&ports);
                return Ok(ports);
            }
        }
    }
    Err("no spare ports".to_owned())
}

/// `redis-cli -p PORT` with `command`'s words; its output.
fn cli(port: u16, command: &str) -> Result<String, String> {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(command.split_whitespace())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() && !text.starts_with("Could not connect") {
        Ok(text)
    } else {
        Err(text)
    }
}

/// Waits up to 30 s for `command` on `port` to answer with text containing `expected`.
fn wait_for(port: u16, command: &str, expected: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if cli(port, command).is_ok_and(|reply| reply.contains(expected)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "127.0.0.1:{port} did not answer {command} with {expected}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
