//! The Lua scripts, loaded once (redis-rs sends EVALSHA and falls back to EVAL).

use std::sync::LazyLock;

use redis::Script;

/// A script, after the files of the helper functions it calls (`retire.lua`: a queue's counter
/// expiry; `priority.lua`: records by priority; `lease.lua`: reading a lease).
macro_rules! script {
    ($name:ident, $file:literal $(, $prelude:literal)*) => {
        pub(super) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                $(include_str!(concat!("lua/", $prelude)),)*
                include_str!(concat!("lua/", $file))
            ))
        });
    };
}

script!(PUSH, "push.lua");
script!(RESERVE, "reserve.lua", "priority.lua");
script!(RELEASE, "release.lua", "priority.lua", "lease.lua");
script!(FAIL, "fail.lua", "lease.lua");
script!(EXTEND, "extend.lua", "lease.lua");
script!(ORPHAN, "orphan.lua", "lease.lua");
script!(ACK_START, "ack_start.lua", "retire.lua", "lease.lua");
script!(RETIRE_SEQ, "retire_seq.lua", "retire.lua");
script!(RETRY_FAILED, "retry_failed.lua", "priority.lua");
script!(RETRY_FAILED_BATCH, "retry_failed_batch.lua", "priority.lua");
script!(FORGET_FAILED, "forget_failed.lua");
script!(FLUSH_FAILED, "flush_failed.lua");
script!(SLOT_ACQUIRE, "slot_acquire.lua");
script!(SLOT_RENEW, "slot_renew.lua");
script!(SLOT_HOLDERS, "slot_holders.lua");
script!(BATCH_CREATE, "batch_create.lua");
script!(BATCH_WRITE, "batch_write.lua");
script!(BATCH_PRUNE, "batch_prune.lua");
script!(REWRITE, "rewrite.lua");
script!(WORKERS_PRUNE, "workers_prune.lua");
