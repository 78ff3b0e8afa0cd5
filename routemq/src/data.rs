//! Shared application state for handlers: values registered once on the worker (a database pool,
//! an HTTP client, a mailer) and looked up by type in any job with [`JobContext::data`].
//!
//! ```
//! use routemq::prelude::*;
//!
//! #[derive(Debug)]
//! struct Mailer { from: String }
//!
//! #[job]
//! struct Welcome { to: String }
//!
//! impl Job for Welcome {
//!     async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
//!         let mailer = ctx.data::<Mailer>()?;
//!         println!("{} -> {}", mailer.from, self.to);
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // A worker: `Worker::new(..).data(Mailer { .. })`; the CLI: `routemq::cli::App::new().data(..)`.
//! // In a test:
//! let outcome = routemq::testing::perform(Welcome { to: "ada@example.com".into() })
//!     .data(Mailer { from: "shop@example.com".into() })
//!     .await;
//! assert!(outcome.is_ok());
//! # }
//! ```
//!
//! [`JobContext::data`]: crate::JobContext::data

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// One registered value and the name of its type (for `Debug` and error messages).
#[derive(Clone)]
struct Entry {
    value: Arc<dyn Any + Send + Sync>,
    type_name: &'static str,
}

/// Values by type, cheap to clone (one reference count: the values are shared, not copied).
///
/// Register a value once per type; registering the same type again replaces the earlier value.
/// Types that are cheap handles already (`sqlx::PgPool`, `reqwest::Client`, a `ConnectionManager`)
/// can be registered as they are; wrap anything else in your own struct.
#[derive(Clone, Default)]
pub struct AppData {
    values: Arc<HashMap<TypeId, Entry>>,
}

impl AppData {
    /// No values.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value` (replacing an earlier value of the same type).
    #[must_use]
    pub fn with<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.insert(value);
        self
    }

    /// Adds `value` (replacing an earlier value of the same type).
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        Arc::make_mut(&mut self.values).insert(
            TypeId::of::<T>(),
            Entry {
                value: Arc::new(value),
                type_name: type_name::<T>(),
            },
        );
    }

    /// The value of type `T`, if one was registered.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.values
            .get(&TypeId::of::<T>())
            .and_then(|entry| entry.value.downcast_ref::<T>())
    }

    /// Adds every value of `other`, replacing values of the same types.
    pub fn extend(&mut self, other: AppData) {
        let other = Arc::unwrap_or_clone(other.values);
        Arc::make_mut(&mut self.values).extend(other);
    }

    /// How many types have a value.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no value is registered.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The registered types' names, sorted (for logs and error messages).
    pub fn type_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.values.values().map(|e| e.type_name).collect();
        names.sort_unstable();
        names
    }
}

impl fmt::Debug for AppData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.type_names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Pool(u32);

    #[test]
    fn values_are_found_by_type_and_replaced_by_type() {
        let mut data = AppData::new().with(Pool(1)).with("label");
        assert_eq!(data.get::<Pool>(), Some(&Pool(1)));
        assert_eq!(data.get::<&str>(), Some(&"label"));
        assert_eq!(data.get::<String>(), None);
        data.insert(Pool(2));
        assert_eq!(data.get::<Pool>(), Some(&Pool(2)));
        assert_eq!(data.len(), 2);
        let mut more = AppData::new().with(7u8);
        more.extend(data.clone());
        assert_eq!((more.len(), more.get::<u8>()), (3, Some(&7)));
        assert_eq!(
            format!("{data:?}"),
            r#"{"&str", "routemq::data::tests::Pool"}"#
        );
    }
}
