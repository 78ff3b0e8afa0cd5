//! The JSON API the pages read (see the [module docs](super) for the routes).

use std::time::SystemTime;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::failed::{self, Filter};
use super::{Shared, overview};
use crate::driver::DriverError;

/// Batches the batches page lists.
const BATCHES_SHOWN: usize = 100;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/session", get(session))
        .route("/api/overview", get(overview))
        .route("/api/failed", get(failed_list))
        .route("/api/failed/retry-all", post(retry_all))
        .route("/api/failed/flush", post(flush))
        .route("/api/failed/{id}", get(failed_show))
        .route("/api/failed/{id}/retry", post(retry))
        .route("/api/failed/{id}/forget", post(forget))
        .route("/api/job-types", get(job_types))
        .route("/api/batches", get(batches))
        .route("/api/schedules", get(schedules))
}

/// A request that failed: its status and a message, as `{"error": ..}`.
pub(super) struct ApiError(StatusCode, String);

impl From<DriverError> for ApiError {
    fn from(error: DriverError) -> Self {
        Self(StatusCode::BAD_GATEWAY, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

type Answer = Result<Json<Value>, ApiError>;

fn answer(value: impl serde::Serialize) -> Answer {
    serde_json::to_value(value)
        .map(Json)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn not_found(id: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no failed job with id `{id}`"),
    )
}

/// What a lookup by failed-job id found, or 404 (no such job, or an id this store cannot hold).
fn found<T>(id: &str, looked_up: Result<Option<T>, DriverError>) -> Result<T, ApiError> {
    match looked_up {
        Ok(Some(value)) => Ok(value),
        Ok(None) | Err(DriverError::InvalidId(_)) => Err(not_found(id)),
        Err(error) => Err(error.into()),
    }
}

async fn session(State(shared): State<Shared>) -> Answer {
    let context = &shared.0;
    answer(json!({
        "csrf": context.csrf,
        "read_only": context.read_only,
        "connection": context.connection,
        "driver": context.driver.kind(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn overview(State(shared): State<Shared>) -> Answer {
    answer(overview::overview(shared.0.driver.as_ref()).await?)
}

async fn failed_list(State(shared): State<Shared>, Query(filter): Query<Filter>) -> Answer {
    let driver = &shared.0.driver;
    let queue = filter.queue.as_deref().filter(|q| !q.is_empty());
    let jobs = driver.failed_recent(queue, failed::SCANNED + 1).await?;
    let queues = driver.queues().await?;
    answer(failed::page(jobs, queues, &filter, SystemTime::now()))
}

async fn failed_show(State(shared): State<Shared>, Path(id): Path<String>) -> Answer {
    let job = found(&id, shared.0.driver.failed_get(&id).await)?;
    Ok(Json(failed::detail(&job)))
}

async fn retry(State(shared): State<Shared>, Path(id): Path<String>) -> Answer {
    let job_id = found(&id, shared.0.driver.failed_retry(&id).await)?;
    tracing::info!(failed_id = %id, %job_id, "failed job retried from the dashboard");
    answer(json!({ "retried": 1, "job_id": job_id }))
}

async fn forget(State(shared): State<Shared>, Path(id): Path<String>) -> Answer {
    let forgotten = shared.0.driver.failed_forget(&id).await;
    found(&id, forgotten.map(|gone| gone.then_some(())))?;
    tracing::info!(failed_id = %id, "failed job forgotten from the dashboard");
    answer(json!({ "forgotten": true }))
}

/// The body of the bulk actions: one queue, or every queue.
#[derive(Debug, Default, Deserialize)]
struct QueueChoice {
    queue: Option<String>,
}

impl QueueChoice {
    fn queue(&self) -> Result<Option<&str>, ApiError> {
        let queue = self.queue.as_deref().filter(|q| !q.is_empty());
        if let Some(queue) = queue {
            crate::names::validate_queue_name(queue)
                .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
        }
        Ok(queue)
    }
}

async fn retry_all(State(shared): State<Shared>, Json(choice): Json<QueueChoice>) -> Answer {
    let retried = shared.0.driver.failed_retry_all(choice.queue()?).await?;
    tracing::info!(retried, queue = ?choice.queue, "failed jobs retried from the dashboard");
    answer(json!({ "retried": retried }))
}

async fn flush(State(shared): State<Shared>, Json(choice): Json<QueueChoice>) -> Answer {
    let flushed = shared.0.driver.failed_flush(choice.queue()?).await?;
    tracing::info!(flushed, queue = ?choice.queue, "failed jobs flushed from the dashboard");
    answer(json!({ "flushed": flushed }))
}

async fn job_types(State(shared): State<Shared>) -> Answer {
    answer(overview::job_types(shared.0.driver.as_ref()).await)
}

async fn batches(State(shared): State<Shared>) -> Answer {
    match crate::batch::list(shared.0.driver.as_ref(), BATCHES_SHOWN).await {
        Ok(items) => answer(json!({ "supported": true, "items": items })),
        Err(DriverError::Unsupported { .. }) => answer(json!({ "supported": false, "items": [] })),
        Err(error) => Err(error.into()),
    }
}

#[cfg(feature = "schedule")]
async fn schedules(State(shared): State<Shared>) -> Answer {
    let Some(scheduler) = &shared.0.scheduler else {
        return answer(json!({ "items": [] }));
    };
    let items = scheduler
        .list()
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, e.to_string()))?;
    answer(json!({ "items": items }))
}

#[cfg(not(feature = "schedule"))]
async fn schedules() -> Answer {
    answer(json!({ "items": [] }))
}
