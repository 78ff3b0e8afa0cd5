//! A slow report that stops cleanly when the worker shuts down.

use std::time::Duration;

use routemq::prelude::*;

/// Build a report. Takes a moment, and watches the cancellation token so that a shutdown or a
/// timeout stops it between steps instead of mid-write.
#[derive(Debug, Clone)]
#[job(max_tries = 2, timeout = 300, retry_after = 30, queue = "reports")]
pub struct GenerateReportJob {
    /// `daily`, `weekly`, ...
    pub report_type: String,
    /// Who asked for it.
    pub user_id: u64,
    /// How many sections to build (each takes 50 ms).
    pub sections: u32,
}

impl Job for GenerateReportJob {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        for section in 1..=self.sections {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
                () = ctx.cancellation().cancelled() => {
                    return Err(JobError::msg(format!("stopped after {} of {} sections", section - 1, self.sections)));
                }
            }
        }
        println!(
            "  [report] job {} {} report for user {} ({} sections)",
            ctx.job_id(),
            self.report_type,
            self.user_id,
            self.sections
        );
        Ok(())
    }
}
