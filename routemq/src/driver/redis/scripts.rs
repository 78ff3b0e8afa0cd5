//! The Lua scripts, loaded once (redis-rs sends EVALSHA and falls back to EVAL).

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(super) static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(include_str!(concat!("lua/", $file))));
    };
    // A script that may empty a queue: `retire.lua`'s function comes first.
    ($name:ident, $file:literal, retire) => {
        pub(super) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/retire.lua"),
                include_str!(concat!("lua/", $file))
            ))
        });
    };
    // A script that moves records by priority: `priority.lua`'s functions come first.
    ($name:ident, $file:literal, priorities) => {
        pub(super) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/priority.lua"),
                include_str!(concat!("lua/", $file))
            ))
        });
    };
}

script!(PUSH, "push.lua");
script!(RESERVE, "reserve.lua", priorities);
script!(RELEASE, "release.lua", priorities);
script!(FAIL, "fail.lua");
script!(EXTEND, "extend.lua");
script!(ACK_START, "ack_start.lua", retire);
script!(RETIRE_SEQ, "retire_seq.lua", retire);
script!(RETRY_FAILED, "retry_failed.lua", priorities);
script!(RETRY_FAILED_BATCH, "retry_failed_batch.lua", priorities);
script!(FORGET_FAILED, "forget_failed.lua");
script!(FLUSH_FAILED, "flush_failed.lua");
script!(SLOT_ACQUIRE, "slot_acquire.lua");
script!(SLOT_RENEW, "slot_renew.lua");
script!(SLOT_HOLDERS, "slot_holders.lua");
script!(BATCH_CREATE, "batch_create.lua");
script!(BATCH_WRITE, "batch_write.lua");
script!(BATCH_PRUNE, "batch_prune.lua");
script!(REWRITE, "rewrite.lua");
