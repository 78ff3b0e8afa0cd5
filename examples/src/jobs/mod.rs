//! One module per example job.

mod data_processing;
pub mod email;
mod notification;
mod report;

pub use data_processing::ProcessDataJob;
pub use email::{Mailer, SendEmailJob};
pub use notification::SendNotificationJob;
pub use report::GenerateReportJob;

/// Every queue the example jobs use, highest priority first.
pub const QUEUES: [&str; 4] = ["default", "emails", "data", "reports"];
