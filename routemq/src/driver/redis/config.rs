//! Where the Redis server is: `REDIS_URL`, or RouteMQ's `REDIS_HOST`/`PORT`/`DB`/`PASSWORD`/`USERNAME`;
//! for a cluster, `REDIS_CLUSTER_NODES`. Passwords never appear in logs or errors: [`redact`]
//! hides them.

use std::time::Duration;

pub use crate::config::redact_url as redact;
use crate::config::{ConfigError, number_var, percent_encode};

/// The URL schemes the Redis client accepts.
const SCHEMES: [&str; 4] = ["redis://", "rediss://", "redis+unix://", "unix://"];

/// The Redis URL (`REDIS_URL` wins), with RouteMQ's defaults (`localhost:6379`, database 0), read
/// through `lookup` (the environment: [`crate::config::env_var`]).
pub fn url(lookup: impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    if let Some(url) = lookup("REDIS_URL") {
        let url = url.trim();
        if !SCHEMES.iter().any(|scheme| url.starts_with(scheme)) {
            return Err(ConfigError {
                variable: "REDIS_URL".to_owned(),
                value: redact(url),
                expected: "a redis://, rediss:// or redis+unix:// URL",
            });
        }
        return Ok(url.to_owned());
    }
    let host = lookup("REDIS_HOST").unwrap_or_else(|| "localhost".to_owned());
    let port = number_var(
        &lookup,
        "REDIS_PORT",
        1..=65_535,
        "a port number from 1 to 65535",
    )?
    .unwrap_or(6379);
    let db = number_var(&lookup, "REDIS_DB", 0..=u32::MAX, "a database number ≥ 0")?.unwrap_or(0);
    let auth = match (lookup("REDIS_USERNAME"), lookup("REDIS_PASSWORD")) {
        (Some(user), Some(password)) => {
            format!("{}:{}@", percent_encode(&user), percent_encode(&password))
        }
        (None, Some(password)) => format!(":{}@", percent_encode(&password)),
        (Some(user), None) => format!("{}@", percent_encode(&user)),
        (None, None) => String::new(),
    };
    Ok(format!("redis://{auth}{}:{port}/{db}", host.trim()))
}

/// The Redis URL from the environment (see [`url()`]).
pub fn url_from_env() -> Result<String, ConfigError> {
    url(crate::config::env_var)
}

/// The cluster nodes of `REDIS_CLUSTER_NODES`: comma-separated `redis://` (or `rediss://`) URLs
/// of some of the cluster's nodes.
pub fn cluster_nodes(lookup: impl Fn(&str) -> Option<String>) -> Result<Vec<String>, ConfigError> {
    const VARIABLE: &str = "REDIS_CLUSTER_NODES";
    let invalid = |value: &str| ConfigError {
        variable: VARIABLE.to_owned(),
        value: redact(value),
        expected: "comma-separated redis:// or rediss:// URLs of the cluster's nodes",
    };
    let value = lookup(VARIABLE).ok_or_else(|| invalid(""))?;
    let nodes: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|node| !node.is_empty())
        .map(str::to_owned)
        .collect();
    let tcp = |node: &String| node.starts_with("redis://") || node.starts_with("rediss://");
    if nodes.is_empty() || !nodes.iter().all(tcp) {
        return Err(invalid(&value));
    }
    Ok(nodes)
}

/// The key prefix: `REDIS_PREFIX`, by default RouteMQ's `routemq:queue:`.
pub fn prefix(lookup: impl Fn(&str) -> Option<String>) -> String {
    lookup("REDIS_PREFIX").unwrap_or_else(|| super::KeyLayout::default().prefix().to_owned())
}

/// `REDIS_WAIT_REPLICAS` (how many replicas must confirm each dispatch; unset or 0: none) and
/// `REDIS_WAIT_TIMEOUT_MS` (how long a dispatch waits for them, default 1000).
pub fn replicas(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<(u32, Duration)>, ConfigError> {
    let replicas = number_var(
        &lookup,
        "REDIS_WAIT_REPLICAS",
        0..=1_000,
        "a number of replicas",
    )?;
    let timeout = number_var(
        &lookup,
        "REDIS_WAIT_TIMEOUT_MS",
        1..=25_000,
        "milliseconds, from 1 to 25000",
    )?
    .unwrap_or(1_000);
    Ok(replicas
        .filter(|replicas| *replicas > 0)
        .map(|replicas| (replicas, Duration::from_millis(u64::from(timeout)))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::vars;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("redis://:s3cret@cache:6379/2"),
            "redis://:***@cache:6379/2"
        );
        assert_eq!(
            redact("rediss://app:p%40ss@cache:6380"),
            "rediss://app:***@cache:6380"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn routemqs_variables_build_the_url() {
        assert_eq!(
            url(vars(&[])).expect("defaults"),
            "redis://localhost:6379/0"
        );
        let set = [
            ("REDIS_HOST", "cache"),
            ("REDIS_PORT", "6380"),
            ("REDIS_DB", "3"),
            ("REDIS_PASSWORD", "p@ss/word"),
        ];
        assert_eq!(
            url(vars(&set)).expect("set"),
            "redis://:p%40ss%2Fword@cache:6380/3"
        );
        let both = [
            ("REDIS_URL", "redis://127.0.0.1:6379/9"),
            ("REDIS_HOST", "x"),
        ];
        assert_eq!(url(vars(&both)).expect("url"), "redis://127.0.0.1:6379/9");
    }

    #[test]
    fn cluster_nodes_and_replicas() {
        let nodes = [(
            "REDIS_CLUSTER_NODES",
            " redis://10.0.0.1:7000, redis://:pw@10.0.0.2:7000 ,",
        )];
        assert_eq!(
            cluster_nodes(vars(&nodes)).expect("nodes"),
            ["redis://10.0.0.1:7000", "redis://:pw@10.0.0.2:7000"]
        );
        for bad in [
            vec![],
            vec![("REDIS_CLUSTER_NODES", ",")],
            vec![("REDIS_CLUSTER_NODES", "10.0.0.1:7000")],
            vec![("REDIS_CLUSTER_NODES", "redis://a:1,unix:///tmp/r.sock")],
        ] {
            let error = cluster_nodes(vars(&bad)).expect_err("not a node list");
            assert_eq!(error.variable, "REDIS_CLUSTER_NODES");
        }
        assert_eq!(replicas(vars(&[])).expect("unset"), None);
        assert_eq!(
            replicas(vars(&[("REDIS_WAIT_REPLICAS", "0")])).expect("off"),
            None
        );
        assert_eq!(
            replicas(vars(&[
                ("REDIS_WAIT_REPLICAS", "1"),
                ("REDIS_WAIT_TIMEOUT_MS", "250")
            ]))
            .expect("set"),
            Some((1, Duration::from_millis(250)))
        );
        assert_eq!(
            replicas(vars(&[("REDIS_WAIT_REPLICAS", "one")]))
                .expect_err("a number")
                .variable,
            "REDIS_WAIT_REPLICAS"
        );
        assert_eq!(prefix(vars(&[("REDIS_PREFIX", "app:")])), "app:");
    }

    #[test]
    fn unusable_values_are_errors_naming_the_variable() {
        let error = url(vars(&[("REDIS_URL", "http://user:secret@cache")])).expect_err("scheme");
        assert_eq!(error.variable, "REDIS_URL");
        assert!(!error.to_string().contains("secret"), "{error}");
        assert_eq!(
            url(vars(&[("REDIS_PORT", "sixty")]))
                .expect_err("port")
                .variable,
            "REDIS_PORT"
        );
        assert_eq!(
            url(vars(&[("REDIS_DB", "-1")])).expect_err("db").variable,
            "REDIS_DB"
        );
    }
}
