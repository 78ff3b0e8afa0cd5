//! Where the Redis server is: `REDIS_URL`, or RouteMQ's `REDIS_HOST`/`PORT`/`DB`/`PASSWORD`/`USERNAME`.
//! Passwords never appear in logs or errors: [`redact`] hides them.

pub use crate::config::redact_url as redact;
use crate::config::{env_var, percent_encode};

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
        (Some(user), Some(password)) => {
            format!("{}:{}@", percent_encode(&user), percent_encode(&password))
        }
        (None, Some(password)) => format!(":{}@", percent_encode(&password)),
        (Some(user), None) => format!("{}@", percent_encode(&user)),
        (None, None) => String::new(),
    };
    format!("redis://{auth}{host}:{port}/{db}")
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
    }
}
