//! A driver for the test and the environment that points a worker process (`test-worker`) at the
//! same store, for the end-to-end tests that run on every driver.

use std::future::Future;
use std::sync::Arc;

use routemq::driver::QueueDriver;

use crate::ledger::unique_key;
use crate::services::{delete_redis_keys, redis_url};

/// A process's environment: `(variable, value)` pairs.
pub type Env = Vec<(String, String)>;

/// A fresh SQLite file: its driver, and the environment of a process on it.
///
/// # Panics
/// When the file cannot be opened.
pub async fn sqlite(name: &str) -> (Arc<dyn QueueDriver>, Env) {
    use routemq::driver::sqlite::SqliteDriver;
    let path = crate::sqlite_files::fresh_path(name);
    let path = path.to_str().expect("utf-8").to_owned();
    let driver = SqliteDriver::open(&path).await.expect("open");
    let env = vec![
        ("QUEUE_CONNECTION".to_owned(), "sqlite".to_owned()),
        ("QUEUE_SQLITE_PATH".to_owned(), path),
    ];
    (Arc::new(driver), env)
}

/// Runs `test` with a Redis driver under a key prefix of its own and the environment of a
/// process on it; the prefix's keys are deleted afterwards, whether the test passed or not.
/// Skipped (or failed under `ROUTEMQ_TEST_REQUIRE_SERVICES=1`) without a Redis URL.
///
/// # Panics
/// When the test does, or Redis cannot be reached.
pub async fn with_redis<F, Fut>(name: &str, test: F)
where
    F: FnOnce(Arc<dyn QueueDriver>, Env) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    use routemq::driver::redis::{KeyLayout, RedisDriver};
    let Some(url) = redis_url() else { return };
    let prefix = format!("{}:", unique_key(name));
    let driver = RedisDriver::connect(&url, KeyLayout::new(prefix.clone(), false))
        .await
        .expect("connect");
    let env = vec![
        ("QUEUE_CONNECTION".to_owned(), "redis".to_owned()),
        ("REDIS_URL".to_owned(), url.clone()),
        ("REDIS_PREFIX".to_owned(), prefix.clone()),
    ];
    let result = tokio::spawn(test(Arc::new(driver), env)).await;
    delete_redis_keys(&url, &prefix).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic.into_panic());
    }
}

/// [`with_redis`] on the test Redis Cluster (see [`crate::redis_cluster`]): the driver and the
/// worker's environment (`QUEUE_CONNECTION=redis-cluster`, `REDIS_CLUSTER_NODES`) use a key
/// prefix of the test's own, whose keys are deleted afterwards.
///
/// # Panics
/// When the test does, or the cluster cannot be reached.
pub async fn with_redis_cluster<F, Fut>(name: &str, test: F)
where
    F: FnOnce(Arc<dyn QueueDriver>, Env) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    use routemq::driver::redis::{KeyLayout, RedisDriver};
    let Some(nodes) = crate::redis_cluster::cluster_nodes() else {
        return;
    };
    let prefix = format!("{}:", unique_key(name));
    let driver = RedisDriver::connect_cluster(&nodes, KeyLayout::new(prefix.clone(), true))
        .await
        .expect("connect to the cluster");
    let env = vec![
        ("QUEUE_CONNECTION".to_owned(), "redis-cluster".to_owned()),
        ("REDIS_CLUSTER_NODES".to_owned(), nodes.join(",")),
        ("REDIS_PREFIX".to_owned(), prefix.clone()),
    ];
    let result = tokio::spawn(test(Arc::new(driver), env)).await;
    for node in &nodes {
        delete_redis_keys(node, &prefix).await;
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic.into_panic());
    }
}

/// `env` with `extra` variables added (later ones win).
pub fn with_vars(env: &[(String, String)], extra: &[(&str, String)]) -> Env {
    let mut env = env.to_vec();
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    env
}

/// A 32-byte key as `ROUTEMQ_KEY` takes it (base64).
pub fn key_base64(key: [u8; 32]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// The environments of a key rotation from `old` to `new`, each `env` with its key variables.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// `old` as `ROUTEMQ_KEY`.
    pub old: Env,
    /// `new` as `ROUTEMQ_KEY`, `old` in `ROUTEMQ_PREVIOUS_KEYS`.
    pub rotated: Env,
    /// `new` alone.
    pub new: Env,
}

impl Rotation {
    /// The three environments of a rotation from `old` to `new`.
    pub fn new(env: &Env, old: [u8; 32], new: [u8; 32]) -> Self {
        Self {
            old: with_vars(env, &[("ROUTEMQ_KEY", key_base64(old))]),
            rotated: with_vars(
                env,
                &[
                    ("ROUTEMQ_KEY", key_base64(new)),
                    ("ROUTEMQ_PREVIOUS_KEYS", key_base64(old)),
                ],
            ),
            new: with_vars(env, &[("ROUTEMQ_KEY", key_base64(new))]),
        }
    }
}

/// `queue-work` arguments that drain `queue` and exit.
pub fn drain_args(queue: &str) -> [&str; 6] {
    [
        "queue-work",
        "--queue",
        queue,
        "--stop-when-empty",
        "--sleep",
        "0.1",
    ]
}

/// What an end-to-end proof starts from: a queue manager whose connection `connection` is the
/// driver under test, a queue of its own, and a ledger file in a directory of its own (removed
/// when the stage is dropped).
#[derive(Debug)]
pub struct Stage {
    /// The manager to dispatch through.
    pub manager: routemq::QueueManager,
    /// The test's queue.
    pub queue: String,
    /// The ledger file's path, for the jobs.
    pub path: String,
    /// The ledger file.
    pub ledger: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl Stage {
    /// A stage named after `name`, dispatching to `driver` as connection `connection`, which is
    /// also the manager's default (where chains go).
    ///
    /// # Panics
    /// When the directory cannot be made.
    pub fn new(driver: &Arc<dyn QueueDriver>, connection: &str, name: &str) -> Self {
        let manager = routemq::QueueManager::new(routemq::Settings {
            default_connection: connection.to_owned(),
            ..routemq::Settings::default()
        });
        manager.register(connection, Arc::clone(driver));
        let queue = unique_key(name);
        let dir = std::env::temp_dir().join(&queue);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ledger = dir.join("jobs.ledger");
        let path = ledger.to_str().expect("utf-8").to_owned();
        Self {
            manager,
            queue,
            path,
            ledger,
            dir,
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
