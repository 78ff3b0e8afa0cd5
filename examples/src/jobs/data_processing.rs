//! Sensor data processing, with exponential backoff on failure.

use routemq::prelude::*;

/// Summarise a device's readings. No readings at all is a permanent failure.
#[derive(Debug, Clone)]
#[job(
    max_tries = 5,
    timeout = 120,
    retry_after = 2,
    backoff = "exponential",
    max_delay = 60,
    jitter = 0.2,
    queue = "data"
)]
pub struct ProcessDataJob {
    /// The device that sent them.
    pub device_id: String,
    /// The readings.
    pub readings: Vec<f64>,
}

impl Job for ProcessDataJob {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        if self.readings.is_empty() {
            return Err(JobError::permanent(format!(
                "device {} sent no readings",
                self.device_id
            )));
        }
        let count = self.readings.len() as f64;
        let mean = self.readings.iter().sum::<f64>() / count;
        let max = self.readings.iter().copied().fold(f64::MIN, f64::max);
        println!(
            "  [data] job {} device {}: {} readings, mean {mean:.2}, max {max:.2}",
            ctx.job_id(),
            self.device_id,
            self.readings.len()
        );
        Ok(())
    }
}
