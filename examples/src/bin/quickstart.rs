//! The quick start: dispatch a mix of the example jobs to the embedded SQLite queue
//! (`./routemq.sqlite`), then work the queues until they are empty and print a summary.
//!
//! Run it with `cargo run -p routemq-examples --bin quickstart`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use routemq::prelude::*;
use routemq_examples::jobs::{
    GenerateReportJob, Mailer, ProcessDataJob, QUEUES, SendEmailJob, SendNotificationJob,
};

#[tokio::main]
async fn main() -> ExitCode {
    routemq::config::load_dotenv();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let connection = queue().default_connection()?.to_owned();
    println!("routemq quick start on connection `{connection}`");
    println!("dispatching jobs...");

    for (user_id, message) in [
        (1, "your order shipped"),
        (2, "password changed"),
        (3, "new follower"),
    ] {
        SendNotificationJob {
            user_id,
            message: message.to_owned(),
        }
        .dispatch()
        .await?;
    }
    let emails = [
        ("ada@example.com", "Welcome"),
        ("grace@flaky.example", "Your invoice"),
        ("not-an-address", "Hello?"),
        ("linus@example.com", "Weekly digest"),
    ];
    for (to, subject) in emails {
        SendEmailJob {
            to: to.to_owned(),
            subject: subject.to_owned(),
            body: format!("Dear {to}, ..."),
        }
        .dispatch()
        .await?;
    }
    let readings = vec![
        ProcessDataJob {
            device_id: "sensor-1".into(),
            readings: vec![21.5, 22.0, 22.4],
        },
        ProcessDataJob {
            device_id: "sensor-2".into(),
            readings: vec![18.1, 18.9],
        },
        ProcessDataJob {
            device_id: "sensor-3".into(),
            readings: vec![30.2, 29.8, 31.0, 30.5],
        },
    ];
    let ids = queue().bulk(readings).await?;
    println!("  bulk-dispatched {} data jobs in one call", ids.len());
    GenerateReportJob {
        report_type: "daily".into(),
        user_id: 1,
        sections: 4,
    }
    .dispatch()
    .await?;
    GenerateReportJob {
        report_type: "weekly".into(),
        user_id: 2,
        sections: 6,
    }
    .dispatch_later(Duration::from_secs(2))
    .await?;
    for queue_name in QUEUES {
        println!(
            "  {queue_name}: {} waiting",
            queue().size(queue_name).await?
        );
    }

    println!("working the queues until they are empty...");
    let driver = queue().connection(&connection).await?;
    let options = WorkerOptions {
        queues: QUEUES.iter().map(|q| (*q).to_owned()).collect(),
        concurrency: 4,
        sleep: Duration::from_millis(200),
        stop_when_empty: true,
        ..WorkerOptions::from_settings(queue().settings()?)
    };
    let report = Worker::new(driver.clone(), connection.clone(), options)
        .data(Mailer::from_env()) // shared with every email job: ctx.data::<Mailer>()
        .run()
        .await?;

    println!();
    println!("done in {:.1}s", started.elapsed().as_secs_f64());
    println!("  processed: {}", report.processed);
    println!("  succeeded: {}", report.succeeded);
    println!("  retried:   {}", report.retried);
    println!("  failed:    {}", report.failed);
    let failed = driver.failed_list(Some("emails")).await?;
    if let Some(last) = failed.last() {
        println!(
            "the failed store has {} email job(s); the latest: #{} {}",
            failed.len(),
            last.id,
            last.exception
        );
        println!(
            "inspect it:  cargo run -p routemq-examples --bin worker -- queue-failed --format table"
        );
        println!(
            "retry it:    cargo run -p routemq-examples --bin worker -- queue-retry {}",
            last.id
        );
    }
    Ok(())
}
