//! Running a binary from a test: to completion, bounded in time, with its output captured; or in
//! the background as a `test-worker` process that is killed if the test ends early.

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs an admin command of `binary` (a `test-worker`) with `env` (logging warnings only, no
/// `DATABASE_URL` of the test's own), to completion within a minute.
pub fn run_command(binary: &str, env: &[(String, String)], args: &[&str]) -> Output {
    let mut command = Command::new(binary);
    command
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    run_bounded(command, Duration::from_secs(60))
}

/// A command's stdout as JSON.
///
/// # Panics
/// When it is not JSON (its stderr is shown).
pub fn json_of(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&output.stderr)))
}

/// Runs `command` to completion with stdout and stderr captured.
///
/// # Panics
/// When it cannot start, or runs longer than `limit` (it is killed first).
pub fn run_bounded(mut command: Command, limit: Duration) -> Output {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buffer = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buffer);
            }
            buffer
        })
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} ran for more than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout"),
        stderr: stderr.join().expect("stderr"),
    }
}

/// A worker process (the tests crate's `test-worker` binary, passed in by path), killed if the
/// test ends early. Its log (stderr, at `warn`) goes to a file, shown when it does not stop.
#[derive(Debug)]
pub struct Process(Child, std::path::PathBuf, std::path::PathBuf);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_file(&self.1);
        let _ = std::fs::remove_file(&self.2);
    }
}

impl Process {
    /// Starts `binary` with `args` and `env` (and no `DATABASE_URL` of the caller's); its stdout
    /// is kept for [`Process::stdout`].
    pub fn start(binary: &str, env: &[(String, String)], args: &[String]) -> Self {
        let base = crate::ledger::unique_key("routemq-worker");
        let log = std::env::temp_dir().join(format!("{base}.log"));
        let out = std::env::temp_dir().join(format!("{base}.out"));
        let stderr = std::fs::File::create(&log).expect("log file");
        let stdout = std::fs::File::create(&out).expect("stdout file");
        let child = Command::new(binary)
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("DATABASE_URL")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn worker");
        Self(child, log, out)
    }

    /// What the process printed on stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.2).unwrap_or_default()
    }

    /// The port of the `http://127.0.0.1:PORT/` address the process printed (a dashboard bound to
    /// port 0), waiting up to ten seconds for it.
    ///
    /// # Panics
    /// When none is printed by then.
    pub fn printed_port(&self) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.stdout();
            if let Some(port) = out
                .split("http://127.0.0.1:")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .and_then(|port| port.parse().ok())
            {
                return port;
            }
            assert!(Instant::now() < deadline, "no address printed: {out:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Sends signal `name` (`TERM`, `INT`, `KILL`) to the process.
    ///
    /// # Panics
    /// When `kill` fails.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.0.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit.
    ///
    /// # Panics
    /// After `limit`.
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let log = std::fs::read_to_string(&self.1).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "worker {} did not stop within {limit:?}; its log ends with:\n{}",
                    self.0.id(),
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
