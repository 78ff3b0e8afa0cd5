//! A push notification to a user.

use routemq::prelude::*;

/// Send a notification to a user.
#[derive(Debug, Clone)]
#[job(max_tries = 3, timeout = 60, retry_after = 10, queue = "default")]
pub struct SendNotificationJob {
    /// Who gets it.
    pub user_id: u64,
    /// What it says.
    pub message: String,
}

impl Job for SendNotificationJob {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        println!(
            "  [notification] job {} → user {}: {}",
            ctx.job_id(),
            self.user_id,
            self.message
        );
        Ok(())
    }
}
