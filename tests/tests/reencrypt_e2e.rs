//! Key rotation through the door, on every driver: jobs dispatched with the public API under an
//! old key (queued, delayed, a chain, a batch with a callback, and a failed one), then
//! `queue-reencrypt` from the `test-worker` binary with the new key current and the old one
//! previous. Afterwards no stored row or key holds data under the old key; a job under a key
//! nobody gives is reported and left alone (exit code 4); and a worker that has only the new key
//! runs every job, chain link and callback.

use std::sync::{Arc, Once};
use std::time::Duration;

use routemq::Envelope;
use routemq::crypto::{Keyring, reseal};
use routemq::driver::{NewJob, QueueDriver};
use routemq::envelope::Observability;
use routemq_tests::process::{json_of, run_command};
use routemq_tests::process_env::{Rotation, Stage, drain_args};
use routemq_tests::process_jobs::{SealedNote, count, read_ledger};
use routemq_tests::raw_store;

const OLD: [u8; 32] = [0x31; 32];
const NEW: [u8; 32] = [0x42; 32];
const STRANGER: [u8; 32] = [0x53; 32];

fn key_id(key: [u8; 32]) -> String {
    Keyring::new(key, &[])
        .current_id()
        .expect("a key")
        .to_owned()
}

async fn prove(driver: Arc<dyn QueueDriver>, connection: &str, env: Vec<(String, String)>) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        routemq::crypto::install(Keyring::new(OLD, &[]));
    });
    let stage = Stage::new(&driver, connection, "reseal");
    let (manager, queue, ledger, path) = (&stage.manager, &stage.queue, &stage.ledger, &stage.path);
    let note = |n: u64, fail: bool| SealedNote {
        path: path.clone(),
        n,
        secret: format!("PLAINTEXT-{queue}-{n}"),
        fail,
    };
    let cli = |env: &[(String, String)], args: &[&str]| {
        tokio::task::block_in_place(|| run_command(env!("CARGO_BIN_EXE_test-worker"), env, args))
    };
    let work = drain_args(queue);
    let Rotation {
        old: old_key,
        rotated,
        new: new_only,
    } = Rotation::new(&env, OLD, NEW);
    let done = |n: u64| count(&read_ledger(ledger), "done", n);
    let sealed_under = |key: [u8; 32]| format!("rmq:enc:v1:{}:", key_id(key));

    // A job that fails for good under the old key: a failed record.
    manager
        .push(note(1, true))
        .on_queue(queue.clone())
        .await
        .expect("dispatch");
    assert!(cli(&old_key, &work).status.success());
    // Queued, delayed, a chain of two, a batch of one with a `then`.
    manager
        .push(note(2, false))
        .on_queue(queue.clone())
        .await
        .expect("dispatch");
    let delayed = manager
        .later(Duration::from_secs(3_600), note(3, false))
        .on_queue(queue.clone())
        .await
        .expect("dispatch");
    manager
        .chain()
        .then(note(4, false))
        .on_queue(queue.clone())
        .then(note(5, false))
        .on_queue(queue.clone())
        .dispatch()
        .await
        .expect("dispatch");
    manager
        .batch(vec![note(6, false)])
        .on_queue(queue.clone())
        .on_connection(connection)
        .then(note(7, false))
        .dispatch()
        .await
        .expect("dispatch");
    // A job under a key nobody gives.
    let mine = Envelope::encode(&note(8, false), queue, &Observability::default()).expect("encode");
    let foreign = reseal(&Keyring::new(STRANGER, &[OLD]), &mine)
        .expect("reseal")
        .expect("changed");
    let foreign_id = driver
        .push(&[NewJob::new(queue.clone(), foreign, Duration::ZERO)])
        .await
        .expect("push")
        .remove(0);
    let stored = raw_store::rows(connection, &env).await;
    assert!(
        stored.contains(&sealed_under(OLD)),
        "jobs under the old key"
    );

    let first = cli(&rotated, &["queue-reencrypt"]);
    assert_eq!(first.status.code(), Some(4), "{first:?}");
    let report = json_of(&first);
    assert_eq!(report["jobs"], 4, "{report}");
    assert_eq!(report["failed"], 1, "{report}");
    assert_eq!(report["batches"], 1, "{report}");
    assert_eq!(report["leased"], 0, "{report}");
    assert_eq!(report["unreadable"], 1, "{report}");
    assert_eq!(report["key_id"], key_id(NEW), "{report}");
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(stderr.contains("cannot be opened"), "{stderr}");

    let stored = raw_store::rows(connection, &env).await;
    assert!(
        !stored.contains(&sealed_under(OLD)),
        "nothing left under the old key"
    );
    assert!(stored.contains(&sealed_under(NEW)));
    assert!(!stored.contains("PLAINTEXT-"), "no plaintext on the way");
    assert!(cli(&env, &["queue-cancel", &foreign_id]).status.success());
    let again = cli(&new_only, &["queue-reencrypt"]);
    assert!(again.status.success(), "{again:?}");
    let report = json_of(&again);
    for field in ["jobs", "failed", "batches", "leased", "unreadable"] {
        assert_eq!(report[field], 0, "{field}: {report}");
    }
    assert_eq!(report["verified"], true, "{report}");

    // The old key is gone: the failed job still opens, every other job runs.
    let failed = json_of(&cli(&env, &["queue-failed", "--queue", queue]));
    let id = failed[0]["id"].as_str().expect("the failed job");
    let shown = json_of(&cli(&new_only, &["queue-failed-show", id, "--decrypt"]));
    assert_eq!(shown["data"]["n"], 1, "{shown}");
    assert!(cli(&env, &["queue-cancel", &delayed]).status.success());
    assert!(cli(&new_only, &work).status.success());
    for n in [2, 4, 5, 6, 7] {
        assert_eq!(done(n), 1, "job {n} ran once");
    }
    let failed = json_of(&cli(&env, &["queue-failed", "--queue", queue]));
    assert_eq!(
        failed.as_array().map(Vec::len),
        Some(1),
        "only the job meant to fail: {failed}"
    );
}

routemq_tests::on_every_driver!(prove, "reencrypt_e2e");
