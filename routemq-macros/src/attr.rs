//! The `#[job(...)]` argument model and its parser.
//!
//! Every argument error is collected (not just the first) so that a user sees all of them in one
//! build. Each error is spanned at the offending token: the key for unknown, duplicate and bare
//! arguments, the value for a wrong literal.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::{Expr, ExprLit, Lit, LitStr, Path, Token};

/// The valid argument names, in the order the docs list them.
pub(crate) const KEYS: &[&str] = &[
    "max_tries",
    "timeout",
    "retry_after",
    "queue",
    "name",
    "connection",
    "backoff",
    "max_delay",
    "jitter",
    "unique_for",
    "unique_until",
    "max_exceptions",
    "retry_until",
    "priority",
    "encrypted",
    "crate",
];

/// Longest queue or job name accepted (RouteMQ's `VARCHAR(255)` column).
const MAX_NAME_LEN: usize = 255;

/// The validated arguments of one `#[job(...)]`; `None` means "use the default".
#[derive(Default)]
pub(crate) struct JobArgs {
    pub(crate) max_tries: Option<u32>,
    pub(crate) timeout: Option<u64>,
    pub(crate) retry_after: Option<u64>,
    pub(crate) queue: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) connection: Option<String>,
    pub(crate) backoff: Option<bool>,
    pub(crate) max_delay: Option<f64>,
    pub(crate) jitter: Option<f64>,
    /// Seconds a unique job's key is held.
    pub(crate) unique_for: Option<u64>,
    /// `true`: unique until the job finishes (the default); `false`: until it starts.
    pub(crate) unique_until_finish: Option<bool>,
    /// Where `unique_until` was written, for the error when `unique_for` is missing.
    pub(crate) unique_until_span: Option<Span>,
    /// Fail for good after this many exceptions, even with tries left.
    pub(crate) max_exceptions: Option<u32>,
    /// Seconds after the dispatch after which no more tries are made.
    pub(crate) retry_until: Option<u64>,
    /// The job's priority within its queue (higher runs first).
    pub(crate) priority: Option<u8>,
    /// The job's data is stored sealed.
    pub(crate) encrypted: Option<bool>,
    pub(crate) krate: Option<Path>,
    /// Keys seen so far, valid or not, so that a repeat is reported even when the first was bad.
    seen: Vec<&'static str>,
}

/// Collects errors so that all of them are reported together.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    pub(crate) fn into_result(self) -> Result<(), syn::Error> {
        self.0.map_or(Ok(()), Err)
    }
}

impl JobArgs {
    /// Parses one `key = value` entry, recording any problem in `errors`.
    ///
    /// Returns `Err` only for token streams that cannot be read further at all.
    /// Checks arguments that depend on each other, after all are parsed.
    pub(crate) fn check(&self, errors: &mut Errors) {
        if let (Some(span), None) = (self.unique_until_span, self.unique_for) {
            errors.at(
                span,
                "`unique_until` needs `unique_for`: how long the key is held at most, e.g. `unique_for = 3600`",
            );
        }
    }

    pub(crate) fn parse_entry(
        &mut self,
        meta: &ParseNestedMeta<'_>,
        errors: &mut Errors,
    ) -> syn::Result<()> {
        let key_span = meta
            .path
            .segments
            .first()
            .map_or_else(Span::call_site, |s| s.ident.span());
        let key = meta
            .path
            .get_ident()
            .map_or_else(|| path_text(&meta.path), ToString::to_string);

        // Read the value first (if any) so that parsing can go on after an error.
        let value = if meta.input.peek(Token![=]) {
            Some(meta.value()?.parse::<Expr>()?)
        } else if meta.input.peek(syn::token::Paren) {
            let content;
            syn::parenthesized!(content in meta.input);
            let _ignored: proc_macro2::TokenStream = content.parse()?;
            errors.at(
                key_span,
                format!(
                    "`{key}` takes a value, not a list: write `{}`",
                    example(&key)
                ),
            );
            return Ok(());
        } else {
            None
        };

        let Some(&known) = KEYS.iter().find(|k| **k == key) else {
            errors.at(key_span, unknown_message(&key));
            return Ok(());
        };
        // The one flag: `encrypted` alone means `encrypted = true`.
        let value = match (known, value) {
            ("encrypted", None) => Some(syn::parse_quote!(true)),
            (_, value) => value,
        };
        let Some(value) = value else {
            errors.at(
                key_span,
                format!(
                    "the `{known}` argument requires a value: `{}`",
                    example(known)
                ),
            );
            return Ok(());
        };
        if self.seen.contains(&known) {
            errors.at(key_span, format!("duplicate `#[job]` argument `{known}`"));
            return Ok(());
        }
        self.seen.push(known);
        if let Err(error) = self.set(known, &value) {
            errors.push(error);
        }
        Ok(())
    }

    fn set(&mut self, key: &'static str, value: &Expr) -> syn::Result<()> {
        match key {
            "max_tries" => {
                let n = int(key, value)?;
                if n == 0 {
                    return Err(spanned(
                        value,
                        "`max_tries` must be at least 1: a job runs at least once",
                    ));
                }
                self.max_tries = Some(n);
            }
            "timeout" => {
                let n = seconds(key, value, int(key, value)?)?;
                if n == 0 {
                    return Err(spanned(
                        value,
                        "`timeout` must be greater than 0 seconds, e.g. `timeout = 60`",
                    ));
                }
                self.timeout = Some(n);
            }
            "retry_after" => self.retry_after = Some(seconds(key, value, int(key, value)?)?),
            "queue" => self.queue = Some(queue_name(&string(key, value)?)?),
            "name" => self.name = Some(job_name(&string(key, value)?)?),
            "connection" => self.connection = Some(non_empty(key, &string(key, value)?)?),
            "backoff" => {
                let lit = string(key, value)?;
                self.backoff = Some(match lit.value().as_str() {
                    "exponential" => true,
                    "fixed" => false,
                    _ => {
                        return Err(syn::Error::new(
                            lit.span(),
                            "`backoff` must be \"exponential\" or \"fixed\", e.g. `backoff = \"exponential\"`",
                        ));
                    }
                });
            }
            "max_delay" => {
                let n = number(key, value)?;
                if n < 0.0 {
                    return Err(spanned(value, "`max_delay` must not be negative (seconds)"));
                }
                if n > MAX_SECONDS as f64 {
                    return Err(too_long(key, value));
                }
                self.max_delay = Some(n);
            }
            "jitter" => {
                let n = number(key, value)?;
                if !(0.0..=1.0).contains(&n) {
                    return Err(spanned(
                        value,
                        "`jitter` is a fraction from 0.0 (none) to 1.0 (full jitter), e.g. `jitter = 0.25`",
                    ));
                }
                self.jitter = Some(n);
            }
            "unique_for" => {
                let n = seconds(key, value, int(key, value)?)?;
                if n == 0 {
                    return Err(spanned(
                        value,
                        "`unique_for` must be greater than 0 seconds: how long the key is held at most, e.g. `unique_for = 3600`",
                    ));
                }
                self.unique_for = Some(n);
            }
            "max_exceptions" => {
                let n = int(key, value)?;
                if n == 0 {
                    return Err(spanned(
                        value,
                        "`max_exceptions` must be at least 1: the job fails for good at that many exceptions",
                    ));
                }
                self.max_exceptions = Some(n);
            }
            "retry_until" => {
                let n = seconds(key, value, int(key, value)?)?;
                if n == 0 {
                    return Err(spanned(
                        value,
                        "`retry_until` must be greater than 0 seconds after the dispatch, e.g. `retry_until = 3600`",
                    ));
                }
                self.retry_until = Some(n);
            }
            "encrypted" => {
                self.encrypted = Some(boolean(value).ok_or_else(|| {
                    spanned(
                        value,
                        "`encrypted` is a flag: write `encrypted` (or `encrypted = true`)",
                    )
                })?);
            }
            "priority" => {
                self.priority = Some(int(key, value).map_err(|_| {
                    spanned(
                        value,
                        "`priority` is an integer from 0 (the default) to 255; higher runs first, e.g. `priority = 10`",
                    )
                })?);
            }
            "unique_until" => {
                let lit = string(key, value)?;
                self.unique_until_span = Some(lit.span());
                self.unique_until_finish = Some(match lit.value().as_str() {
                    "finish" => true,
                    "start" => false,
                    _ => {
                        return Err(syn::Error::new(
                            lit.span(),
                            "`unique_until` must be \"finish\" (the key is held until the job has run) or \"start\" (until it starts)",
                        ));
                    }
                });
            }
            _ => {
                let lit = string(key, value)?;
                let path = lit.parse::<Path>().map_err(|_| {
                    syn::Error::new(
                        lit.span(),
                        "`crate` must be a path to the routemq crate, e.g. `crate = \"routemq\"`",
                    )
                })?;
                self.krate = Some(path);
            }
        }
        Ok(())
    }
}

/// An example of correct syntax for a key, used in messages.
fn example(key: &str) -> &'static str {
    match key {
        "max_tries" => "max_tries = 3",
        "timeout" => "timeout = 60",
        "retry_after" => "retry_after = 10",
        "queue" => "queue = \"emails\"",
        "name" => "name = \"my_app.jobs.SendEmailJob\"",
        "connection" => "connection = \"redis\"",
        "backoff" => "backoff = \"exponential\"",
        "max_delay" => "max_delay = 60",
        "jitter" => "jitter = 0.25",
        "unique_for" => "unique_for = 3600",
        "unique_until" => "unique_until = \"start\"",
        "max_exceptions" => "max_exceptions = 3",
        "retry_until" => "retry_until = 3600",
        "priority" => "priority = 10",
        "encrypted" => "encrypted",
        "crate" => "crate = \"routemq\"",
        _ => "key = value",
    }
}

/// A `true` or `false` literal.
fn boolean(value: &Expr) -> Option<bool> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(b), ..
        }) => Some(b.value),
        _ => None,
    }
}

fn path_text(path: &Path) -> String {
    path.segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

fn unknown_message(key: &str) -> String {
    let list = KEYS
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let hint = did_you_mean(key)
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    format!("unknown `#[job]` argument `{key}`{hint}; expected one of: {list}")
}

/// A near miss: a known key within edit distance 2, or one that contains / is contained in `key`.
fn did_you_mean(key: &str) -> Option<&'static str> {
    let key_lower = key.to_lowercase();
    let alias = match key_lower.as_str() {
        "retries" | "max_retries" | "tries" | "attempts" | "max_attempts" => Some("max_tries"),
        "delay" | "retry_delay" | "backoff_delay" => Some("retry_after"),
        "timeout_secs" | "timeout_seconds" => Some("timeout"),
        "tag" | "class" | "type_name" => Some("name"),
        "max_backoff" | "backoff_max_delay" => Some("max_delay"),
        "unique" | "unique_ttl" | "unique_seconds" => Some("unique_for"),
        "max_errors" | "max_failures" => Some("max_exceptions"),
        "deadline" | "retry_for" | "retry_deadline" => Some("retry_until"),
        _ => None,
    };
    if alias.is_some() {
        return alias;
    }
    KEYS.iter()
        .map(|k| (edit_distance(&key_lower, k), *k))
        .filter(|(d, k)| {
            *d <= 2 || (key_lower.len() >= 4 && (k.contains(&key_lower) || key_lower.contains(k)))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn spanned(value: &Expr, message: &str) -> syn::Error {
    syn::Error::new_spanned(value, message)
}

fn int<T: std::str::FromStr>(key: &str, value: &Expr) -> syn::Result<T>
where
    T::Err: std::fmt::Display,
{
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => lit
            .base10_parse::<T>()
            .map_err(|e| syn::Error::new(lit.span(), format!("`{key}` is out of range: {e}"))),
        Expr::Unary(syn::ExprUnary {
            op: syn::UnOp::Neg(_),
            ..
        }) => Err(spanned(
            value,
            &format!("`{key}` must not be negative, e.g. `{}`", example(key)),
        )),
        _ => Err(spanned(
            value,
            &format!("expected an integer for `{key}`, e.g. `{}`", example(key)),
        )),
    }
}

/// The longest duration routemq stores: ten years (`routemq::limits::MAX_DURATION`).
const MAX_SECONDS: u64 = 10 * 365 * 24 * 60 * 60;

fn too_long(key: &str, value: &Expr) -> syn::Error {
    spanned(
        value,
        &format!("`{key}` must be at most {MAX_SECONDS} seconds (ten years)"),
    )
}

/// An integer number of seconds, at most [`MAX_SECONDS`].
fn seconds(key: &str, value: &Expr, n: u64) -> syn::Result<u64> {
    if n > MAX_SECONDS {
        return Err(too_long(key, value));
    }
    Ok(n)
}

fn number(key: &str, value: &Expr) -> syn::Result<f64> {
    let finite = |n: f64| {
        if n.is_finite() {
            Ok(n)
        } else {
            Err(spanned(value, &format!("`{key}` is out of range")))
        }
    };
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => finite(lit.base10_parse::<f64>()?),
        Expr::Lit(ExprLit {
            lit: Lit::Float(lit),
            ..
        }) => finite(lit.base10_parse::<f64>()?),
        Expr::Unary(syn::ExprUnary {
            op: syn::UnOp::Neg(_),
            ..
        }) => Err(spanned(
            value,
            &format!("`{key}` must not be negative, e.g. `{}`", example(key)),
        )),
        _ => Err(spanned(
            value,
            &format!("expected a number for `{key}`, e.g. `{}`", example(key)),
        )),
    }
}

fn string(key: &str, value: &Expr) -> syn::Result<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit.clone()),
        _ => Err(spanned(
            value,
            &format!("expected a string for `{key}`, e.g. `{}`", example(key)),
        )),
    }
}

fn non_empty(key: &str, lit: &LitStr) -> syn::Result<String> {
    let value = lit.value();
    if value.is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            format!("`{key}` must not be empty, e.g. `{}`", example(key)),
        ));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(syn::Error::new(
            lit.span(),
            format!("`{key}` is longer than {MAX_NAME_LEN} bytes"),
        ));
    }
    Ok(value)
}

/// Queue names: the same rule the runtime enforces at dispatch (`routemq::validate_queue_name`).
fn queue_name(lit: &LitStr) -> syn::Result<String> {
    let value = non_empty("queue", lit)?;
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "invalid character {bad:?} in queue name: use letters, digits, `_`, `-` and `.`"
            ),
        ));
    }
    Ok(value)
}

/// Job names (wire tags): no whitespace or control characters, no leading or trailing dot.
fn job_name(lit: &LitStr) -> syn::Result<String> {
    let value = non_empty("name", lit)?;
    if value.chars().any(|c| c.is_whitespace() || c.is_control())
        || value.starts_with('.')
        || value.ends_with('.')
    {
        return Err(syn::Error::new(
            lit.span(),
            "a job `name` may not contain whitespace or control characters, nor start or end with `.`",
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(tokens: proc_macro2::TokenStream) -> (JobArgs, Result<(), syn::Error>) {
        let mut args = JobArgs::default();
        let mut errors = Errors::default();
        let parser = syn::meta::parser(|meta| args.parse_entry(&meta, &mut errors));
        syn::parse::Parser::parse2(parser, tokens).expect("tokens are well formed");
        (args, errors.into_result())
    }

    #[test]
    fn parses_every_argument() {
        let (args, result) = parse(quote::quote!(
            max_tries = 5,
            timeout = 30,
            retry_after = 2,
            queue = "emails",
            name = "app.Send",
            connection = "redis",
            backoff = "exponential",
            max_delay = 120,
            jitter = 0.5,
            crate = "rmq"
        ));
        assert!(result.is_ok());
        assert_eq!(args.max_tries, Some(5));
        assert_eq!(args.timeout, Some(30));
        assert_eq!(args.retry_after, Some(2));
        assert_eq!(args.queue.as_deref(), Some("emails"));
        assert_eq!(args.name.as_deref(), Some("app.Send"));
        assert_eq!(args.connection.as_deref(), Some("redis"));
        assert_eq!(args.backoff, Some(true));
        assert_eq!(args.max_delay, Some(120.0));
        assert_eq!(args.jitter, Some(0.5));
        assert!(args.krate.is_some_and(|p| p.is_ident("rmq")));
    }

    #[test]
    fn reports_every_error_at_once() {
        let (_, result) = parse(quote::quote!(retries = 3, timeout = 0, queue, queue = ""));
        let messages: Vec<String> = result
            .expect_err("four errors")
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(messages.len(), 4, "{messages:?}");
        assert!(
            messages[0].contains("did you mean `max_tries`"),
            "{}",
            messages[0]
        );
        assert!(messages[1].contains("greater than 0"));
        assert!(messages[2].contains("requires a value"));
        assert!(messages[3].contains("must not be empty"));
    }

    #[test]
    fn duplicate_is_reported_once_at_the_second_key() {
        let (args, result) = parse(quote::quote!(max_tries = 2, max_tries = 4));
        let errors: Vec<String> = result
            .expect_err("duplicate")
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(errors, ["duplicate `#[job]` argument `max_tries`"]);
        assert_eq!(args.max_tries, Some(2));
    }

    #[test]
    fn near_misses_get_suggestions() {
        assert_eq!(did_you_mean("tries"), Some("max_tries"));
        assert_eq!(did_you_mean("timout"), Some("timeout"));
        assert_eq!(did_you_mean("queues"), Some("queue"));
        assert_eq!(did_you_mean("zzzzzzzz"), None);
    }
}
