//! Encrypted jobs through the door, on every driver: jobs dispatched with the public API under a
//! key leave no plaintext anywhere in the store (the SQLite file byte for byte, every SQL row,
//! every Redis value), before and after a `test-worker` ran them and one failed; the failed-job
//! CLI shows the data only with the key; after a key rotation old jobs still run; a worker
//! without the job's key fails it as `DecryptionFailed`, intact, and it runs once retried where
//! the key is known.

use std::sync::{Arc, Once};
use std::time::Duration;

use routemq::crypto::Keyring;
use routemq::driver::{NewJob, QueueDriver};
use routemq::envelope::Observability;
use routemq::{Envelope, JobOptions};
use routemq_tests::process::{json_of, run_command};
use routemq_tests::process_env::{Rotation, Stage, drain_args, with_vars};
use routemq_tests::process_jobs::{SealedNote, SealedOnce, count, read_ledger};
use routemq_tests::raw_store;

const OLD: [u8; 32] = [0x11; 32];
const NEW: [u8; 32] = [0x22; 32];

async fn prove(driver: Arc<dyn QueueDriver>, connection: &str, env: Vec<(String, String)>) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        routemq::crypto::install(Keyring::new(OLD, &[]));
    });
    let stage = Stage::new(&driver, connection, "sealed");
    let (manager, queue, ledger, path) = (&stage.manager, &stage.queue, &stage.ledger, &stage.path);
    let secret = |n: u64| format!("PLAINTEXT-{queue}-{n}");
    let dispatch = |n: u64, fail: bool| {
        manager
            .push(SealedNote {
                path: path.clone(),
                n,
                secret: secret(n),
                fail,
            })
            .on_queue(queue.clone())
            .on_connection(connection)
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
    let events = |event: &str, n: u64| count(&read_ledger(ledger), event, n);
    // What is stored at `moment` holds no plaintext (and, while jobs are stored, their sealed
    // data).
    let no_plaintext = |moment: &'static str, jobs_stored: bool| {
        let (connection, env) = (connection.to_owned(), env.clone());
        async move {
            let raw = raw_store::dump(&connection, &env).await;
            assert!(
                !jobs_stored || raw.contains("rmq:enc:v1:"),
                "{moment}: nothing sealed is stored"
            );
            assert!(
                !raw.contains("PLAINTEXT-"),
                "{moment}: plaintext in the store"
            );
        }
    };

    dispatch(1, false).await.expect("dispatch");
    dispatch(2, true).await.expect("dispatch");
    // A unique encrypted job: its key (its data) is held as an HMAC.
    let once = || {
        manager
            .push(SealedOnce {
                path: path.clone(),
                n: 7,
                secret: secret(7),
            })
            .on_queue(queue.clone())
            .on_connection(connection)
    };
    assert!(once().await.expect("dispatch").id().is_some());
    assert!(
        once().await.expect("dispatch").id().is_none(),
        "a duplicate"
    );
    // A plaintext job of the encrypted type, written by someone else: refused.
    let forged = Envelope::encode_with(
        &serde_json::json!({"path": path, "n": 8, "secret": format!("FORGED-{queue}"), "fail": false}),
        "e2e.SealedNote",
        &JobOptions::DEFAULT,
        queue,
        &Observability::default(),
    )
    .expect("encode");
    driver
        .push(&[NewJob::new(queue.clone(), forged, Duration::ZERO)])
        .await
        .expect("push");
    let raw = raw_store::dump(connection, &env).await;
    assert!(
        raw.contains("unique:e2e.SealedOnce:"),
        "the unique key's slot"
    );
    assert!(
        raw.contains("FORGED-"),
        "the forged job is stored in plaintext"
    );
    no_plaintext("queued", true).await;
    assert!(cli(&old_key, &work).status.success());
    assert_eq!((events("open", 1), events("done", 1)), (1, 1));
    assert_eq!((events("open", 2), events("done", 2)), (1, 0));
    assert_eq!((events("done", 7), events("open", 8)), (1, 0));
    let failed = json_of(&cli(&env, &["queue-failed", "--queue", queue]));
    let forged = failed
        .as_array()
        .expect("a list")
        .iter()
        .find(|f| {
            f["payload"]
                .as_str()
                .is_some_and(|p| p.contains("\"n\": 8"))
        })
        .expect("the forged job failed");
    let exception = forged["exception"].as_str().expect("exception");
    assert!(exception.contains("not sealed"), "{exception}");
    assert!(
        cli(&env, &["queue-forget", forged["id"].as_str().expect("id")])
            .status
            .success()
    );
    no_plaintext("run and failed", true).await;

    let failed = json_of(&cli(&env, &["queue-failed", "--queue", queue]));
    let id = failed[0]["id"].as_str().expect("a failed job").to_owned();
    let shown = json_of(&cli(&old_key, &["queue-failed-show", &id, "--decrypt"]));
    assert_eq!(shown["data"]["secret"], secret(2), "{shown}");
    // Without --decrypt, or without the key: a note, not the data.
    for (env, args) in [
        (&old_key, vec!["queue-failed-show", id.as_str()]),
        (&env, vec!["queue-failed-show", id.as_str(), "--decrypt"]),
    ] {
        let hidden = json_of(&cli(env, &args));
        let said = hidden["data"].as_str().expect("a message, not the data");
        assert!(
            said.contains("encrypted") && said.contains("ROUTEMQ_KEY"),
            "{said}"
        );
        assert!(!hidden.to_string().contains("PLAINTEXT-"));
    }
    assert!(cli(&env, &["queue-forget", &id]).status.success());

    // After a rotation the old key still opens old jobs.
    dispatch(3, false).await.expect("dispatch");
    assert!(cli(&rotated, &work).status.success());
    assert_eq!(events("done", 3), 1);

    // A worker without the job's key fails it, intact; retried where the key is known, it runs.
    dispatch(4, false).await.expect("dispatch");
    assert!(cli(&new_only, &work).status.success());
    assert_eq!(events("open", 4), 0);
    let failed = json_of(&cli(&env, &["queue-failed", "--queue", queue]));
    let exception = failed[0]["exception"].as_str().expect("failed").to_owned();
    assert!(exception.starts_with("DecryptionFailed"), "{exception}");
    assert!(cli(&env, &["queue-retry", "--all"]).status.success());
    assert!(cli(&rotated, &work).status.success());
    assert_eq!((events("open", 4), events("done", 4)), (1, 1));
    no_plaintext("at the end", false).await;

    // A key that does not parse: the worker refuses to start, naming the variable.
    let typo = with_vars(&env, &[("ROUTEMQ_KEY", "not-a-key".to_owned())]);
    let refused = cli(&typo, &work);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("ROUTEMQ_KEY"),
        "{stderr}"
    );

    let key = json_of(&cli(&env, &["queue-keygen"]));
    assert_eq!(key["key"].as_str().map(str::len), Some(44), "{key}");
    assert_eq!(key["key_id"].as_str().map(str::len), Some(8), "{key}");
}

routemq_tests::on_every_driver!(prove, "sealed");
