//! Dispatch inside the caller's own database transaction: the job exists if and only if the
//! transaction commits.
//!
//! ```no_run
//! # use routemq::prelude::*;
//! # #[job] struct SendReceipt { order: i64 }
//! # impl Job for SendReceipt { async fn handle(&mut self, _: &JobContext) -> Result<(), JobError> { Ok(()) } }
//! # async fn checkout(pool: routemq::sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! let mut tx = pool.begin().await?;
//! let order: i64 = routemq::sqlx::query_scalar("INSERT INTO orders (total) VALUES (42) RETURNING id")
//!     .fetch_one(&mut *tx)
//!     .await?;
//! SendReceipt { order }.dispatch().within(&mut *tx).await?; // same transaction
//! tx.commit().await?; // the order and its job appear together, or neither does
//! # Ok(()) }
//! ```
//!
//! Use `routemq::sqlx` (the version routemq is built with) for the pool and the transaction.

use async_trait::async_trait;

use super::dispatch::PendingDispatch;
use super::{PendingBulk, QueueError};
use crate::driver::{DriverError, NewJob};
use crate::job::Job;

/// A database connection (or open transaction) that jobs can be inserted on.
#[async_trait]
pub trait EnqueueConnection: Send {
    /// The connection name written into the envelope (`postgres`, `mysql`).
    const CONNECTION: &'static str;

    /// Inserts the jobs on this connection; returns their ids.
    async fn push_jobs(&mut self, jobs: &[NewJob]) -> Result<Vec<String>, DriverError>;
}

#[cfg(feature = "postgres")]
#[async_trait]
impl EnqueueConnection for sqlx::PgConnection {
    const CONNECTION: &'static str = "postgres";

    async fn push_jobs(&mut self, jobs: &[NewJob]) -> Result<Vec<String>, DriverError> {
        crate::driver::postgres::push_on(self, jobs).await
    }
}

#[cfg(feature = "mysql")]
#[async_trait]
impl EnqueueConnection for sqlx::MySqlConnection {
    const CONNECTION: &'static str = "mysql";

    async fn push_jobs(&mut self, jobs: &[NewJob]) -> Result<Vec<String>, DriverError> {
        crate::driver::mysql::push_on(self, jobs).await
    }
}

fn driver_error<C: EnqueueConnection>(source: DriverError) -> QueueError {
    QueueError::Driver {
        connection: C::CONNECTION.to_owned(),
        source,
    }
}

/// Unique jobs take their key on the queue's connection, which a transaction could not roll back.
fn refuse_unique<T: Job>() -> Result<(), QueueError> {
    match T::OPTIONS.unique_for {
        Some(_) => Err(QueueError::UniqueInTransaction { job: T::NAME }),
        None => Ok(()),
    }
}

impl<T: Job> PendingDispatch<'_, T> {
    /// Inserts the job on `conn`, typically `&mut *tx` of an open transaction, instead of through
    /// the queue manager: it becomes visible to workers when that transaction commits, and
    /// disappears if it rolls back. Returns the job id.
    pub async fn within<C: EnqueueConnection>(self, conn: &mut C) -> Result<String, QueueError> {
        refuse_unique::<T>()?;
        let job = self.encode_for(C::CONNECTION)?;
        if let Some(fake) = self.fake() {
            return Ok(fake.record(T::NAME, &job.queue, C::CONNECTION, job.delay, job.payload));
        }
        let ids = conn
            .push_jobs(std::slice::from_ref(&job))
            .await
            .map_err(driver_error::<C>)?;
        ids.into_iter()
            .next()
            .ok_or_else(|| driver_error::<C>(DriverError::backend("push", "no id returned")))
    }
}

impl<T: Job> PendingBulk<'_, T> {
    /// Inserts every job on `conn` (an open transaction), in one statement where the database allows.
    pub async fn within<C: EnqueueConnection>(
        self,
        conn: &mut C,
    ) -> Result<Vec<String>, QueueError> {
        refuse_unique::<T>()?;
        let jobs = self.encode_for(C::CONNECTION)?;
        if let Some(fake) = self.fake() {
            return Ok(jobs
                .into_iter()
                .map(|job| fake.record(T::NAME, &job.queue, C::CONNECTION, job.delay, job.payload))
                .collect());
        }
        conn.push_jobs(&jobs).await.map_err(driver_error::<C>)
    }
}
