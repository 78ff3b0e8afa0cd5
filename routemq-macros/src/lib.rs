//! The `#[job]` attribute for [routemq](https://docs.rs/routemq).
//!
//! Do not depend on this crate directly: use `routemq::job` (re-exported from `routemq`, with the
//! full documentation and runnable examples there).

mod attr;
mod expand;

use proc_macro::TokenStream;

/// Turns a struct into a routemq job.
///
/// The full reference, with examples that compile, is on `routemq::job`. In short:
///
/// | argument | type | default |
/// |---|---|---|
/// | `max_tries` | integer ≥ 1 | `3` |
/// | `timeout` | seconds, > 0 | `60` |
/// | `retry_after` | seconds, ≥ 0 | `0` |
/// | `queue` | string | `"default"` |
/// | `name` | string | module path and type name, dotted (`my_app.jobs.SendEmailJob`) |
/// | `connection` | string | none (the configured default connection) |
/// | `backoff` | `"exponential"` or `"fixed"` | `"fixed"` |
/// | `max_delay` | seconds | none (the worker's `QUEUE_RETRY_MAX_DELAY`) |
/// | `jitter` | fraction 0.0 ..= 1.0 | none (the worker's `QUEUE_RETRY_JITTER`) |
/// | `crate` | path | `::routemq` |
#[proc_macro_attribute]
pub fn job(args: TokenStream, input: TokenStream) -> TokenStream {
    let output = expand::expand(args.into(), input.into());
    if std::env::var_os("ROUTEMQ_MACROS_DEBUG").is_some() {
        eprintln!("{output}");
    }
    output.into()
}
