//! The driver conformance suite: the behaviour every driver must have, written once.
//!
//! Each case takes a fresh [`Harness`](crate::Harness) (its own queue and ledger key) and asserts on
//! what was stored and what ran.

mod batches;
mod cancels;
mod chains;
mod failed_store;
mod leases;
mod order;
mod pauses;
mod prefetch;
mod presence;
mod priorities;
mod retries;
mod rewrites;
mod schedules;
mod slots;
mod unique;

pub use batches::{
    a_failure_runs_catch_and_cancels_unless_allowed,
    batch_callbacks_run_once_under_racing_completions, batch_records_are_compare_and_set,
    cancelled_batches_skip_their_jobs,
};
pub use cancels::{
    cancelled_prefetched_and_unique_jobs, cancelling_a_running_job_stops_it,
    cancelling_removes_queued_and_delayed_jobs,
};
pub use chains::{
    broken_links_fail_the_chain_and_run_its_catch, chains_run_in_order_and_stop_at_a_failure,
    dispatch_at_waits_for_its_time,
};
pub use failed_store::{failed_store_is_trimmed_and_pruned, failed_store_operations};
pub use leases::{
    cooperative_job_stops_on_shutdown_without_losing_an_attempt, expired_lease_is_reaped_and_rerun,
    failed_hook_runs_when_the_last_attempt_died, graceful_shutdown_releases_unfinished_jobs,
    no_two_workers_hold_the_same_job, reaper_fails_jobs_out_of_tries,
    release_for_duration_max_keeps_the_job, release_keeps_attempts_and_refund_returns_one,
    stale_lease_cannot_settle_a_newer_reservation,
};
pub use order::{
    bulk_push_is_one_call_with_unique_ids, delayed_jobs_wait_for_their_time, fifo_order,
    max_jobs_limit_stops_the_worker, stats_count_every_state,
    weighted_queues_start_jobs_in_proportion,
};
pub use pauses::paused_queues_are_not_reserved;
pub use prefetch::{
    a_job_taken_back_unstarted_is_marked_stalled,
    a_stale_lease_cannot_touch_a_prefetched_reservation, a_worker_counts_each_prefetched_job_once,
    ack_and_start_settles_both_in_one_call, an_expired_prefetched_job_comes_back_unspent,
    prefetched_jobs_count_their_attempt_when_they_start,
    refunding_a_prefetched_job_changes_no_attempt,
};
pub use presence::workers_record_their_presence;
pub use priorities::{higher_priorities_start_first, retried_jobs_keep_their_priority};
pub use retries::{
    attempts_count_across_retries, failed_hook_runs_once_after_last_try,
    max_exceptions_ends_retries_early, panic_is_a_failed_attempt,
    permanent_error_skips_remaining_tries, postponed_jobs_keep_their_attempt,
    retry_delay_is_honoured, retry_until_ends_retries_at_the_deadline,
    throttled_jobs_wait_out_the_cool_down, timeout_fails_the_attempt_and_cancels,
    undecodable_payloads_go_to_the_failed_store,
};
pub use rewrites::{
    rewriting_beside_a_busy_worker_loses_nothing, rewriting_payloads_spares_leased_jobs,
};
pub use schedules::{missed_ticks_follow_the_policy, scheduled_ticks_fire_once_across_schedulers};
pub use slots::{
    racing_holders_never_exceed_the_limit, slots_count_holders_up_to_the_limit,
    slots_expire_unless_renewed, sweeping_removes_expired_holders,
};
pub use unique::{
    racing_producers_queue_one_unique_job, unique_jobs_are_queued_once_until_they_finish,
    unique_keys_expire_after_unique_for, unique_until_start_frees_the_key_when_the_job_starts,
};
