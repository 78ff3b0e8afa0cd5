//! Schedules: every tick fires once however many schedulers run; missed ticks follow the policy.

use std::time::{Duration, SystemTime};

use routemq::schedule::{Missed, Schedule, Scheduler, SchedulerReport};

use crate::Harness;
use crate::jobs::Record;

fn every_second(h: &Harness, name: &str, missed: Missed) -> Schedule {
    routemq::schedule()
        .job(Record {
            key: h.key.clone(),
            n: 0,
        })
        .cron("* * * * * *")
        .on_queue(&h.queue)
        .name(name)
        .missed(missed)
}

fn secs(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// Runs a scheduler of `schedule` until `stop` resolves.
async fn run(h: &Harness, schedule: Schedule, stop: Duration) -> SchedulerReport {
    let scheduler = Scheduler::new(schedule, &h.manager).expect("valid schedule");
    tokio::time::timeout(
        stop + Duration::from_secs(30),
        scheduler.run(tokio::time::sleep(stop)),
    )
    .await
    .expect("the scheduler stops")
    .expect("ran")
}

/// Three schedulers run one every-second schedule for about four seconds: each tick is claimed
/// by exactly one of them, no tick in the window is skipped, and the jobs stored are the ticks
/// fired. The list shows the last run.
pub async fn scheduled_ticks_fire_once_across_schedulers(h: Harness) {
    let name = format!("{}-every-second", h.key);
    let started = SystemTime::now();
    let window = Duration::from_millis(5_200);
    let schedule = || every_second(&h, &name, Missed::Skip);
    let (a, b, c) = tokio::join!(
        run(&h, schedule(), window),
        run(&h, schedule(), window),
        run(&h, schedule(), window)
    );
    let reports = [a, b, c];
    let stopped = SystemTime::now();
    let fired: u64 = reports.iter().map(|r| r.fired).sum();
    let raced: u64 = reports.iter().map(|r| r.claimed_elsewhere).sum();
    assert!(reports.iter().all(|r| r.failed == 0), "{reports:?}");
    assert_eq!(h.size().await, fired, "one job per fired tick: {reports:?}");
    // The ticks well inside the window (every scheduler was running) were each claimed by one.
    let mut claimed = 0;
    for tick in secs(started) + 2..secs(stopped) - 1 {
        let holders = h
            .driver
            .slot_holders(&format!("schedule:{name}:{tick}"))
            .await
            .expect("holders");
        assert_eq!(holders.len(), 1, "tick {tick}: {holders:?}");
        claimed += 1;
    }
    assert!(claimed >= 2, "{claimed} ticks in the window");
    assert!(
        fired >= claimed && fired <= claimed + 4,
        "{fired} fired for {claimed} ticks inside the window: {reports:?}"
    );
    assert!(
        raced <= 2 * fired && raced + 6 >= 2 * fired,
        "the other two schedulers found each tick taken: {reports:?}"
    );
    let scheduler =
        Scheduler::new(every_second(&h, &name, Missed::Skip), &h.manager).expect("valid");
    let listed = scheduler.list().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, name);
    assert_eq!(listed[0].cron, "* * * * * *");
    assert!(listed[0].last_run.is_some(), "{listed:?}");
    assert!(listed[0].next_run.is_some(), "{listed:?}");
}

/// After downtime, `Missed::RunOnce` fires the missed tick once at start and `Missed::Skip` does
/// not; a schedule that never ran does not catch up; a tick fired is not fired again.
pub async fn missed_ticks_follow_the_policy(h: Harness) {
    // A yearly schedule: its last tick (1 January, 00:00 UTC) is long past.
    let yearly = |name: &str, missed| {
        routemq::schedule()
            .job(Record {
                key: h.key.clone(),
                n: 0,
            })
            .cron("0 0 1 1 *")
            .on_queue(&h.queue)
            .name(name)
            .missed(missed)
    };
    let once = format!("{}-once", h.key);
    let skip = format!("{}-skip", h.key);
    let both = || yearly(&once, Missed::RunOnce).merge(yearly(&skip, Missed::Skip));
    let brief = Duration::from_millis(500);
    let fresh = run(&h, both(), brief).await;
    assert_eq!(fresh.fired, 0, "never ran before: no catch-up: {fresh:?}");
    // Both ran on 1 January 2025, then no scheduler ran since.
    for name in [&once, &skip] {
        let slot = format!("schedule-last:{name}");
        h.driver
            .acquire_slot(&slot, "1735689600", u32::MAX, Duration::from_secs(3600))
            .await
            .expect("record a last run");
    }
    let restarted = run(&h, both(), brief).await;
    assert_eq!(
        restarted.fired, 1,
        "RunOnce fired once for the missed ticks, Skip none: {restarted:?}"
    );
    assert_eq!(h.size().await, 1);
    let again = run(&h, both(), brief).await;
    assert_eq!(again.fired, 0, "the tick is recorded as run: {again:?}");
    let listed = Scheduler::new(both(), &h.manager)
        .expect("valid")
        .list()
        .await
        .expect("list");
    assert!(
        listed[0].last_run.as_deref() > Some("2025-01-02"),
        "{listed:?}"
    );
    assert!(
        listed[1]
            .last_run
            .as_deref()
            .is_some_and(|last| last.starts_with("2025-01-01T00:00:00")),
        "{listed:?}"
    );
}
