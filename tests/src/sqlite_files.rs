//! Fresh SQLite database files for tests, in cargo's temporary folder.

use std::path::PathBuf;

/// A path no other test uses (the file and its WAL companions are removed first).
pub fn fresh_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("routemq-tests");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{}.sqlite", crate::ledger::unique_key(name)));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}
