//! The worker's side of chains: storing a finished job's next link, or the chain's catch job
//! once a job has failed for good (see [`chain`](crate::queue::chain)).

use std::sync::Arc;

use super::Shared;
use super::runner::with_retries;
use crate::envelope::{Chain, ChainLink, Envelope};
use crate::queue::QueueError;

/// Stores one job of a chain (carrying `rest`), on its connection: the worker's own, or another
/// from the global queue manager.
pub(super) async fn store_link(
    shared: &Shared,
    link: &ChainLink,
    rest: Option<Chain>,
) -> Result<(), QueueError> {
    let job = crate::queue::link_job(link, rest, Some(shared.registry))?;
    let driver = if link.connection == shared.connection {
        Arc::clone(&shared.driver)
    } else {
        crate::queue().connection(&link.connection).await?
    };
    with_retries("push", || driver.push(std::slice::from_ref(&job)))
        .await
        .map(|_| ())
        .map_err(|source| QueueError::Driver {
            connection: link.connection.clone(),
            source,
        })
}

/// Stores the `catch` job of a job's chain once the job has failed for good.
pub(super) async fn run_chain_catch(shared: &Shared, envelope: &Envelope) {
    let Some(catch) = envelope.chain().and_then(|chain| chain.catch.as_ref()) else {
        return;
    };
    if let Err(error) = store_link(shared, catch, None).await {
        tracing::error!(%error, queue = %catch.queue, "could not store the chain's catch job");
    }
}
