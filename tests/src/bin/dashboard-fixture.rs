//! Dispatches the browser tests' jobs through the public API, to the connection the environment
//! names (as `test-worker` reads it): `dashboard-fixture QUEUE LEDGER JOBS FAILING SLEEP_MS`.
//! Every job sleeps `SLEEP_MS`; the last `FAILING` fail for good, and their data holds markup
//! that would run script if a page ever parsed it.

use routemq_tests::process_jobs::Ledgered;

/// Markup that sets `window.__xss` if it is ever parsed as HTML.
const MARKUP: &str = "<script>window.__xss=1</script><img src=x onerror=\"window.__xss=2\">";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [queue, ledger, jobs, failing, sleep_ms] = args.as_slice() else {
        return Err("usage: dashboard-fixture QUEUE LEDGER JOBS FAILING SLEEP_MS".into());
    };
    let (jobs, failing, sleep_ms): (u64, u64, u64) =
        (jobs.parse()?, failing.parse()?, sleep_ms.parse()?);
    let batch: Vec<Ledgered> = (1..=jobs)
        .map(|n| Ledgered {
            path: ledger.clone(),
            n,
            sleep_ms,
            fail: n > jobs - failing.min(jobs),
            note: MARKUP.to_owned(),
        })
        .collect();
    let ids = routemq::queue().bulk(batch).on_queue(queue.clone()).await?;
    println!("{}", ids.len());
    Ok(())
}
