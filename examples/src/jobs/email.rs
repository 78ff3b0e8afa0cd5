//! An email, with a flaky server and an invalid address to show retries and the failed store.

use routemq::prelude::*;

/// The application's mail settings, registered once on the worker (`.data(Mailer::from_env())`)
/// and shared by every email job through `ctx.data::<Mailer>()`. A real application would keep
/// its SMTP client here.
#[derive(Debug, Clone)]
pub struct Mailer {
    /// The sender address.
    pub from: String,
}

impl Mailer {
    /// `MAIL_FROM`, or `routemq@example.com`.
    pub fn from_env() -> Self {
        Self {
            from: std::env::var("MAIL_FROM").unwrap_or_else(|_| "routemq@example.com".to_owned()),
        }
    }
}

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
        let mailer = ctx.data::<Mailer>()?;
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
            "  [email] job {} (attempt {}) {} → {}: {:?} ({} bytes)",
            ctx.job_id(),
            ctx.attempts(),
            mailer.from,
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
