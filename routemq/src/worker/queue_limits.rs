//! Queue-level controls shared by every worker of a connection: a concurrency limit and a rate
//! per queue ([`WorkerOptions::queue_limits`], [`WorkerOptions::queue_rates`]), and paused queues
//! ([`pause`](crate::queue::pause)).
//!
//! Each job of a limited queue runs inside a [`ConcurrencyLimited`] and a [`RateLimited`] named
//! after the queue (outermost, before the worker's own middleware), so the limits hold across
//! processes and hosts. The reserver also asks before reserving: it skips paused queues and
//! queues whose limit is reached, and takes at most `limit` jobs of a limited queue at a time, so
//! that a full queue is not reserved only to be postponed.
//!
//! [`WorkerOptions::queue_limits`]: super::WorkerOptions::queue_limits
//! [`WorkerOptions::queue_rates`]: super::WorkerOptions::queue_rates

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::driver::{DriverError, QueueDriver};
use crate::middleware::{ConcurrencyLimited, Middleware, RateLimited};

/// How long the reserver trusts what it learnt about paused and full queues.
const GATE_TTL: Duration = Duration::from_millis(500);

/// How soon a job held back by its queue's concurrency limit comes back.
const LIMIT_RETRY: Duration = Duration::from_millis(500);

/// A rate: at most `limit` per `period` (`100/60s`, `10/s`, `1000/1h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many.
    pub limit: u32,
    /// Per how long.
    pub period: Duration,
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.limit, self.period.as_secs_f64())
    }
}

/// A rate that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a rate: write COUNT/PERIOD, such as 100/60s, 10/s, 5/1m or 1000/1h")]
pub struct InvalidRate(pub String);

impl FromStr for Rate {
    type Err = InvalidRate;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidRate(text.to_owned());
        let (count, period) = text.trim().split_once('/').ok_or_else(invalid)?;
        let limit: u32 = count.trim().parse().map_err(|_| invalid())?;
        let period = period.trim();
        if period.is_empty() {
            return Err(invalid());
        }
        let split = period
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(period.len());
        let (number, unit) = period.split_at(split);
        let number: f64 = if number.is_empty() {
            1.0
        } else {
            number.parse().map_err(|_| invalid())?
        };
        let unit = match unit {
            "" | "s" => 1.0,
            "ms" => 0.001,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        let period = crate::limits::checked_secs(number * unit)
            .filter(|p| !p.is_zero())
            .ok_or_else(invalid)?;
        Ok(Self { limit, period })
    }
}

/// `QUEUE=VALUE` of `--limit` and `--rate`.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub(crate) fn parse_assignment<T: FromStr>(text: &str) -> Result<(String, T), String>
where
    T::Err: fmt::Display,
{
    let (queue, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not QUEUE=VALUE"))?;
    let value = value
        .trim()
        .parse()
        .map_err(|error| format!("`{text}`: {error}"))?;
    Ok((queue.trim().to_owned(), value))
}

/// Queues closed to reservation, as last learnt.
#[derive(Debug, Clone, Default)]
struct Closed {
    paused: HashSet<String>,
    full: HashSet<String>,
}

/// What the reserver needs: the limits, and what it last learnt about paused and full queues.
#[derive(Debug)]
pub(crate) struct QueueGate {
    limits: BTreeMap<String, u32>,
    closed: Mutex<Option<(Instant, Closed)>>,
}

impl QueueGate {
    pub(crate) fn new(limits: BTreeMap<String, u32>) -> Self {
        Self {
            limits,
            closed: Mutex::new(None),
        }
    }

    /// The queues to reserve from now, in order, each with the most jobs to take from it
    /// (`None`: no cap). A driver without slots has no paused or limited queues; a driver error
    /// leaves the queue open (the reservation will meet the same error).
    pub(crate) async fn open(
        &self,
        driver: &dyn QueueDriver,
        queues: &[String],
    ) -> Vec<(String, Option<usize>)> {
        let closed = self.closed(driver, queues).await;
        queues
            .iter()
            .filter(|q| !closed.paused.contains(*q) && !closed.full.contains(*q))
            .map(|q| {
                let cap = self.limits.get(q).map(|n| *n as usize);
                (q.clone(), cap)
            })
            .collect()
    }

    /// The queues among `queues` that are paused (for `--stop-when-empty`, which does not wait
    /// for them).
    pub(crate) async fn paused(
        &self,
        driver: &dyn QueueDriver,
        queues: &[String],
    ) -> HashSet<String> {
        self.closed(driver, queues).await.paused
    }

    async fn closed(&self, driver: &dyn QueueDriver, queues: &[String]) -> Closed {
        {
            let cached = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((at, closed)) = cached.as_ref()
                && at.elapsed() < GATE_TTL
            {
                return closed.clone();
            }
        }
        let mut closed = Closed::default();
        for queue in queues {
            match self.state(driver, queue).await {
                Ok(State::Paused) => {
                    closed.paused.insert(queue.clone());
                }
                Ok(State::Full) => {
                    closed.full.insert(queue.clone());
                }
                Ok(State::Open) | Err(DriverError::Unsupported { .. }) => {}
                Err(error) => {
                    tracing::debug!(queue, %error, "could not check whether the queue is paused")
                }
            }
        }
        *self.closed.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), closed.clone()));
        closed
    }

    async fn state(&self, driver: &dyn QueueDriver, queue: &str) -> Result<State, DriverError> {
        if crate::queue::pause::is_paused(driver, queue).await? {
            return Ok(State::Paused);
        }
        let Some(limit) = self.limits.get(queue) else {
            return Ok(State::Open);
        };
        let limited = queue_limit(queue, *limit);
        let free = driver
            .acquire_slot(limited.slot(), "probe", *limit, Duration::ZERO)
            .await?;
        Ok(if free.taken { State::Open } else { State::Full })
    }
}

/// Whether a queue may be reserved from.
enum State {
    Open,
    Paused,
    Full,
}

/// The middleware that holds a queue's concurrency limit (the reserver probes its slot).
fn queue_limit(queue: &str, limit: u32) -> ConcurrencyLimited {
    ConcurrencyLimited::new(format!("queue:{queue}"), limit).release_after(LIMIT_RETRY)
}

/// The middleware that enforces a queue's limits, by queue, outermost first.
pub(crate) fn middleware(
    limits: &BTreeMap<String, u32>,
    rates: &BTreeMap<String, Rate>,
) -> HashMap<String, Vec<Arc<dyn Middleware>>> {
    let mut by_queue: HashMap<String, Vec<Arc<dyn Middleware>>> = HashMap::new();
    for (queue, limit) in limits {
        let limited = queue_limit(queue, *limit);
        by_queue
            .entry(queue.clone())
            .or_default()
            .push(Arc::new(limited));
    }
    for (queue, rate) in rates {
        let rated = RateLimited::new(format!("queue:{queue}"), rate.limit, rate.period);
        by_queue
            .entry(queue.clone())
            .or_default()
            .push(Arc::new(rated));
    }
    by_queue
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_units() {
        let rate = |s: &str| s.parse::<Rate>();
        assert_eq!(
            rate("100/60s"),
            Ok(Rate {
                limit: 100,
                period: Duration::from_secs(60)
            })
        );
        assert_eq!(rate("10/s").map(|r| r.period), Ok(Duration::from_secs(1)));
        assert_eq!(rate("5/1m").map(|r| r.period), Ok(Duration::from_secs(60)));
        assert_eq!(
            rate("1000/1h").map(|r| r.period),
            Ok(Duration::from_secs(3600))
        );
        assert_eq!(
            rate("3/250ms").map(|r| r.period),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(
            rate(" 7 / 2 ").map(|r| r.period),
            Ok(Duration::from_secs(2))
        );
        for bad in ["100", "x/1s", "10/0s", "10/1d", "-1/1s", "10/"] {
            assert!(rate(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_assignment::<u32>("emails=5"),
            Ok(("emails".to_owned(), 5))
        );
        assert!(parse_assignment::<u32>("emails").is_err());
    }

    #[test]
    fn limit_slots_match_the_middleware_names() {
        assert_eq!(queue_limit("emails", 2).slot(), "limit:queue:emails");
    }
}
