//! The job registry: every `#[job]` type linked into the binary, by wire tag.
//!
//! `#[job]` submits a [`JobRegistration`] to `inventory`; the registry collects them once, checks
//! that no two types share a tag, and caches the result ([`Registry::global`]). A worker decodes an
//! envelope by looking its `class` up here, so no hand-written match table is needed, and a tag
//! that is not registered is never instantiated.
//!
//! Registration needs the crate that defines the jobs to be linked into the binary: if your jobs
//! live in a library crate, name it in the binary (`use my_jobs as _;`).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;

use crate::envelope::Envelope;
use crate::job::{Job, JobContext, JobError, JobOptions};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A decoded job whose type has been erased, as the worker runs it.
pub trait ErasedJob: Send {
    /// Runs `Job::handle`.
    fn handle<'a>(&'a mut self, ctx: &'a JobContext) -> BoxFuture<'a, Result<(), JobError>>;
    /// Runs `Job::failed`.
    fn failed<'a>(&'a mut self, ctx: &'a JobContext, error: &'a JobError) -> BoxFuture<'a, ()>;
    /// Returns `Job::middleware`.
    fn middleware(&self) -> Vec<Box<dyn crate::middleware::Middleware>>;
}

impl<T: Job> ErasedJob for T {
    fn handle<'a>(&'a mut self, ctx: &'a JobContext) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(Job::handle(self, ctx))
    }

    fn failed<'a>(&'a mut self, ctx: &'a JobContext, error: &'a JobError) -> BoxFuture<'a, ()> {
        Box::pin(Job::failed(self, ctx, error))
    }

    fn middleware(&self) -> Vec<Box<dyn crate::middleware::Middleware>> {
        Job::middleware(self)
    }
}

type DecodeFn = fn(&str) -> Result<Box<dyn ErasedJob>, serde_json::Error>;

fn decode_as<T: Job>(data: &str) -> Result<Box<dyn ErasedJob>, serde_json::Error> {
    serde_json::from_str::<T>(data).map(|job| Box::new(job) as Box<dyn ErasedJob>)
}

/// Where a job type was declared, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrationSite {
    /// The Rust type's name.
    pub type_name: &'static str,
    /// `module_path!()` at the declaration.
    pub module_path: &'static str,
    /// `file!()` at the declaration.
    pub file: &'static str,
    /// `line!()` at the declaration.
    pub line: u32,
}

impl fmt::Display for RegistrationSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}::{} ({}:{})",
            self.module_path, self.type_name, self.file, self.line
        )
    }
}

/// One `#[job]` type, as submitted to the registry by the macro.
pub struct JobRegistration {
    name: &'static str,
    options: JobOptions,
    site: RegistrationSite,
    decode: DecodeFn,
}

impl JobRegistration {
    /// The registration of `T`. Called by code that `#[job]` generates.
    pub const fn new<T: Job>(site: RegistrationSite) -> Self {
        Self {
            name: T::NAME,
            options: T::OPTIONS,
            site,
            decode: decode_as::<T>,
        }
    }

    /// The wire tag.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The type's static options.
    pub fn options(&self) -> &JobOptions {
        &self.options
    }

    /// Where the type is declared.
    pub fn site(&self) -> &RegistrationSite {
        &self.site
    }

    /// Decodes an envelope's `data` into this type.
    pub fn decode(&self, data: &str) -> Result<Box<dyn ErasedJob>, serde_json::Error> {
        (self.decode)(data)
    }
}

/// A job type's declaration, as `list-jobs` and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobTypeInfo {
    /// The wire tag.
    pub name: &'static str,
    /// The Rust type's path.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Its default queue.
    pub queue: &'static str,
    /// Its connection, when it names one.
    pub connection: Option<&'static str>,
    /// `#[job(max_tries)]`.
    pub max_tries: u32,
    /// `#[job(timeout)]`, in seconds.
    pub timeout: u64,
    /// `#[job(retry_after)]`, in seconds.
    pub retry_after: u64,
    /// `#[job(backoff)]`.
    pub backoff: bool,
    /// `file:line` of the declaration.
    pub defined_at: String,
}

impl JobRegistration {
    /// The declaration, for listings.
    pub fn info(&self) -> JobTypeInfo {
        let options = self.options();
        JobTypeInfo {
            name: self.name(),
            type_name: format!("{}::{}", self.site.module_path, self.site.type_name),
            queue: options.queue,
            connection: options.connection,
            max_tries: options.max_tries,
            timeout: options.timeout,
            retry_after: options.retry_after,
            backoff: options.backoff,
            defined_at: format!("{}:{}", self.site.file, self.site.line),
        }
    }
}

impl fmt::Debug for JobRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobRegistration")
            .field("name", &self.name)
            .field("site", &self.site)
            .finish_non_exhaustive()
    }
}

inventory::collect!(JobRegistration);

/// Registry problems.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two linked types use the same wire tag.
    #[error(
        "two job types are registered under the name `{name}`: {first} and {second}; \
         give one of them a unique `#[job(name = \"...\")]`"
    )]
    DuplicateJobName {
        /// The shared tag.
        name: &'static str,
        /// One of the declarations.
        first: Box<RegistrationSite>,
        /// The other declaration.
        second: Box<RegistrationSite>,
    },
    /// No linked type has this tag.
    #[error(
        "job `{name}` is not registered in this binary; is the crate that defines it linked? \
         add `use <that_crate> as _;` to the worker's main.rs, or check the job's `#[job(name = ...)]` \
         (registered: {registered})"
    )]
    UnknownJob {
        /// The tag that was asked for.
        name: String,
        /// The registered tags (shortened when there are many).
        registered: String,
    },
}

/// Why an envelope could not be turned into a runnable job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The envelope itself is malformed.
    #[error(transparent)]
    Envelope(#[from] crate::envelope::EnvelopeError),
    /// Its tag is not registered.
    #[error(transparent)]
    UnknownJob(#[from] RegistryError),
    /// The tag is known but `data` does not fit the type's fields.
    #[error("payload of job `{name}` does not decode into {type_name}: {source}")]
    Payload {
        /// The job's tag.
        name: String,
        /// The Rust type.
        type_name: &'static str,
        /// The deserializer's error (names the field).
        #[source]
        source: serde_json::Error,
    },
    /// The job's data is sealed, and cannot be opened here (no key, or not the key it was
    /// sealed with). The job is intact: it runs once the key is configured.
    #[error("job `{name}` is encrypted and cannot be decrypted: {source}")]
    Sealed {
        /// The job's tag.
        name: String,
        /// Why.
        #[source]
        source: crate::crypto::CryptoError,
    },
}

/// A decoding error of an encrypted job without the values it may quote (serde names a value of
/// the wrong type), so that the plaintext reaches neither the failed store nor the logs.
fn hide_values(error: serde_json::Error, sealed: bool) -> serde_json::Error {
    if !sealed {
        return error;
    }
    <serde_json::Error as serde::de::Error>::custom(format!(
        "the decrypted data does not fit the type at line {} column {} (details hidden: the job is encrypted)",
        error.line(),
        error.column()
    ))
}

/// The job types linked into this binary, by wire tag.
#[derive(Debug)]
pub struct Registry {
    by_name: HashMap<&'static str, &'static JobRegistration>,
}

static GLOBAL: OnceLock<Result<Registry, RegistryError>> = OnceLock::new();

impl Registry {
    /// The registry of every `#[job]` type linked in, built and checked once.
    pub fn global() -> Result<&'static Registry, RegistryError> {
        GLOBAL
            .get_or_init(Self::build)
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Builds a fresh registry from everything `#[job]` submitted, rejecting duplicate tags.
    pub fn build() -> Result<Registry, RegistryError> {
        Self::build_from(inventory::iter::<JobRegistration>)
    }

    /// Builds a registry from explicit registrations (for tests).
    pub fn build_from(
        registrations: impl IntoIterator<Item = &'static JobRegistration>,
    ) -> Result<Registry, RegistryError> {
        let mut by_name: HashMap<&'static str, &'static JobRegistration> = HashMap::new();
        for registration in registrations {
            if let Some(first) = by_name.insert(registration.name, registration) {
                let (first, second) = ordered(first.site, registration.site);
                return Err(RegistryError::DuplicateJobName {
                    name: registration.name,
                    first: Box::new(first),
                    second: Box::new(second),
                });
            }
        }
        Ok(Registry { by_name })
    }

    /// The registered tags, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.by_name.keys().copied().collect();
        names.sort_unstable();
        names
    }

    /// Every registration, sorted by tag.
    pub fn registrations(&self) -> Vec<&'static JobRegistration> {
        let mut all: Vec<_> = self.by_name.values().copied().collect();
        all.sort_unstable_by_key(|r| r.name);
        all
    }

    /// How many types are registered.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether no type is registered.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The registration for `name`, or an error that says how to link it.
    pub fn get(&self, name: &str) -> Result<&'static JobRegistration, RegistryError> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| RegistryError::UnknownJob {
                name: name.to_owned(),
                registered: self.summary(),
            })
    }

    /// Fails unless every name in `names` is registered (call it in `main` or a test).
    pub fn expect_registered(&self, names: &[&str]) -> Result<(), RegistryError> {
        names.iter().try_for_each(|name| self.get(name).map(|_| ()))
    }

    /// Decodes a payload: envelope → tag lookup → `data` into the job's type, in that order.
    pub fn decode(
        &self,
        payload: &str,
    ) -> Result<(Envelope, &'static JobRegistration, Box<dyn ErasedJob>), DecodeError> {
        let envelope = Envelope::decode(payload)?;
        let registration = self.get(envelope.class())?;
        let unopened = |source| DecodeError::Sealed {
            name: envelope.class().to_owned(),
            source,
        };
        let sealed = envelope.is_sealed();
        if registration.options().encrypted && !sealed {
            return Err(unopened(crate::crypto::CryptoError::Unsealed));
        }
        let data = envelope.plain_data().map_err(unopened)?;
        let job = registration
            .decode(&data)
            .map_err(|source| hide_values(source, sealed))
            .map_err(|source| DecodeError::Payload {
                name: envelope.class().to_owned(),
                type_name: registration.site.type_name,
                source,
            })?;
        Ok((envelope, registration, job))
    }

    fn summary(&self) -> String {
        const SHOWN: usize = 20;
        let names = self.names();
        if names.is_empty() {
            return "none".to_owned();
        }
        let mut text = names
            .iter()
            .take(SHOWN)
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ");
        if names.len() > SHOWN {
            text.push_str(&format!(" and {} more", names.len() - SHOWN));
        }
        text
    }
}

/// Orders two sites so that error messages are the same whatever order `inventory` yields.
fn ordered(a: RegistrationSite, b: RegistrationSite) -> (RegistrationSite, RegistrationSite) {
    if (a.file, a.line) <= (b.file, b.line) {
        (a, b)
    } else {
        (b, a)
    }
}
