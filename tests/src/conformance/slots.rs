//! Slots: the counting semaphore with expiring holders that limits, locks, unique dispatch and
//! paused queues are built on.

use std::sync::Arc;
use std::time::Duration;

use crate::Harness;

const TTL: Duration = Duration::from_secs(30);

/// Holders count against the limit; a holder asking again keeps its slot; a probe takes nothing;
/// releasing frees the slot; releasing the name frees them all.
pub async fn slots_count_holders_up_to_the_limit(h: Harness) {
    let d = &h.driver;
    let name = format!("{}:slots", h.key);
    assert!(d.acquire_slot(&name, "a", 2, TTL).await.expect("a").taken);
    assert!(d.acquire_slot(&name, "b", 2, TTL).await.expect("b").taken);
    let mut holders = d.slot_holders(&name).await.expect("holders");
    holders.sort();
    let who: Vec<&str> = holders.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(who, ["a", "b"]);
    assert!(
        holders
            .iter()
            .all(|(_, left)| *left > TTL - Duration::from_secs(5) && *left <= TTL),
        "{holders:?}"
    );
    assert!(
        d.slot_holders(&format!("{name}-none"))
            .await
            .expect("none")
            .is_empty()
    );
    let refused = d.acquire_slot(&name, "c", 2, TTL).await.expect("c");
    assert!(!refused.taken);
    let free_in = refused.free_in.expect("says when");
    assert!(
        free_in > TTL - Duration::from_secs(5) && free_in <= TTL,
        "{free_in:?}"
    );
    assert!(
        d.acquire_slot(&name, "a", 2, TTL)
            .await
            .expect("a again")
            .taken
    );
    assert!(
        !d.acquire_slot(&name, "probe", 2, Duration::ZERO)
            .await
            .expect("probe")
            .taken
    );
    d.release_slot(&name, Some("a")).await.expect("release");
    assert!(
        d.acquire_slot(&name, "probe", 2, Duration::ZERO)
            .await
            .expect("probe")
            .taken
    );
    // The probe took nothing: two more holders still do not fit.
    assert!(d.acquire_slot(&name, "c", 2, TTL).await.expect("c").taken);
    assert!(!d.acquire_slot(&name, "d", 2, TTL).await.expect("d").taken);
    // Other names are separate; a zero limit never admits.
    assert!(
        d.acquire_slot(&format!("{name}-other"), "d", 1, TTL)
            .await
            .expect("other")
            .taken
    );
    assert!(
        !d.acquire_slot(&format!("{name}-zero"), "d", 0, TTL)
            .await
            .expect("zero")
            .taken
    );
    d.release_slot(&name, None).await.expect("release all");
    assert!(!d.renew_slot(&name, "b", TTL).await.expect("renew"));
    assert!(d.acquire_slot(&name, "d", 1, TTL).await.expect("d").taken);
    // Long names and holders are stored too.
    let long = format!("{name}-{}", "n".repeat(300));
    let holder = "h".repeat(300);
    assert!(
        d.acquire_slot(&long, &holder, 1, TTL)
            .await
            .expect("long")
            .taken
    );
    assert!(
        !d.acquire_slot(&long, &format!("{holder}2"), 1, TTL)
            .await
            .expect("long 2")
            .taken
    );
    // Which names have a holder, in one call.
    let names = [name.clone(), long.clone(), format!("{name}-none")];
    assert_eq!(
        d.held_slots(&names).await.expect("held"),
        [true, true, false]
    );
    assert!(d.held_slots(&[]).await.expect("none").is_empty());
    d.release_slot(&long, Some(&holder))
        .await
        .expect("release long");
    assert!(
        d.acquire_slot(&long, &format!("{holder}2"), 1, TTL)
            .await
            .expect("long 2")
            .taken
    );
}

/// A holder that never releases (a dead worker) loses its slot when its ttl passes; renewing
/// keeps it.
pub async fn slots_expire_unless_renewed(h: Harness) {
    let d = &h.driver;
    let name = format!("{}:expiring", h.key);
    let short = Duration::from_millis(600);
    assert!(
        d.acquire_slot(&name, "dead", 1, short)
            .await
            .expect("dead")
            .taken
    );
    assert!(
        d.acquire_slot(&format!("{name}-kept"), "kept", 1, short)
            .await
            .expect("kept")
            .taken
    );
    let refused = d.acquire_slot(&name, "next", 1, TTL).await.expect("next");
    assert!(!refused.taken);
    assert!(refused.free_in.expect("says when") <= short);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(
        d.renew_slot(&format!("{name}-kept"), "kept", short)
            .await
            .expect("renew")
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(
        d.acquire_slot(&name, "next", 1, TTL)
            .await
            .expect("after expiry")
            .taken
    );
    assert!(
        !d.acquire_slot(&format!("{name}-kept"), "other", 1, TTL)
            .await
            .expect("kept")
            .taken,
        "the renewed slot is still held"
    );
    assert!(
        !d.renew_slot(&name, "dead", short)
            .await
            .expect("renew dead")
    );
}

/// Many callers racing for a name: exactly `limit` of them get a slot.
pub async fn racing_holders_never_exceed_the_limit(h: Harness) {
    for round in 0..3 {
        let name = Arc::new(format!("{}:race-{round}", h.key));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..12 {
            let (driver, name) = (Arc::clone(&h.driver), Arc::clone(&name));
            tasks.spawn(async move {
                driver
                    .acquire_slot(&name, &format!("holder-{i}"), 3, TTL)
                    .await
                    .expect("acquire")
                    .taken
            });
        }
        let mut taken = 0;
        while let Some(joined) = tasks.join_next().await {
            taken += usize::from(joined.expect("task"));
        }
        assert_eq!(taken, 3, "round {round}");
    }
}

/// The sweep deletes expired holders, so names used once do not pile up; a swept name works
/// as new. (Redis lets the keys expire by themselves: its sweep has nothing to do. On a shared
/// server other tests' workers sweep too, so the count is checked where the store is this test's
/// own; `tests/tests/slot_sweep.rs` checks the server tables row by row.)
pub async fn sweeping_removes_expired_holders(h: Harness) {
    let d = &h.driver;
    let short = Duration::from_millis(300);
    for i in 0..3 {
        let name = format!("{}:once-{i}", h.key);
        assert!(
            d.acquire_slot(&name, "h", 1, short)
                .await
                .expect("acquire")
                .taken
        );
    }
    tokio::time::sleep(Duration::from_millis(450)).await;
    let swept = d.sweep_slots().await.expect("sweep");
    match d.kind() {
        "redis" => assert_eq!(swept, 0),
        "memory" | "sqlite" => assert!(swept >= 3, "swept {swept}"),
        _ => {}
    }
    let name = format!("{}:once-0", h.key);
    assert!(
        d.acquire_slot(&name, "other", 1, TTL)
            .await
            .expect("again")
            .taken
    );
    assert!(
        !d.acquire_slot(&name, "third", 1, TTL)
            .await
            .expect("full")
            .taken
    );
}
