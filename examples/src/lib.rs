//! The example jobs from RouteMQ's documentation, written for routemq: a notification, an email,
//! data processing and a report. The `worker` binary runs them; `quickstart` dispatches a mix of
//! them and works the queue until it is empty.
//!
//! Their failures are deterministic so that the quick start always shows the same story: one email
//! fails once and succeeds on its retry, one has no valid address and ends in the failed store.

pub mod jobs;
