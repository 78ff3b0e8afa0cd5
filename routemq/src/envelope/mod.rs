//! The wire envelope, compatible with RouteMQ (Python): what a queue stores for every job.
//!
//! ```json
//! {"class": "my_app.jobs.SendEmailJob", "data": {"to": "a@b.c"}, "observability": {...},
//!  "max_tries": 3, "timeout": 60, "retry_after": 0, "retry_backoff_enabled": false,
//!  "retry_backoff_max_delay": null, "retry_backoff_jitter": null, "queue": "emails"}
//! ```
//!
//! Fields are written in RouteMQ's order and layout (Python's `json.dumps`: `", "` separators,
//! non-ASCII escaped). Decoding reads envelopes RouteMQ wrote, including the failed-job form whose
//! `data` carries extra `retry_backoff_*` keys, and checks every field's type: a malformed envelope is
//! an [`EnvelopeError`], never a panic. `data` is kept as raw JSON until the tag has been looked up in
//! the registry, so an unregistered tag is never instantiated.

mod python_json;

use serde::{Deserialize, Serialize};
use serde_json::Number;
use serde_json::value::RawValue;

use crate::job::{Job, JobOptions};

#[cfg(feature = "redis")]
pub(crate) use python_json::push_str_literal;
pub(crate) use python_json::write_python;

/// Largest payload (encoded envelope) accepted at dispatch and decoded by a worker: 8 MiB.
///
/// RouteMQ's SQL column is `TEXT` (64 KiB on MySQL); routemq creates `MEDIUMTEXT`/`TEXT` columns that
/// hold this limit. Put large blobs in object storage and queue their address instead.
pub const MAX_PAYLOAD_BYTES: usize = 8 * 1024 * 1024;

/// A decoded envelope. `data` and `observability` stay raw JSON until they are needed.
#[derive(Debug, Clone)]
pub struct Envelope {
    class: String,
    data: Box<RawValue>,
    observability: Option<Box<RawValue>>,
    max_tries: i64,
    timeout: Number,
    retry_after: Number,
    retry_backoff_enabled: bool,
    retry_backoff_max_delay: Option<Number>,
    retry_backoff_jitter: Option<Number>,
    queue: String,
    /// routemq's own: the `retry_until` deadline in epoch seconds (RouteMQ ignores it).
    retry_until: Option<Number>,
    /// routemq's own: the slot a unique job's key is held in (RouteMQ ignores it).
    unique_key: Option<String>,
    /// routemq's own: the job's priority within its queue, when not 0 (RouteMQ ignores it).
    priority: Option<u8>,
    /// routemq's own: the jobs that follow this one in its chain, and the chain's `catch` job.
    chain: Option<Chain>,
    /// routemq's own: the batch the job belongs to (RouteMQ ignores it).
    batch: Option<BatchRef>,
}

/// Which batch a job belongs to, and which of its jobs it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRef {
    /// The batch id.
    pub id: String,
    /// The job's number within the batch (its outcome is recorded under it, whatever id its
    /// queue gives it: a job retried from the failed store is the same job of the batch).
    pub job: u64,
}

/// One job of a chain, ready to store: where it goes and its envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLink {
    /// The queue it is pushed to.
    pub queue: String,
    /// The connection it is pushed to.
    pub connection: String,
    /// Its envelope.
    pub payload: String,
}

/// What a job in a chain carries: the jobs after it, in order, and the job to run if the chain
/// fails.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    /// The jobs still to run, in order.
    pub next: Vec<ChainLink>,
    /// Runs once if a job of the chain fails for good.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catch: Option<ChainLink>,
}

/// Why an envelope could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The payload is not JSON at all (or is truncated, or nested too deeply).
    #[error("payload is not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The payload is JSON but not an object.
    #[error("payload must be a JSON object (a RouteMQ envelope), found {found}")]
    NotAnObject {
        /// The JSON kind that was found.
        found: &'static str,
    },
    /// The envelope has no `class`, or it is null.
    #[error("envelope has no `class` field: it does not name a job type")]
    MissingClass,
    /// `class` is not a non-empty string.
    #[error("envelope field `class` must be a non-empty string, found {found}")]
    BadClass {
        /// What was found instead.
        found: String,
    },
    /// A field has the wrong JSON type.
    #[error("envelope field `{field}` must be {expected}, found {found}")]
    WrongType {
        /// The field's name.
        field: &'static str,
        /// The type it must have.
        expected: &'static str,
        /// The JSON kind that was found.
        found: &'static str,
    },
    /// The payload is bigger than [`MAX_PAYLOAD_BYTES`].
    #[error("payload is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The payload's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A job's fields could not be serialized.
    #[error("could not serialize job `{job}`: {source}")]
    Encode {
        /// The job's name.
        job: &'static str,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// An encrypted job could not be sealed (no key, or an invalid one).
    #[error("could not encrypt job `{job}`: {source}")]
    Encryption {
        /// The job's name.
        job: &'static str,
        /// Why.
        #[source]
        source: crate::crypto::CryptoError,
    },
    /// A job serialized to something other than a JSON object.
    #[error("job `{job}` must serialize to a JSON object, found {found}")]
    DataNotObject {
        /// The job's name.
        job: &'static str,
        /// The JSON kind that was produced.
        found: &'static str,
    },
}

/// The `observability` object written at dispatch, with RouteMQ's keys in RouteMQ's order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Observability<'a> {
    /// A correlation id carried over from the dispatching job, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<&'a str>,
    /// The trace (32 hex digits); omitted when empty.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub trace_id: &'a str,
    /// The producer's `queue.enqueue` span (16 hex digits); omitted when empty.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub span_id: &'a str,
    /// `"01"` when there is a trace.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub trace_flags: &'a str,
    /// The span that was current when dispatching (null at the root of a trace).
    #[serde(skip_serializing_if = "is_untraced")]
    pub parent_span_id: Option<Option<&'a str>>,
    /// The job type's short name.
    pub job_class: &'a str,
    /// The queue the job is pushed to.
    pub queue: &'a str,
    /// The connection the job is pushed to.
    pub connection: &'a str,
    /// The delay in seconds, for delayed dispatch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<u64>,
    /// Set on jobs pushed by a bulk dispatch.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bulk: bool,
}

/// The fields after `data` and `observability`, in RouteMQ's order.
struct Settings<'a> {
    max_tries: i64,
    timeout: &'a Number,
    retry_after: &'a Number,
    retry_backoff_enabled: bool,
    retry_backoff_max_delay: Option<&'a Number>,
    retry_backoff_jitter: Option<&'a Number>,
    queue: &'a str,
    retry_until: Option<&'a Number>,
    unique_key: Option<&'a str>,
    priority: Option<u8>,
    chain: Option<&'a Chain>,
    batch: Option<&'a BatchRef>,
}

/// Writes a whole envelope; returns the bytes and the offset where `data` starts.
fn write_envelope<D: Serialize + ?Sized, O: Serialize + ?Sized>(
    class: &str,
    data: &D,
    observability: &O,
    settings: &Settings<'_>,
) -> serde_json::Result<(Vec<u8>, usize)> {
    fn field<T: Serialize + ?Sized>(
        out: &mut Vec<u8>,
        key: &str,
        value: &T,
    ) -> serde_json::Result<()> {
        out.extend_from_slice(b", \"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\": ");
        write_python(out, value)
    }
    let mut out = Vec::with_capacity(320);
    out.extend_from_slice(br#"{"class": "#);
    write_python(&mut out, class)?;
    out.extend_from_slice(br#", "data": "#);
    let data_start = out.len();
    write_python(&mut out, data)?;
    field(&mut out, "observability", observability)?;
    field(&mut out, "max_tries", &settings.max_tries)?;
    field(&mut out, "timeout", settings.timeout)?;
    field(&mut out, "retry_after", settings.retry_after)?;
    field(
        &mut out,
        "retry_backoff_enabled",
        &settings.retry_backoff_enabled,
    )?;
    field(
        &mut out,
        "retry_backoff_max_delay",
        &settings.retry_backoff_max_delay,
    )?;
    field(
        &mut out,
        "retry_backoff_jitter",
        &settings.retry_backoff_jitter,
    )?;
    field(&mut out, "queue", settings.queue)?;
    if let Some(deadline) = settings.retry_until {
        field(&mut out, "retry_until", deadline)?;
    }
    if let Some(key) = settings.unique_key {
        field(&mut out, "unique_key", key)?;
    }
    if let Some(priority) = settings.priority {
        field(&mut out, "priority", &priority)?;
    }
    if let Some(chain) = settings.chain {
        field(&mut out, "chain", chain)?;
    }
    if let Some(batch) = settings.batch {
        field(&mut out, "batch", batch)?;
    }
    out.push(b'}');
    Ok((out, data_start))
}

#[derive(Deserialize)]
struct In<'a> {
    #[serde(borrow)]
    class: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    observability: Option<&'a RawValue>,
    #[serde(borrow)]
    max_tries: Option<&'a RawValue>,
    #[serde(borrow)]
    timeout: Option<&'a RawValue>,
    #[serde(borrow)]
    retry_after: Option<&'a RawValue>,
    #[serde(borrow)]
    retry_backoff_enabled: Option<&'a RawValue>,
    #[serde(borrow)]
    retry_backoff_max_delay: Option<&'a RawValue>,
    #[serde(borrow)]
    retry_backoff_jitter: Option<&'a RawValue>,
    #[serde(borrow)]
    queue: Option<&'a RawValue>,
    #[serde(borrow)]
    retry_until: Option<&'a RawValue>,
    #[serde(borrow)]
    unique_key: Option<&'a RawValue>,
    #[serde(borrow)]
    priority: Option<&'a RawValue>,
    #[serde(borrow)]
    chain: Option<&'a RawValue>,
    #[serde(borrow)]
    batch: Option<&'a RawValue>,
}

/// Whether a raw JSON value is a string that holds sealed data (a prefix test: no allocation).
fn is_sealed_value(raw: &RawValue) -> bool {
    raw.get()
        .strip_prefix('"')
        .is_some_and(crate::crypto::is_sealed)
}

/// The JSON kind of a raw value, for error messages.
pub(crate) fn kind_of(raw: &str) -> &'static str {
    match raw.trim_start().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(_) => "a number",
        None => "nothing",
    }
}

fn typed<'a, T: Deserialize<'a>>(
    raw: Option<&'a RawValue>,
    field: &'static str,
    expected: &'static str,
) -> Result<Option<T>, EnvelopeError> {
    raw.map(|raw| {
        serde_json::from_str::<T>(raw.get()).map_err(|_| EnvelopeError::WrongType {
            field,
            expected,
            found: kind_of(raw.get()),
        })
    })
    .transpose()
}

fn number(
    raw: Option<&RawValue>,
    field: &'static str,
    default: u64,
) -> Result<Number, EnvelopeError> {
    Ok(typed::<Number>(raw, field, "a number")?.unwrap_or_else(|| Number::from(default)))
}

fn optional_number(
    raw: Option<&RawValue>,
    field: &'static str,
) -> Result<Option<Number>, EnvelopeError> {
    Ok(typed::<Option<Number>>(raw, field, "a number or null")?.flatten())
}

/// A job's data serialized (an object, or an error) and sealed under the current key.
fn seal_data<D: Serialize + ?Sized>(data: &D, name: &'static str) -> Result<String, EnvelopeError> {
    let mut plain = Vec::with_capacity(128);
    write_python(&mut plain, data).map_err(|source| EnvelopeError::Encode { job: name, source })?;
    if plain.first() != Some(&b'{') {
        let found = kind_of(std::str::from_utf8(&plain).unwrap_or(""));
        return Err(EnvelopeError::DataNotObject { job: name, found });
    }
    let sealing = |source| EnvelopeError::Encryption { job: name, source };
    let keyring = crate::crypto::keyring().map_err(sealing)?;
    crate::crypto::seal(keyring.current().map_err(sealing)?, name, &plain).map_err(sealing)
}

/// A `retry_until` deadline `secs` from now, in epoch seconds (milliseconds kept).
fn deadline_in(secs: f64) -> Number {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    number_from_f64(((now + secs) * 1000.0).round() / 1000.0)
}

fn number_from_f64(value: f64) -> Number {
    Number::from_f64(value).unwrap_or_else(|| Number::from(0))
}

impl Envelope {
    /// Encodes a job the way RouteMQ does, ready to store.
    pub fn encode<T: Job>(
        job: &T,
        queue: &str,
        observability: &Observability<'_>,
    ) -> Result<String, EnvelopeError> {
        let unique_key = crate::job::unique_slot(job);
        Self::encode_keyed(
            job,
            &T::OPTIONS,
            queue,
            observability,
            unique_key.as_deref(),
        )
    }

    /// [`Envelope::encode`] with the unique job's key the caller has already worked out.
    fn encode_keyed<T: Job>(
        job: &T,
        options: &JobOptions,
        queue: &str,
        observability: &Observability<'_>,
        unique_key: Option<&str>,
    ) -> Result<String, EnvelopeError> {
        Self::encode_parts(job, T::NAME, options, queue, observability, unique_key)
    }

    /// Encodes any serializable value under a job name and options (the typed path is [`Envelope::encode`]).
    /// A unique job's key is not written (use [`Envelope::encode`] for unique jobs).
    pub fn encode_with<D: Serialize + ?Sized>(
        data: &D,
        name: &'static str,
        options: &JobOptions,
        queue: &str,
        observability: &Observability<'_>,
    ) -> Result<String, EnvelopeError> {
        Self::encode_parts(data, name, options, queue, observability, None)
    }

    fn encode_parts<D: Serialize + ?Sized>(
        data: &D,
        name: &'static str,
        options: &JobOptions,
        queue: &str,
        observability: &Observability<'_>,
        unique_key: Option<&str>,
    ) -> Result<String, EnvelopeError> {
        let timeout = Number::from(options.timeout);
        let retry_after = Number::from(options.retry_after);
        let max_delay = options.max_delay.map(number_from_f64);
        let jitter = options.jitter.map(number_from_f64);
        let retry_until = options.retry_until.map(|secs| deadline_in(secs as f64));
        let settings = Settings {
            max_tries: i64::from(options.max_tries),
            timeout: &timeout,
            retry_after: &retry_after,
            retry_backoff_enabled: options.backoff,
            retry_backoff_max_delay: max_delay.as_ref(),
            retry_backoff_jitter: jitter.as_ref(),
            queue,
            retry_until: retry_until.as_ref(),
            unique_key,
            priority: (options.priority > 0).then_some(options.priority),
            chain: None,
            batch: None,
        };
        let (out, data_start) = if options.encrypted {
            let sealed = seal_data(data, name)?;
            write_envelope(name, &sealed, observability, &settings)
        } else {
            write_envelope(name, data, observability, &settings)
        }
        .map_err(|source| EnvelopeError::Encode { job: name, source })?;
        if !options.encrypted && out.get(data_start) != Some(&b'{') {
            let found = kind_of(std::str::from_utf8(&out[data_start..]).unwrap_or(""));
            return Err(EnvelopeError::DataNotObject { job: name, found });
        }
        // The Python formatter escapes everything outside printable ASCII, so this is ASCII.
        let payload = into_text(out);
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(EnvelopeError::TooLarge {
                size: payload.len(),
                limit: MAX_PAYLOAD_BYTES,
            });
        }
        Ok(payload)
    }

    /// Decodes and validates an envelope. The `data` object is checked for shape only.
    pub fn decode(payload: &str) -> Result<Self, EnvelopeError> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(EnvelopeError::TooLarge {
                size: payload.len(),
                limit: MAX_PAYLOAD_BYTES,
            });
        }
        if !payload.trim_start().starts_with('{') {
            return match serde_json::from_str::<serde::de::IgnoredAny>(payload) {
                Ok(_) => Err(EnvelopeError::NotAnObject {
                    found: kind_of(payload),
                }),
                Err(error) => Err(EnvelopeError::NotJson(error)),
            };
        }
        let fields: In<'_> = serde_json::from_str(payload).map_err(EnvelopeError::NotJson)?;

        let class = match fields.class {
            None => return Err(EnvelopeError::MissingClass),
            Some(raw) => match serde_json::from_str::<String>(raw.get()) {
                Ok(class) if !class.is_empty() => class,
                Ok(_) => {
                    return Err(EnvelopeError::BadClass {
                        found: "an empty string".to_owned(),
                    });
                }
                Err(_) => {
                    return Err(EnvelopeError::BadClass {
                        found: kind_of(raw.get()).to_owned(),
                    });
                }
            },
        };
        let data = match fields.data {
            None => RawValue::from_string("{}".to_owned()).map_err(EnvelopeError::NotJson)?,
            Some(raw) if kind_of(raw.get()) == "an object" => raw.to_owned(),
            // An encrypted job's data: sealed, as a string.
            Some(raw) if is_sealed_value(raw) => raw.to_owned(),
            Some(raw) => {
                return Err(EnvelopeError::WrongType {
                    field: "data",
                    expected: "an object",
                    found: kind_of(raw.get()),
                });
            }
        };
        let observability = match fields.observability {
            Some(raw) if kind_of(raw.get()) == "an object" => Some(raw.to_owned()),
            // RouteMQ treats anything but an object as an empty context.
            _ => None,
        };
        Ok(Self {
            class,
            data,
            observability,
            max_tries: typed::<i64>(fields.max_tries, "max_tries", "an integer")?.unwrap_or(3),
            timeout: number(fields.timeout, "timeout", 60)?,
            retry_after: number(fields.retry_after, "retry_after", 0)?,
            retry_backoff_enabled: typed::<Option<bool>>(
                fields.retry_backoff_enabled,
                "retry_backoff_enabled",
                "a boolean",
            )?
            .flatten()
            .unwrap_or(false),
            retry_backoff_max_delay: optional_number(
                fields.retry_backoff_max_delay,
                "retry_backoff_max_delay",
            )?,
            retry_backoff_jitter: optional_number(
                fields.retry_backoff_jitter,
                "retry_backoff_jitter",
            )?,
            queue: typed::<String>(fields.queue, "queue", "a string")?
                .unwrap_or_else(|| "default".to_owned()),
            retry_until: optional_number(fields.retry_until, "retry_until")?,
            unique_key: typed::<Option<String>>(fields.unique_key, "unique_key", "a string")?
                .flatten(),
            priority: typed::<Option<u8>>(fields.priority, "priority", "an integer from 0 to 255")?
                .flatten()
                .filter(|p| *p > 0),
            chain: typed::<Option<Chain>>(fields.chain, "chain", "a chain object")?.flatten(),
            batch: typed::<Option<BatchRef>>(fields.batch, "batch", "a batch object")?.flatten(),
        })
    }

    /// Re-encodes the envelope in RouteMQ's layout (what the failed store keeps).
    pub fn to_json(&self) -> String {
        let settings = Settings {
            max_tries: self.max_tries,
            timeout: &self.timeout,
            retry_after: &self.retry_after,
            retry_backoff_enabled: self.retry_backoff_enabled,
            retry_backoff_max_delay: self.retry_backoff_max_delay.as_ref(),
            retry_backoff_jitter: self.retry_backoff_jitter.as_ref(),
            queue: &self.queue,
            retry_until: self.retry_until.as_ref(),
            unique_key: self.unique_key.as_deref(),
            priority: self.priority,
            chain: self.chain.as_ref(),
            batch: self.batch.as_ref(),
        };
        // Strings, numbers and already-valid raw JSON always serialize.
        let written = match self.observability.as_deref() {
            Some(observability) => {
                write_envelope(&self.class, &*self.data, observability, &settings)
            }
            None => write_envelope(&self.class, &*self.data, &serde_json::Map::new(), &settings),
        };
        written.map(|(out, _)| into_text(out)).unwrap_or_default()
    }

    /// When no more tries are made (`#[job(retry_until = ..)]`, fixed at dispatch), if set.
    pub fn retry_until(&self) -> Option<std::time::SystemTime> {
        let secs = self.retry_until.as_ref()?.as_f64()?;
        let since_epoch = std::time::Duration::try_from_secs_f64(secs).ok()?;
        std::time::SystemTime::UNIX_EPOCH.checked_add(since_epoch)
    }

    /// The job's priority within its queue (0 when the envelope sets none, as RouteMQ's never do).
    pub fn priority(&self) -> u8 {
        self.priority.unwrap_or(0)
    }

    /// The rest of the job's chain, if it is in one.
    pub fn chain(&self) -> Option<&Chain> {
        self.chain.as_ref()
    }

    /// The envelope with its `retry_until` deadline `after` from now.
    #[must_use]
    pub fn with_retry_until_in(mut self, after: std::time::Duration) -> Self {
        self.retry_until = Some(deadline_in(after.as_secs_f64()));
        self
    }

    /// The envelope with `chain` as the rest of its chain.
    #[must_use]
    pub fn with_chain(mut self, chain: Option<Chain>) -> Self {
        self.chain = chain;
        self
    }

    /// The batch the job belongs to, if any.
    pub fn batch(&self) -> Option<&BatchRef> {
        self.batch.as_ref()
    }

    /// The envelope as a job of `batch`.
    #[must_use]
    pub fn with_batch(mut self, batch: Option<BatchRef>) -> Self {
        self.batch = batch;
        self
    }

    /// The slot a unique job's key is held in, as its dispatch took it.
    pub fn unique_key(&self) -> Option<&str> {
        self.unique_key.as_deref()
    }

    /// The job's wire tag (`class`).
    pub fn class(&self) -> &str {
        &self.class
    }

    /// The job's fields as raw JSON: an object, or for an encrypted job its sealed form (a
    /// string; see [`plain_data`](Self::plain_data)).
    pub fn data(&self) -> &str {
        self.data.get()
    }

    /// Whether the job's data is sealed (an encrypted job).
    pub fn is_sealed(&self) -> bool {
        is_sealed_value(&self.data)
    }

    /// The job's fields as raw JSON, opened with the process's keys when they are sealed.
    pub fn plain_data(&self) -> Result<std::borrow::Cow<'_, str>, crate::crypto::CryptoError> {
        if !self.is_sealed() {
            return Ok(std::borrow::Cow::Borrowed(self.data.get()));
        }
        let malformed = crate::crypto::CryptoError::Malformed;
        let sealed = serde_json::from_str::<String>(self.data.get())
            .map_err(|_| malformed("not a JSON string"))?;
        let plain = crate::crypto::open(crate::crypto::keyring()?, &self.class, &sealed)?;
        String::from_utf8(plain)
            .map(std::borrow::Cow::Owned)
            .map_err(|_| malformed("the data is not UTF-8"))
    }

    /// The `observability` object as raw JSON, if the envelope has one.
    pub fn observability(&self) -> Option<&str> {
        self.observability.as_deref().map(RawValue::get)
    }

    /// `max_tries` as stored (RouteMQ lets 0 and negative values through; see [`Envelope::effective_max_tries`]).
    pub fn max_tries(&self) -> i64 {
        self.max_tries
    }

    /// `max_tries` clamped to at least 1, as a worker applies it.
    pub fn effective_max_tries(&self) -> u32 {
        u32::try_from(self.max_tries.max(1)).unwrap_or(u32::MAX)
    }

    /// The attempt timeout in seconds (`None` when 0 or negative: the worker's default applies).
    pub fn timeout_secs(&self) -> Option<f64> {
        self.timeout.as_f64().filter(|t| *t > 0.0)
    }

    /// The fixed retry delay in seconds (the backoff base when backoff is on).
    pub fn retry_after_secs(&self) -> f64 {
        self.retry_after.as_f64().unwrap_or(0.0).max(0.0)
    }

    /// Whether the job asked for exponential backoff.
    pub fn backoff_enabled(&self) -> bool {
        self.retry_backoff_enabled
    }

    /// The job's backoff cap in seconds, if it set one.
    pub fn backoff_max_delay(&self) -> Option<f64> {
        self.retry_backoff_max_delay
            .as_ref()
            .and_then(Number::as_f64)
    }

    /// The job's backoff jitter, if it set one.
    pub fn backoff_jitter(&self) -> Option<f64> {
        self.retry_backoff_jitter.as_ref().and_then(Number::as_f64)
    }

    /// The queue named inside the envelope (informational: the queue a job sits in is what counts).
    pub fn queue(&self) -> &str {
        &self.queue
    }
}

/// The short type name for `observability.job_class`: the last dotted segment of the tag.
pub(crate) fn short_name(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

/// Convenience for [`Envelope::encode`] with the observability RouteMQ's manager writes, under
/// the trace ids of the dispatch.
/// The priority a stored envelope carries (0 when it carries none, or cannot be read).
pub(crate) fn priority_of(payload: &str) -> u8 {
    Envelope::decode(payload).map_or(0, |envelope| envelope.priority())
}

/// routemq's own envelope fields a dispatch sets: a unique job's key, and a priority that
/// overrides the type's.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OwnFields<'a> {
    pub(crate) unique_key: Option<&'a str>,
    pub(crate) priority: Option<u8>,
}

pub(crate) fn encode_job<T: Job>(
    job: &T,
    queue: &str,
    connection: &str,
    delay: Option<u64>,
    bulk: bool,
    ids: &crate::observability::ProducerIds,
    own: OwnFields<'_>,
) -> Result<String, EnvelopeError> {
    let observability = Observability {
        correlation_id: ids.correlation_id.as_deref(),
        trace_id: &ids.trace_id,
        span_id: &ids.span_id,
        trace_flags: "01",
        parent_span_id: Some(ids.parent_span_id.as_deref()),
        job_class: short_name(T::NAME),
        queue,
        connection,
        delay,
        bulk,
    };
    let options = JobOptions {
        priority: own.priority.unwrap_or(T::OPTIONS.priority),
        ..T::OPTIONS
    };
    Envelope::encode_keyed(job, &options, queue, &observability, own.unique_key)
}

/// Whether the `parent_span_id` key is left out (no trace at all).
fn is_untraced(parent: &Option<Option<&str>>) -> bool {
    parent.is_none()
}

/// Bytes that serde_json wrote, as text: valid UTF-8 always, taken over without a copy (a lossy
/// copy only if that ever failed).
pub(crate) fn into_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECHO: &str = r#"{"class": "interop_jobs.EchoJob", "data": {"text": "h\u00fc", "n": [1, 2.5]}, "observability": {"trace_id": "ab", "queue": "q"}, "max_tries": 3, "timeout": 30, "retry_after": 0, "retry_backoff_enabled": false, "retry_backoff_max_delay": null, "retry_backoff_jitter": null, "queue": "interop"}"#;

    #[test]
    fn priorities_travel_in_the_envelope_only_when_set() {
        let observability = Observability {
            correlation_id: None,
            trace_id: "ab",
            span_id: "cd",
            trace_flags: "01",
            parent_span_id: None,
            job_class: "Thing",
            queue: "q",
            connection: "memory",
            delay: None,
            bulk: false,
        };
        let data = serde_json::json!({"n": 1});
        let urgent = JobOptions {
            priority: 7,
            ..JobOptions::DEFAULT
        };
        let payload =
            Envelope::encode_with(&data, "t.Thing", &urgent, "q", &observability).expect("encodes");
        assert!(
            payload.ends_with(r#""queue": "q", "priority": 7}"#),
            "{payload}"
        );
        let envelope = Envelope::decode(&payload).expect("decodes");
        assert_eq!(envelope.priority(), 7);
        assert_eq!(envelope.to_json(), payload, "kept on re-encoding");
        let plain =
            Envelope::encode_with(&data, "t.Thing", &JobOptions::DEFAULT, "q", &observability)
                .expect("encodes");
        assert!(!plain.contains("priority"), "RouteMQ's layout: {plain}");
        assert_eq!(Envelope::decode(ECHO).expect("decodes").priority(), 0);
        let wrong = payload.replace(r#""priority": 7"#, r#""priority": 300"#);
        assert!(Envelope::decode(&wrong).is_err(), "out of range");
    }

    #[test]
    fn decodes_and_re_encodes_byte_for_byte() {
        let envelope = Envelope::decode(ECHO).expect("decodes");
        assert_eq!(envelope.class(), "interop_jobs.EchoJob");
        assert_eq!(envelope.effective_max_tries(), 3);
        assert_eq!(envelope.timeout_secs(), Some(30.0));
        assert_eq!(envelope.queue(), "interop");
        assert_eq!(envelope.to_json(), ECHO);
    }

    #[test]
    fn routemqs_own_fields_travel_and_survive_the_failed_store() {
        let with_extras = ECHO.replacen(
            r#""queue": "interop"}"#,
            r#""queue": "interop", "retry_until": 1800000000.5, "unique_key": "unique:x.Y:7"}"#,
            1,
        );
        let envelope = Envelope::decode(&with_extras).expect("decodes");
        assert_eq!(envelope.unique_key(), Some("unique:x.Y:7"));
        let deadline = envelope.retry_until().expect("a deadline");
        let secs = deadline
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .expect("after the epoch")
            .as_secs_f64();
        assert!((secs - 1_800_000_000.5).abs() < 1e-3, "{secs}");
        assert_eq!(envelope.to_json(), with_extras);
        let plain = Envelope::decode(ECHO).expect("decodes");
        assert_eq!((plain.unique_key(), plain.retry_until()), (None, None));
    }

    #[test]
    fn missing_fields_take_routemq_defaults() {
        let envelope = Envelope::decode(r#"{"class": "x.Y"}"#).expect("decodes");
        assert_eq!(envelope.data(), "{}");
        assert_eq!(
            (
                envelope.max_tries(),
                envelope.timeout_secs(),
                envelope.retry_after_secs()
            ),
            (3, Some(60.0), 0.0)
        );
        assert_eq!(envelope.queue(), "default");
        assert!(!envelope.backoff_enabled());
    }

    #[test]
    fn malformed_envelopes_are_typed_errors() {
        let cases: [(&str, &str); 10] = [
            ("not json", "not valid JSON"),
            (r#"{"class": "x.Y", "data": {"#, "not valid JSON"),
            ("[1, 2]", "found an array"),
            ("{}", "no `class`"),
            (r#"{"class": null}"#, "no `class`"),
            (r#"{"class": 123}"#, "found a number"),
            (r#"{"class": ""}"#, "found an empty string"),
            (
                r#"{"class": "x.Y", "data": [1]}"#,
                "`data` must be an object, found an array",
            ),
            (
                r#"{"class": "x.Y", "max_tries": "3"}"#,
                "`max_tries` must be an integer, found a string",
            ),
            (
                r#"{"class": "x.Y", "queue": 5}"#,
                "`queue` must be a string, found a number",
            ),
        ];
        for (payload, expected) in cases {
            let error = Envelope::decode(payload).expect_err(payload).to_string();
            assert!(error.contains(expected), "{payload}: {error}");
        }
    }

    #[test]
    fn oversized_payloads_are_refused() {
        let huge = format!(
            r#"{{"class": "x.Y", "data": {{"s": "{}"}}}}"#,
            "a".repeat(MAX_PAYLOAD_BYTES)
        );
        assert!(matches!(
            Envelope::decode(&huge),
            Err(EnvelopeError::TooLarge { .. })
        ));
    }

    #[test]
    fn deep_nesting_never_overflows_the_stack() {
        // The envelope skims `data` without recursing; a job type whose field would recurse into
        // it gets serde_json's recursion-limit error, which the worker records as a failed job.
        let depth = 100_000;
        let deep = format!(
            r#"{{"class": "x.Y", "data": {{"a": {}1{}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let envelope = Envelope::decode(&deep).expect("valid JSON");
        let error =
            serde_json::from_str::<serde_json::Value>(envelope.data()).expect_err("too deep");
        assert!(
            error.to_string().contains("recursion limit exceeded"),
            "{error}"
        );
        let truncated = format!(r#"{{"class": "x.Y", "data": {{"a": {}"#, "[".repeat(depth));
        assert!(matches!(
            Envelope::decode(&truncated),
            Err(EnvelopeError::NotJson(_))
        ));
    }
}
