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

/// After downtime, `Missed::RunOnce` fires one tick at start and `Missed::Skip` none; a schedule
/// that never ran does not catch up.
pub async fn missed_ticks_follow_the_policy(h: Harness) {
    let once = format!("{}-once", h.key);
    let skip = format!("{}-skip", h.key);
    let both = |h: &Harness| {
        every_second(h, &once, Missed::RunOnce).merge(every_second(h, &skip, Missed::Skip))
    };
    let fresh = run(&h, both(&h), Duration::ZERO).await;
    assert_eq!(fresh.fired, 0, "nothing ran before: no catch-up");
    let first = run(&h, both(&h), Duration::from_millis(1_500)).await;
    assert!(first.fired >= 2, "{first:?}");
    let before = h.size().await;
    // Down for more than a tick.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let restarted = run(&h, both(&h), Duration::ZERO).await;
    assert_eq!(
        restarted.fired, 1,
        "RunOnce fired once for the missed ticks, Skip none: {restarted:?}"
    );
    assert_eq!(h.size().await, before + 1);
}
