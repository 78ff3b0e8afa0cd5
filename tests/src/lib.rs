//! routemq's cross-crate test support: the driver conformance suite, its jobs and its harness.
//!
//! Every driver runs the same suite: a test file calls [`conformance_suite!`] with a factory that
//! returns the driver (or `None` when its server is not configured, which skips the suite with a
//! clear message, or fails it under `ROUTEMQ_TEST_REQUIRE_SERVICES=1`).

pub mod app;
pub mod conformance;
pub mod databases;
pub mod harness;
pub mod hostile;
pub mod http;
pub mod interop;
pub mod jobs;
pub mod ledger;
pub mod limit_jobs;
pub mod outage;
pub mod pools;
pub mod process;
pub mod process_env;
pub mod process_jobs;
pub mod raw_store;
pub mod redis_cluster;
pub mod reliability;
pub mod services;
pub mod sqlite_files;

pub use harness::{Factory, Harness};

/// Generates the five tests of an end-to-end proof through worker processes, one per driver
/// (`on_sqlite`, `on_postgres`, `on_mysql`, `on_redis`, `on_redis_cluster`): each calls
/// `$prove(driver, connection, env)` with a fresh store of its own (a file, a database, a Redis
/// key prefix) named after `$name`, and `env` pointing a `test-worker` process at it.
#[macro_export]
macro_rules! on_every_driver {
    ($prove:ident, $name:literal) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn on_sqlite() {
            let (driver, env) = $crate::process_env::sqlite($name).await;
            $prove(driver, "sqlite", env).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn on_postgres() {
            use $crate::databases::{Server, database_env, with_fresh_database};
            with_fresh_database(
                Server::Postgres,
                concat!($name, "_pg"),
                |driver, url| async move {
                    $prove(driver, "postgres", database_env("postgres", url)).await;
                },
            )
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn on_mysql() {
            use $crate::databases::{Server, database_env, with_fresh_database};
            with_fresh_database(
                Server::Mysql,
                concat!($name, "_my"),
                |driver, url| async move {
                    $prove(driver, "mysql", database_env("mysql", url)).await;
                },
            )
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn on_redis() {
            $crate::process_env::with_redis(concat!("routemq-", $name), |driver, env| {
                $prove(driver, "redis", env)
            })
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn on_redis_cluster() {
            $crate::process_env::with_redis_cluster(concat!("routemq-", $name), |driver, env| {
                $prove(driver, "redis-cluster", env)
            })
            .await;
        }
    };
}

/// Generates one `#[tokio::test]` per conformance case for a driver factory.
///
/// ```ignore
/// routemq_tests::conformance_suite!(|| async { Some(Arc::new(MemoryDriver::new()) as Arc<dyn QueueDriver>) });
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@cases $factory;
            fifo_order, delayed_jobs_wait_for_their_time, bulk_push_is_one_call_with_unique_ids,
            attempts_count_across_retries, retry_delay_is_honoured, failed_hook_runs_once_after_last_try,
            permanent_error_skips_remaining_tries, timeout_fails_the_attempt_and_cancels, panic_is_a_failed_attempt,
            undecodable_payloads_go_to_the_failed_store, expired_lease_is_reaped_and_rerun,
            reaper_fails_jobs_out_of_tries, stale_lease_cannot_settle_a_newer_reservation,
            no_two_workers_hold_the_same_job, graceful_shutdown_releases_unfinished_jobs,
            cooperative_job_stops_on_shutdown_without_losing_an_attempt, stats_count_every_state,
            max_jobs_limit_stops_the_worker, failed_store_operations, release_keeps_attempts_and_refund_returns_one,
            failed_hook_runs_when_the_last_attempt_died, release_for_duration_max_keeps_the_job,
            prefetched_jobs_count_their_attempt_when_they_start, an_expired_prefetched_job_comes_back_unspent,
            refunding_a_prefetched_job_changes_no_attempt, a_worker_counts_each_prefetched_job_once,
            ack_and_start_settles_both_in_one_call, a_job_taken_back_unstarted_is_marked_stalled,
            a_stale_lease_cannot_touch_a_prefetched_reservation, postponed_jobs_keep_their_attempt,
            slots_count_holders_up_to_the_limit, slots_expire_unless_renewed,
            racing_holders_never_exceed_the_limit, unique_jobs_are_queued_once_until_they_finish,
            racing_producers_queue_one_unique_job, unique_until_start_frees_the_key_when_the_job_starts,
            unique_keys_expire_after_unique_for, paused_queues_are_not_reserved,
            throttled_jobs_wait_out_the_cool_down, max_exceptions_ends_retries_early,
            retry_until_ends_retries_at_the_deadline, sweeping_removes_expired_holders,
            chains_run_in_order_and_stop_at_a_failure, dispatch_at_waits_for_its_time,
            weighted_queues_start_jobs_in_proportion, broken_links_fail_the_chain_and_run_its_catch,
            cancelling_removes_queued_and_delayed_jobs, cancelling_a_running_job_stops_it,
            scheduled_ticks_fire_once_across_schedulers, missed_ticks_follow_the_policy,
            cancelled_prefetched_and_unique_jobs, higher_priorities_start_first,
            retried_jobs_keep_their_priority, failed_store_is_trimmed_and_pruned,
            batch_callbacks_run_once_under_racing_completions,
            a_failure_runs_catch_and_cancels_unless_allowed, cancelled_batches_skip_their_jobs,
            batch_records_are_compare_and_set, rewriting_payloads_spares_leased_jobs,
            rewriting_beside_a_busy_worker_loses_nothing, workers_record_their_presence
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some(harness) = $crate::Harness::new($factory, stringify!($case)).await {
                    $crate::conformance::$case(harness).await;
                }
            }
        )*
    };
}
