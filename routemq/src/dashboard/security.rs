//! Who may use the dashboard: authentication, the loopback host check, CSRF tokens on `POST`,
//! the read-only mode, and the security headers of every response.

use axum::extract::{Request, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, HOST, REFERRER_POLICY, WWW_AUTHENTICATE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::Shared;
use crate::config::{ConfigError, env_var};

/// The header a `POST` carries the session's CSRF token in.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// How the dashboard checks who is asking.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Auth {
    /// No check: allowed on loopback addresses only.
    None,
    /// A shared secret: `Authorization: Bearer TOKEN`, or basic auth with it as the password.
    Token(String),
    /// Basic auth with this user and password.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        match self {
            Self::None => f.write_str("None"),
            Self::Token(_) => f.write_str("Token(..)"),
            Self::Basic { user, .. } => f.debug_struct("Basic").field("user", user).finish(),
        }
    }
}

impl Auth {
    /// `ROUTEMQ_DASHBOARD_TOKEN`, else `ROUTEMQ_DASHBOARD_USER` with
    /// `ROUTEMQ_DASHBOARD_PASSWORD`, else [`Auth::None`]. A user without a password (or the
    /// reverse) is an error.
    pub fn from_env() -> Result<Self, ConfigError> {
        if let Some(token) = env_var("ROUTEMQ_DASHBOARD_TOKEN") {
            return Ok(Self::Token(token.trim().to_owned()).checked());
        }
        match (
            env_var("ROUTEMQ_DASHBOARD_USER"),
            env_var("ROUTEMQ_DASHBOARD_PASSWORD"),
        ) {
            (None, None) => Ok(Self::None),
            (Some(user), Some(password)) => Ok(Self::Basic { user, password }.checked()),
            (Some(_), None) => Err(ConfigError {
                variable: "ROUTEMQ_DASHBOARD_PASSWORD".to_owned(),
                value: String::new(),
                expected: "a password for ROUTEMQ_DASHBOARD_USER",
            }),
            (None, Some(_)) => Err(ConfigError {
                variable: "ROUTEMQ_DASHBOARD_USER".to_owned(),
                value: String::new(),
                expected: "a user name for ROUTEMQ_DASHBOARD_PASSWORD",
            }),
        }
    }

    /// This, or [`Auth::None`] when a secret is empty (an empty token would let anyone in).
    pub(crate) fn checked(self) -> Self {
        match &self {
            Self::Token(token) if token.is_empty() => Self::None,
            Self::Basic { user, password } if user.is_empty() || password.is_empty() => Self::None,
            _ => self,
        }
    }

    /// Whether the request's `Authorization` header satisfies this.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let given = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let bearer = given.strip_prefix("Bearer ");
        let basic = given
            .strip_prefix("Basic ")
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok());
        let basic = basic.as_deref().and_then(|b| b.split_once(':'));
        match self {
            Self::None => true,
            Self::Token(token) => {
                bearer.is_some_and(|t| same(t.trim(), token))
                    | basic.is_some_and(|(_, password)| same(password, token))
            }
            Self::Basic { user, password } => {
                basic.is_some_and(|(u, p)| same(u, user) & same(p, password))
            }
        }
    }
}

/// Compares secrets in time independent of where they differ.
fn same(given: &str, expected: &str) -> bool {
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0_u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Whether a `Host` header names this machine's loopback interface.
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn refuse(status: StatusCode, message: &'static str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// Checks every request, then adds the security headers to the response.
pub(crate) async fn guard(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    let context = &shared.0;
    let headers = request.headers();
    let path = request.uri().path();
    let refused = if path == "/health" {
        None
    } else if context.loopback_hosts_only && !loopback_host(headers) {
        Some(refuse(
            StatusCode::FORBIDDEN,
            "this dashboard serves loopback host names only",
        ))
    } else if !context.auth.admits(headers) {
        let mut response = refuse(StatusCode::UNAUTHORIZED, "authentication required");
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"routemq dashboard\", charset=\"UTF-8\""),
        );
        Some(response)
    } else if !matches!(*request.method(), Method::GET | Method::HEAD) {
        if context.read_only {
            Some(refuse(StatusCode::FORBIDDEN, "this dashboard is read-only"))
        } else if !headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| same(t, &context.csrf))
        {
            Some(refuse(
                StatusCode::FORBIDDEN,
                "missing or wrong X-CSRF-Token (reload the page)",
            ))
        } else {
            None
        }
    } else {
        None
    };
    let api = path.starts_with("/api/");
    let mut response = match refused {
        Some(response) => response,
        None => next.run(request).await,
    };
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if api {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: axum::http::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).expect("header"));
        headers
    }

    #[test]
    fn tokens_and_passwords_are_checked() {
        let token = Auth::Token("s3cret".to_owned());
        assert!(token.admits(&with(AUTHORIZATION, "Bearer s3cret")));
        assert!(!token.admits(&with(AUTHORIZATION, "Bearer s3cre")));
        // basic auth, any user, the token as password: "me:s3cret"
        assert!(token.admits(&with(AUTHORIZATION, "Basic bWU6czNjcmV0")));
        assert!(!token.admits(&HeaderMap::new()));
        let basic = Auth::Basic {
            user: "me".to_owned(),
            password: "s3cret".to_owned(),
        };
        assert!(basic.admits(&with(AUTHORIZATION, "Basic bWU6czNjcmV0")));
        // "you:s3cret"
        assert!(!basic.admits(&with(AUTHORIZATION, "Basic eW91OnMzY3JldA==")));
        assert!(!basic.admits(&with(AUTHORIZATION, "Bearer s3cret")));
        assert_eq!(format!("{token:?}"), "Token(..)");
        // ":" — an empty user and password.
        let empty = Auth::Token(String::new()).checked();
        assert_eq!(empty, Auth::None, "an empty token is no authentication");
        let half = Auth::Basic {
            user: "me".to_owned(),
            password: String::new(),
        };
        assert_eq!(half.checked(), Auth::None);
    }

    #[test]
    fn only_loopback_hosts_pass() {
        for host in [
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "LOCALHOST",
            "127.0.0.2",
        ] {
            assert!(loopback_host(&with(HOST, host)), "{host}");
        }
        for host in [
            "evil.example:8080",
            "192.168.1.4",
            "[2001:db8::1]:80",
            "localhost.evil.example",
        ] {
            assert!(!loopback_host(&with(HOST, host)), "{host}");
        }
        assert!(!loopback_host(&HeaderMap::new()));
    }
}
