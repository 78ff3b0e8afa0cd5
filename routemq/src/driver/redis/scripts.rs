//! The Lua scripts, loaded once (redis-rs sends EVALSHA and falls back to EVAL).

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(super) static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(include_str!(concat!("lua/", $file))));
    };
}

script!(PUSH, "push.lua");
script!(RESERVE, "reserve.lua");
script!(RELEASE, "release.lua");
script!(FAIL, "fail.lua");
script!(EXTEND, "extend.lua");
script!(ACK_START, "ack_start.lua");
script!(RETRY_FAILED, "retry_failed.lua");
script!(RETRY_FAILED_BATCH, "retry_failed_batch.lua");
script!(FORGET_FAILED, "forget_failed.lua");
script!(FLUSH_FAILED, "flush_failed.lua");
script!(SLOT_ACQUIRE, "slot_acquire.lua");
script!(SLOT_RENEW, "slot_renew.lua");
script!(SLOT_HOLDERS, "slot_holders.lua");
