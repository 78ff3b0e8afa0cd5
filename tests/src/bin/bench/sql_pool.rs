//! A connection pool on any SQL server the bench talks to, through sqlx's `Any` driver (one
//! code path for PostgreSQL, MariaDB and SQLite; statements keep their own placeholders).

use routemq::sqlx;

use crate::{BoxError, url};

/// A pool of `connections` on the server of `kind` (`postgres`, `mysql`, `sqlite`) at its
/// [`url`]; SQLite with the harness's settings.
pub(crate) async fn connect(kind: &str, connections: u32) -> Result<sqlx::AnyPool, BoxError> {
    let url = url(kind);
    sqlx::any::install_default_drivers();
    let sqlite = kind == "sqlite";
    let url = if sqlite {
        format!("sqlite://{url}?mode=rwc")
    } else {
        url
    };
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(connections)
        .after_connect(move |con, _| {
            Box::pin(async move {
                if sqlite {
                    // The harness's settings: WAL, synchronous NORMAL, a long busy timeout.
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = NORMAL",
                        "PRAGMA busy_timeout = 30000",
                    ] {
                        sqlx::query(pragma).execute(&mut *con).await?;
                    }
                }
                Ok(())
            })
        })
        .connect(&url)
        .await?;
    Ok(pool)
}
