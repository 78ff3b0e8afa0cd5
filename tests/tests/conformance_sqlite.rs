//! The driver conformance suite on SQLite (a fresh database file per test), plus SQLite's own
//! checks: several connections on one file, and RouteMQ's schema.

use std::sync::Arc;

use routemq::driver::QueueDriver;
use routemq::driver::sqlite::SqliteDriver;
use routemq_tests::sqlite_files::fresh_path;

async fn open(name: &str) -> Arc<dyn QueueDriver> {
    let path = fresh_path(name);
    Arc::new(
        SqliteDriver::open(path.to_str().expect("utf-8 path"))
            .await
            .expect("opens"),
    )
}

routemq_tests::conformance_suite!(|| async { Some(open("conformance").await) });

/// Two drivers (two connection pools, as two processes would have) on one file, four workers:
/// every job runs exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connection_pools_on_one_file_never_double_deliver() {
    let path = fresh_path("shared-file");
    let path = path.to_str().expect("utf-8 path");
    let first: Arc<dyn QueueDriver> = Arc::new(SqliteDriver::open(path).await.expect("opens"));
    let second: Arc<dyn QueueDriver> =
        Arc::new(SqliteDriver::open(path).await.expect("opens again"));
    routemq_tests::pools::two_pools_never_double_deliver(first, second, "shared-file", 300).await;
}

/// The file holds RouteMQ's tables and columns, in WAL mode, and a RouteMQ row is read as is.
#[tokio::test]
async fn schema_is_routemqs_and_accepts_its_rows() {
    let path = fresh_path("schema");
    let path_text = path.to_str().expect("utf-8 path");
    let driver = SqliteDriver::open(path_text).await.expect("opens");

    let db = sqlx::SqlitePool::connect(&format!("sqlite:{path_text}"))
        .await
        .expect("inspect");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&db)
        .await
        .expect("pragma");
    assert_eq!(mode, "wal");
    let columns = |table: &'static str| {
        let db = db.clone();
        async move {
            let rows: Vec<(String, String, i64)> = sqlx::query_as(&format!(
                "SELECT name, type, \"notnull\" FROM pragma_table_info('{table}') ORDER BY cid"
            ))
            .fetch_all(&db)
            .await
            .expect("table info");
            rows.into_iter()
                .map(|(n, t, nn)| format!("{n} {t}{}", if nn == 1 { " NOT NULL" } else { "" }))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        columns("queue_jobs").await,
        [
            "id INTEGER",
            "queue VARCHAR(255) NOT NULL",
            "payload TEXT NOT NULL",
            "attempts INTEGER NOT NULL",
            "reserved_at DATETIME",
            "available_at DATETIME NOT NULL",
            "created_at DATETIME NOT NULL",
            // routemq's own: prefetches not followed by a start, and the job's priority (RouteMQ
            // leaves both at their default).
            "unstarted INTEGER NOT NULL",
            "priority INTEGER NOT NULL"
        ]
    );
    assert_eq!(
        columns("queue_failed_jobs").await,
        [
            "id INTEGER",
            "connection VARCHAR(255) NOT NULL",
            "queue VARCHAR(255) NOT NULL",
            "payload TEXT NOT NULL",
            "exception TEXT NOT NULL",
            "failed_at DATETIME NOT NULL"
        ]
    );

    // Rows exactly as RouteMQ's SQLAlchemy model writes them (naive UTC timestamps) are served.
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&routemq_tests::interop::fixture("sql-queue_jobs-rows.json"))
            .expect("rows");
    for row in &rows {
        sqlx::query("INSERT INTO queue_jobs (queue, payload, attempts, reserved_at, available_at, created_at) VALUES (?, ?, ?, NULL, ?, ?)")
            .bind(row["queue"].as_str())
            .bind(row["payload"].as_str())
            .bind(row["attempts"].as_i64())
            .bind(row["available_at"].as_str().map(|t| t.replace('T', " ")))
            .bind(row["created_at"].as_str().map(|t| t.replace('T', " ")))
            .execute(&db)
            .await
            .expect("insert RouteMQ row");
    }
    let reserved = driver
        .reserve(&["samples".to_owned()], 5)
        .await
        .expect("reserve");
    assert_eq!(
        reserved.len(),
        2,
        "both sample rows are due by now (the delayed one by an hour in 2026)"
    );
    assert_eq!(
        reserved[0].payload,
        rows[0]["payload"].as_str().expect("payload")
    );
    assert_eq!(reserved[0].lease.attempts, 1);
    let stored: (i64, Option<String>) =
        sqlx::query_as("SELECT attempts, reserved_at FROM queue_jobs ORDER BY id LIMIT 1")
            .fetch_one(&db)
            .await
            .expect("row");
    assert_eq!(stored.0, 1);
    let reserved_at = stored.1.expect("reserved_at set");
    assert_eq!(
        reserved_at.len(),
        26,
        "naive UTC with microseconds: {reserved_at}"
    );
    assert_eq!(&reserved_at[10..11], " ");
}
