//! An email, with a flaky server and an invalid address to show retries and the failed store.

use routemq::prelude::*;

/// Send an email. Addresses at `flaky.example` fail on the first attempt (a simulated SMTP
/// timeout) and succeed on the retry; an address without `@` is a permanent failure.
#[derive(Debug, Clone)]
#[job(max_tries = 3, timeout = 30, retry_after = 1, queue = "emails")]
pub struct SendEmailJob {
    /// Recipient.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Body text.
    pub body: String,
}

impl Job for SendEmailJob {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        if !self.to.contains('@') {
            return Err(JobError::permanent(format!(
                "invalid address {:?}",
                self.to
            )));
        }
        if self.to.ends_with("@flaky.example") && ctx.attempts() == 1 {
            println!(
                "  [email] job {} → {}: SMTP timeout, will retry",
                ctx.job_id(),
                self.to
            );
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "SMTP server timed out",
            ))?;
        }
        println!(
            "  [email] job {} (attempt {}) → {}: {:?} ({} bytes)",
            ctx.job_id(),
            ctx.attempts(),
            self.to,
            self.subject,
            self.body.len()
        );
        Ok(())
    }

    async fn failed(&mut self, ctx: &JobContext, error: &JobError) {
        println!(
            "  [email] job {} gave up on {}: {error}",
            ctx.job_id(),
            self.to
        );
    }
}
