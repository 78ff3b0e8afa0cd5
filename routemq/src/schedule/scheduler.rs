//! [`Scheduler`]: fires a [`Schedule`]'s ticks, claiming each in the store first.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::join_all;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::cron::CronSpec;
use super::store::{self, epoch_secs};
use super::{Entry, Missed, Schedule, ScheduleError};
use crate::driver::QueueDriver;
use crate::queue::{QueueError, QueueManager};

/// A tick this much late is missed (its scheduler was stopped, suspended or starved), and
/// follows the schedule's [`Missed`] policy.
const LATE_LIMIT: Duration = Duration::from_secs(60);

/// Tries at claiming and dispatching one tick before it is counted as failed.
const TRIES: u32 = 4;

/// The longest one claim or dispatch may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a scheduler sweeps expired slots.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A schedule ready to run: its name and parsed expression.
#[derive(Debug)]
struct Planned {
    name: String,
    entry: Entry,
    spec: CronSpec,
    /// How long a tick's claim is kept: twice the interval between ticks, from 10 minutes to a
    /// week (long enough that no scheduler with a sane clock can claim it again).
    claim_ttl: Duration,
}

/// What a scheduler did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SchedulerReport {
    /// Ticks this scheduler claimed and dispatched.
    pub fired: u64,
    /// Ticks another scheduler had claimed first.
    pub claimed_elsewhere: u64,
    /// Ticks that could not be claimed or dispatched (the store was unreachable): logged as errors.
    pub failed: u64,
    /// Ticks skipped because they were more than a minute late (see [`Missed`]).
    pub missed: u64,
}

/// One schedule as `queue-schedule-list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleStatus {
    /// The schedule's name (what its ticks are claimed under).
    pub name: String,
    /// The job's registered name.
    pub job: String,
    /// The cron expression.
    pub cron: String,
    /// The time zone it is read in.
    pub timezone: String,
    /// The missed-tick policy.
    pub missed: Missed,
    /// The queue override, if any (else the job type's queue).
    pub queue: Option<String>,
    /// The connection it dispatches to and claims its ticks on.
    pub connection: String,
    /// The next tick, ISO 8601 UTC.
    pub next_run: Option<String>,
    /// The last tick fired by any scheduler, ISO 8601 UTC, if remembered.
    pub last_run: Option<String>,
}

/// Runs a [`Schedule`]: at each tick, claims it in the store of the job's connection and, if
/// this scheduler got it, dispatches the job. Any number of schedulers may run the same schedule
/// on any number of hosts; each tick is dispatched once.
///
/// ```no_run
/// # use routemq::prelude::*;
/// # #[job] #[derive(Clone)] struct Ping;
/// # impl Job for Ping { async fn handle(&mut self, _: &JobContext) -> Result<(), JobError> { Ok(()) } }
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use routemq::schedule::Scheduler;
///
/// let schedule = routemq::schedule().job(Ping).cron("*/5 * * * *");
/// let scheduler = Scheduler::new(schedule, routemq::queue())?;
/// let report = scheduler.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
/// println!("fired {} ticks", report.fired);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Scheduler<'m> {
    manager: &'m QueueManager,
    planned: Vec<Planned>,
    id: String,
}

impl<'m> Scheduler<'m> {
    /// Checks `schedule` (every mistake is reported at once) and makes a scheduler that
    /// dispatches through `manager` (usually [`routemq::queue()`](crate::queue())).
    pub fn new(schedule: Schedule, manager: &'m QueueManager) -> Result<Self, ScheduleError> {
        let (entries, mut errors) = schedule.into_parts();
        let mut planned = Vec::with_capacity(entries.len());
        let mut names = HashSet::new();
        for entry in entries {
            let Some(expression) = entry.cron.clone() else {
                errors.push(format!("job `{}` has no `cron` expression", entry.job));
                continue;
            };
            let name = entry
                .name
                .clone()
                .unwrap_or_else(|| format!("{} {expression}", entry.job));
            if !names.insert(name.clone()) {
                errors.push(format!(
                    "two schedules are named `{name}`: give one a `name`"
                ));
            }
            if let Some(queue) = &entry.queue
                && let Err(error) = crate::names::validate_queue_name(queue)
            {
                errors.push(format!("schedule `{name}`: {error}"));
            }
            match CronSpec::parse(&expression, &entry.timezone) {
                Ok(spec) => {
                    let claim_ttl = claim_ttl(&spec);
                    planned.push(Planned {
                        name,
                        entry,
                        spec,
                        claim_ttl,
                    });
                }
                Err(error) => errors.push(format!("schedule `{name}`: {error}")),
            }
        }
        if !errors.is_empty() {
            return Err(ScheduleError::Invalid(errors));
        }
        let id = format!(
            "{}:{}:{:08x}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "host".to_owned()),
            std::process::id(),
            fastrand::u32(..)
        );
        Ok(Self {
            manager,
            planned,
            id,
        })
    }

    /// How many schedules it runs.
    pub fn len(&self) -> usize {
        self.planned.len()
    }

    /// Whether it runs none.
    pub fn is_empty(&self) -> bool {
        self.planned.is_empty()
    }

    /// The connection a schedule dispatches to.
    fn connection_of(&self, entry: &Entry) -> Result<String, QueueError> {
        match (&entry.connection, entry.job_connection) {
            (Some(connection), _) => Ok(connection.clone()),
            (None, Some(connection)) => Ok(connection.to_owned()),
            (None, None) => Ok(self.manager.default_connection()?.to_owned()),
        }
    }

    /// Each schedule's connection name and driver.
    async fn drivers(&self) -> Result<Vec<(String, Arc<dyn QueueDriver>)>, QueueError> {
        let mut connected: HashMap<String, Arc<dyn QueueDriver>> = HashMap::new();
        let mut drivers = Vec::with_capacity(self.planned.len());
        for planned in &self.planned {
            let connection = self.connection_of(&planned.entry)?;
            let driver = match connected.get(&connection) {
                Some(driver) => Arc::clone(driver),
                None => {
                    let driver = self.manager.connection(&connection).await?;
                    connected.insert(connection.clone(), Arc::clone(&driver));
                    driver
                }
            };
            drivers.push((connection, driver));
        }
        Ok(drivers)
    }

    /// Each schedule with its next tick and its last run.
    pub async fn list(&self) -> Result<Vec<ScheduleStatus>, QueueError> {
        let now = SystemTime::now();
        let drivers = self.drivers().await?;
        let mut out = Vec::with_capacity(self.planned.len());
        for (planned, (connection, driver)) in self.planned.iter().zip(drivers) {
            let last = store::last_run(driver.as_ref(), &planned.name)
                .await
                .map_err(|source| QueueError::Driver {
                    connection: connection.clone(),
                    source,
                })?;
            let entry = &planned.entry;
            out.push(ScheduleStatus {
                name: planned.name.clone(),
                job: entry.job.to_owned(),
                cron: entry.cron.clone().unwrap_or_default(),
                timezone: entry.timezone.clone(),
                missed: entry.missed,
                queue: entry.queue.clone(),
                connection,
                next_run: planned.spec.next_after(now).map(crate::time::iso_utc),
                last_run: last.map(|secs| {
                    crate::time::iso_utc(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
                }),
            });
        }
        Ok(out)
    }

    /// Connects every schedule's connection: fails as [`run`](Self::run) would, before it runs.
    pub async fn connect(&self) -> Result<(), QueueError> {
        self.drivers().await.map(|_| ())
    }

    /// Fires ticks until `stop` resolves (a tick being claimed or dispatched is finished first,
    /// each store call bounded by ten seconds). Each schedule runs on
    /// its own, so a slow store or dispatch delays only its own ticks. Fails only if a connection
    /// cannot be made.
    pub async fn run(&self, stop: impl Future<Output = ()>) -> Result<SchedulerReport, QueueError> {
        let drivers = self.drivers().await?;
        tracing::info!(
            schedules = self.planned.len(),
            scheduler = %self.id,
            "scheduler started"
        );
        let stopping = CancellationToken::new();
        let loops = self
            .planned
            .iter()
            .zip(&drivers)
            .map(|(planned, (_, driver))| self.run_one(planned, driver.as_ref(), &stopping));
        let all = async {
            let (reports, ()) = tokio::join!(join_all(loops), sweep(&drivers, &stopping));
            reports
        };
        tokio::pin!(stop, all);
        let reports = tokio::select! {
            biased;
            () = &mut stop => {
                stopping.cancel();
                all.await
            }
            reports = &mut all => reports,
        };
        let report = reports
            .into_iter()
            .fold(SchedulerReport::default(), |sum, r| SchedulerReport {
                fired: sum.fired + r.fired,
                claimed_elsewhere: sum.claimed_elsewhere + r.claimed_elsewhere,
                failed: sum.failed + r.failed,
                missed: sum.missed + r.missed,
            });
        tracing::info!(
            fired = report.fired,
            claimed_elsewhere = report.claimed_elsewhere,
            failed = report.failed,
            "scheduler stopped"
        );
        Ok(report)
    }

    /// One schedule's loop, until `stopping` fires.
    async fn run_one(
        &self,
        planned: &Planned,
        driver: &dyn QueueDriver,
        stopping: &CancellationToken,
    ) -> SchedulerReport {
        let mut report = SchedulerReport::default();
        let now = SystemTime::now();
        if let Some(previous) = planned.spec.last_at_or_before(now) {
            self.at_start(planned, driver, previous, now, &mut report, stopping)
                .await;
        }
        if stopping.is_cancelled() {
            return report;
        }
        let mut next = planned.spec.next_after(now);
        loop {
            let Some(tick) = next else {
                stopping.cancelled().await;
                return report;
            };
            let wait = tick
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                biased;
                () = stopping.cancelled() => return report,
                () = tokio::time::sleep(wait) => {}
            }
            let now = SystemTime::now();
            // Every tick due by now: on time (up to a minute late) they fire; later ones are
            // missed (this scheduler was suspended or starved), and follow the policy.
            let mut due = Vec::new();
            let mut latest_missed = None;
            while let Some(tick) = next.filter(|tick| *tick <= now) {
                next = planned.spec.next_after(tick);
                if now.duration_since(tick).unwrap_or(Duration::ZERO) <= LATE_LIMIT {
                    due.push(tick);
                } else {
                    report.missed += 1;
                    latest_missed = Some(tick);
                }
            }
            if let Some(tick) = latest_missed {
                tracing::warn!(schedule = %planned.name, "ticks more than a minute late were missed");
                if planned.entry.missed == Missed::RunOnce && due.is_empty() {
                    due.push(tick);
                }
            }
            for tick in due {
                if stopping.is_cancelled() {
                    return report;
                }
                self.fire(planned, driver, tick, &mut report, stopping)
                    .await;
            }
        }
    }

    /// At start, the last tick (`previous`) fires if no scheduler fired it: when it is up to a
    /// minute old (a scheduler restarted during it), or, for [`Missed::RunOnce`], whatever its
    /// age if the schedule ran before.
    async fn at_start(
        &self,
        planned: &Planned,
        driver: &dyn QueueDriver,
        previous: SystemTime,
        now: SystemTime,
        report: &mut SchedulerReport,
        stopping: &CancellationToken,
    ) {
        let last = match store::last_run(driver, &planned.name).await {
            Ok(last) => last,
            Err(error) => {
                tracing::warn!(schedule = %planned.name, %error, "could not read the last run; missed ticks are not caught up");
                return;
            }
        };
        if last.is_some_and(|last| epoch_secs(previous) <= last) {
            return;
        }
        let late = now.duration_since(previous).unwrap_or(Duration::ZERO);
        if late <= LATE_LIMIT {
            self.fire(planned, driver, previous, report, stopping).await;
        } else if planned.entry.missed == Missed::RunOnce && last.is_some() {
            tracing::info!(schedule = %planned.name, "running a tick missed while no scheduler ran");
            self.fire(planned, driver, previous, report, stopping).await;
        }
    }

    /// Claims `tick` and, if this scheduler got it, dispatches the job and records the run. A
    /// failed dispatch gives the claim back and tries again (a few times, with backoff, unless
    /// `stopping` fired); each store call gets [`CALL_TIMEOUT`]. A claim or dispatch under way is
    /// finished, not abandoned, so that a stop never leaves a job stored but not counted.
    async fn fire(
        &self,
        planned: &Planned,
        driver: &dyn QueueDriver,
        tick: SystemTime,
        report: &mut SchedulerReport,
        stopping: &CancellationToken,
    ) {
        let secs = epoch_secs(tick);
        let name = &planned.name;
        for attempt in 1..=TRIES {
            let claim = store::claim(driver, name, secs, &self.id, planned.claim_ttl);
            match tokio::time::timeout(CALL_TIMEOUT, claim).await {
                Ok(Ok(false)) => {
                    report.claimed_elsewhere += 1;
                    return;
                }
                Ok(Ok(true)) => {
                    let dispatch = super::dispatch(&planned.entry, self.manager);
                    match tokio::time::timeout(CALL_TIMEOUT, dispatch).await {
                        Ok(Ok(())) => {
                            report.fired += 1;
                            tracing::info!(schedule = %name, tick = secs, "scheduled job dispatched");
                            let record = store::record_run(driver, name, secs);
                            match tokio::time::timeout(CALL_TIMEOUT, record).await {
                                Ok(Ok(())) => {}
                                Ok(Err(error)) => {
                                    tracing::warn!(schedule = %name, %error, "could not record the last run");
                                }
                                Err(_) => {
                                    tracing::warn!(schedule = %name, "recording the last run timed out");
                                }
                            }
                            return;
                        }
                        Ok(Err(error)) => {
                            tracing::error!(schedule = %name, tick = secs, %error, "could not dispatch a scheduled job");
                        }
                        Err(_) => {
                            tracing::error!(schedule = %name, tick = secs, "dispatching a scheduled job timed out");
                        }
                    }
                    store::unclaim(driver, name, secs, &self.id).await;
                }
                Ok(Err(error)) => {
                    tracing::error!(schedule = %name, tick = secs, %error, "could not claim a tick");
                }
                Err(_) => {
                    tracing::error!(schedule = %name, tick = secs, "claiming a tick timed out");
                }
            }
            if attempt < TRIES {
                tokio::select! {
                    () = stopping.cancelled() => break,
                    () = tokio::time::sleep(crate::worker::backoff(attempt)) => {}
                }
            }
        }
        report.failed += 1;
    }
}

/// Sweeps expired slots (old tick claims among them) on each connection every minute, as
/// workers' reapers do, so that a connection with schedulers and no worker stays tidy.
async fn sweep(drivers: &[(String, Arc<dyn QueueDriver>)], stopping: &CancellationToken) {
    let mut connections: Vec<&(String, Arc<dyn QueueDriver>)> = drivers.iter().collect();
    connections.sort_by(|a, b| a.0.cmp(&b.0));
    connections.dedup_by(|a, b| a.0 == b.0);
    loop {
        tokio::select! {
            biased;
            () = stopping.cancelled() => return,
            () = tokio::time::sleep(SWEEP_EVERY) => {}
        }
        for (connection, driver) in &connections {
            if let Err(error) = driver.sweep_slots().await {
                tracing::debug!(connection, %error, "sweeping slots failed");
            }
        }
    }
}

/// Twice the interval between `spec`'s ticks, from 10 minutes to a week.
fn claim_ttl(spec: &CronSpec) -> Duration {
    let now = SystemTime::now();
    let interval = spec
        .next_after(now)
        .and_then(|first| Some((first, spec.next_after(first)?)))
        .and_then(|(first, second)| second.duration_since(first).ok())
        .unwrap_or(Duration::ZERO);
    (interval * 2).clamp(Duration::from_secs(600), Duration::from_secs(7 * 24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobContext, JobError};
    use crate::{Job, Settings};

    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    struct Tick;

    impl crate::JobMeta for Tick {
        const NAME: &'static str = "tests.Tick";
        const OPTIONS: crate::JobOptions = crate::JobOptions::DEFAULT;
        type Dispatched = String;
    }

    impl Job for Tick {
        async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
            Ok(())
        }
    }

    fn errors(schedule: Schedule) -> Vec<String> {
        let manager = QueueManager::new(Settings::default());
        match Scheduler::new(schedule, &manager) {
            Err(ScheduleError::Invalid(errors)) => errors,
            Ok(_) => Vec::new(),
        }
    }

    #[test]
    fn every_mistake_is_reported_at_once() {
        let found = errors(
            crate::schedule()
                .cron("* * * * *")
                .job(Tick)
                .job(Tick)
                .cron("99 * * * *")
                .job(Tick)
                .cron("0 * * * *")
                .on_queue("bad queue")
                .job(Tick)
                .cron("0 * * * *")
                .timezone("Nowhere/City"),
        );
        assert_eq!(found.len(), 6, "{found:#?}");
        assert!(found[0].contains("`cron` comes before any `job`"));
        assert!(found[1].contains("job `tests.Tick` has no `cron` expression"));
        assert!(found[2].contains("cron expression `99 * * * *`"));
        assert!(found[3].contains("bad queue"));
        assert!(found[4].contains("two schedules are named `tests.Tick 0 * * * *`"));
        assert!(found[5].contains("time zone `Nowhere/City`"));
    }

    #[test]
    fn names_default_to_job_and_expression_and_claims_outlive_two_ticks() {
        let manager = QueueManager::new(Settings::default());
        let scheduler = Scheduler::new(
            crate::schedule()
                .job(Tick)
                .cron("*/5 * * * * *")
                .job(Tick)
                .cron("@daily")
                .name("nightly"),
            &manager,
        )
        .expect("valid");
        let names: Vec<&str> = scheduler.planned.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["tests.Tick */5 * * * * *", "nightly"]);
        let ttls: Vec<Duration> = scheduler.planned.iter().map(|p| p.claim_ttl).collect();
        assert_eq!(
            ttls,
            [Duration::from_secs(600), Duration::from_secs(2 * 24 * 3600)]
        );
    }
}
