//! The quick start runs as the README says, on a fresh SQLite file, and tells the whole story.

use std::process::Command;

#[test]
fn quickstart_dispatches_works_and_summarises() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let db = dir.join(format!("quickstart-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&db);
    let output = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .env("QUEUE_SQLITE_PATH", &db)
        .env_remove("QUEUE_CONNECTION")
        .env_remove("DATABASE_URL")
        .current_dir(dir)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("routemq quick start on connection `sqlite`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("bulk-dispatched 3 data jobs in one call"),
        "{stdout}"
    );
    assert!(stdout.contains("SMTP timeout, will retry"), "{stdout}");
    assert!(
        stdout.contains("\"Your invoice\""),
        "the flaky email succeeded on its retry: {stdout}"
    );
    assert!(
        stdout.contains("weekly report"),
        "the delayed report ran: {stdout}"
    );
    for line in [
        "processed: 13",
        "succeeded: 11",
        "retried:   1",
        "failed:    1",
    ] {
        assert!(stdout.contains(line), "summary has `{line}`: {stdout}");
    }
    assert!(
        stdout.contains("Permanent: invalid address \"not-an-address\""),
        "{stdout}"
    );
}
