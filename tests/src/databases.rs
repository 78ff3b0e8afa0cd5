//! Databases of a test's own on the shared servers: created for one test and dropped after it,
//! whatever the test's outcome, so that schema changes and fixed queue names cannot collide.

use std::future::Future;

use routemq::sqlx::{self, Connection};

use crate::ledger::unique_key;

/// RouteMQ's own PostgreSQL DDL (SQLAlchemy `Integer` primary keys), as a RouteMQ deployment has it.
const ROUTEMQ_PG: [&str; 2] = [
    "CREATE TABLE queue_jobs (id SERIAL PRIMARY KEY, queue VARCHAR(255) NOT NULL, payload TEXT NOT NULL,
        attempts INTEGER NOT NULL, reserved_at TIMESTAMP, available_at TIMESTAMP NOT NULL, created_at TIMESTAMP NOT NULL)",
    "CREATE TABLE queue_failed_jobs (id SERIAL PRIMARY KEY, connection VARCHAR(255) NOT NULL, queue VARCHAR(255) NOT NULL,
        payload TEXT NOT NULL, exception TEXT NOT NULL, failed_at TIMESTAMP NOT NULL)",
];

/// RouteMQ's own MySQL/MariaDB DDL, as a RouteMQ deployment has it.
const ROUTEMQ_MY: [&str; 2] = [
    "CREATE TABLE queue_jobs (id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY, queue VARCHAR(255) NOT NULL,
        payload TEXT NOT NULL, attempts INTEGER NOT NULL, reserved_at DATETIME NULL, available_at DATETIME NOT NULL,
        created_at DATETIME NOT NULL)",
    "CREATE TABLE queue_failed_jobs (id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY, connection VARCHAR(255) NOT NULL,
        queue VARCHAR(255) NOT NULL, payload TEXT NOT NULL, exception TEXT NOT NULL, failed_at DATETIME NOT NULL)",
];

/// The kind of server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
}

/// A database made for one test.
#[derive(Debug)]
pub struct TempDatabase {
    server: Server,
    base: String,
    name: String,
}

impl TempDatabase {
    /// Creates a fresh database named after `prefix` on the server of `base` (a URL that ends in a
    /// database name, such as `ROUTEMQ_TEST_POSTGRES_URL`).
    ///
    /// # Panics
    /// When the server cannot be reached or refuses.
    pub async fn create(server: Server, base: &str, prefix: &str) -> Self {
        let database = Self {
            server,
            base: base.to_owned(),
            name: unique_key(prefix).replace('-', "_"),
        };
        database
            .admin(&match server {
                Server::Postgres => format!("CREATE DATABASE \"{}\"", database.name),
                Server::Mysql => format!("CREATE DATABASE `{}`", database.name),
            })
            .await
            .expect("create the test database");
        database
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server URL with this database.
    pub fn url(&self) -> String {
        let (server, _) = self
            .base
            .rsplit_once('/')
            .expect("a server URL that ends in a database name");
        format!("{server}/{}", self.name)
    }

    /// Runs `test`, drops the database, then passes on the test's panic if it had one.
    pub async fn run<F>(self, test: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let outcome = tokio::spawn(test).await;
        let drop = match self.server {
            Server::Postgres => format!("DROP DATABASE \"{}\" WITH (FORCE)", self.name),
            Server::Mysql => format!("DROP DATABASE `{}`", self.name),
        };
        let _ = self.admin(&drop).await;
        if let Err(error) = outcome {
            std::panic::resume_unwind(error.into_panic());
        }
    }

    async fn admin(&self, statement: &str) -> Result<(), sqlx::Error> {
        match self.server {
            Server::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.base).await?;
                sqlx::query(statement).execute(&mut conn).await?;
            }
            Server::Mysql => {
                let mut conn = sqlx::MySqlConnection::connect(&self.base).await?;
                sqlx::query(statement).execute(&mut conn).await?;
            }
        }
        Ok(())
    }
}

/// Creates RouteMQ's own tables in the database at `url`, as a RouteMQ deployment has them.
///
/// # Panics
/// When the server refuses.
pub async fn create_routemq_tables(server: Server, url: &str) {
    match server {
        Server::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            for statement in ROUTEMQ_PG {
                sqlx::query(statement)
                    .execute(&mut conn)
                    .await
                    .expect("ddl");
            }
        }
        Server::Mysql => {
            let mut conn = sqlx::MySqlConnection::connect(url).await.expect("connect");
            for statement in ROUTEMQ_MY {
                sqlx::query(statement)
                    .execute(&mut conn)
                    .await
                    .expect("ddl");
            }
        }
    }
}

/// Runs `test` with a migrated driver on a database of its own on `server` (named after
/// `prefix`, dropped afterwards) and that database's URL. Skipped (`skipped: set …`) when the
/// server's URL is not set.
pub async fn with_fresh_database<F, Fut>(server: Server, prefix: &str, test: F)
where
    F: FnOnce(std::sync::Arc<dyn routemq::QueueDriver>, String) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    use routemq::QueueDriver;
    let base = match server {
        Server::Postgres => crate::services::postgres_url(),
        Server::Mysql => crate::services::mysql_url(),
    };
    let Some(base) = base else { return };
    let database = TempDatabase::create(server, &base, prefix).await;
    let url = database.url();
    database
        .run(async move {
            let driver: std::sync::Arc<dyn QueueDriver> = match server {
                Server::Postgres => std::sync::Arc::new(
                    routemq::driver::postgres::PostgresDriver::connect(&url)
                        .await
                        .expect("connect"),
                ),
                Server::Mysql => std::sync::Arc::new(
                    routemq::driver::mysql::MySqlDriver::connect(&url)
                        .await
                        .expect("connect"),
                ),
            };
            driver.migrate().await.expect("migrate");
            test(driver, url).await;
        })
        .await;
}

/// The environment a worker process reads a server database's connection from.
pub fn database_env(connection: &str, url: String) -> Vec<(String, String)> {
    vec![
        ("QUEUE_CONNECTION".to_owned(), connection.to_owned()),
        ("DATABASE_URL".to_owned(), url),
    ]
}
