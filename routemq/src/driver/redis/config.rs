//! Where the Redis server is: `REDIS_URL`, or RouteMQ's `REDIS_HOST`/`PORT`/`DB`/`PASSWORD`/`USERNAME`.
//! Passwords never appear in logs or errors: [`redact`] hides them.

use crate::config::env_var;

/// The Redis URL from the environment (`REDIS_URL` wins), with RouteMQ's defaults
/// (`localhost:6379`, database 0).
pub fn url_from_env() -> String {
    if let Some(url) = env_var("REDIS_URL") {
        return url;
    }
    let host = env_var("REDIS_HOST").unwrap_or_else(|| "localhost".to_owned());
    let port = env_var("REDIS_PORT").unwrap_or_else(|| "6379".to_owned());
    let db = env_var("REDIS_DB").unwrap_or_else(|| "0".to_owned());
    let auth = match (env_var("REDIS_USERNAME"), env_var("REDIS_PASSWORD")) {
        (Some(user), Some(password)) => format!("{}:{}@", encode(&user), encode(&password)),
        (None, Some(password)) => format!(":{}@", encode(&password)),
        (Some(user), None) => format!("{}@", encode(&user)),
        (None, None) => String::new(),
    };
    format!("redis://{auth}{host}:{port}/{db}")
}

/// Percent-encodes everything but unreserved characters (for user names and passwords).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The URL with any password replaced by `***`, safe to log.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, None), |(a, p)| (a, Some(p)));
    let redacted = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    match path {
        Some(path) => format!("{scheme}://{redacted}/{path}"),
        None => format!("{scheme}://{redacted}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(encode("p@ss word"), "p%40ss%20word");
    }
}
