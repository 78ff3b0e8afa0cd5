//! The `routemq` admin binary: it links no jobs, so `queue-work` explains how to build a worker,
//! while the admin commands work on any connection.

use std::process::Command;

fn routemq(args: &[&str], db: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_routemq"))
        .args(args)
        .env("QUEUE_CONNECTION", "sqlite")
        .env("QUEUE_SQLITE_PATH", db)
        .env_remove("DATABASE_URL")
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .output()
        .expect("runs")
}

fn fresh_db(name: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("admin-{name}-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn queue_work_explains_how_to_build_a_worker() {
    let out = routemq(&["queue-work"], &fresh_db("work"));
    assert_eq!(out.status.code(), Some(1));
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(
        message.contains("no job types are linked into this binary"),
        "{message}"
    );
    assert!(message.contains("routemq::cli::main()"), "{message}");
}

#[test]
fn admin_commands_work_without_job_types() {
    let db = fresh_db("admin");
    let migrate = routemq(&["queue-migrate"], &db);
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&migrate.stdout).expect("JSON");
    assert_eq!(
        json,
        serde_json::json!({"connection": "sqlite", "migrated": true})
    );
    assert!(db.exists(), "the database file was created");
    let failed = routemq(&["queue-failed"], &db);
    assert_eq!(String::from_utf8_lossy(&failed.stdout).trim(), "[]");
    let jobs = routemq(&["list-jobs"], &db);
    assert_eq!(String::from_utf8_lossy(&jobs.stdout).trim(), "[]");
}
