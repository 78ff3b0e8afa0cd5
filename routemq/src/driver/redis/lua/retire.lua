-- A queue's counter (seq) numbers its jobs, leases and failed records. It is kept while the queue
-- holds anything (the scripts that count also make it persist) and expires eight days after the
-- queue last emptied, so that queues used once leave nothing behind, ids never repeat while the
-- queue holds one of them, and a cancellation signal (kept a week) never outlives the counter.
local function retire_seq(seq_key, ...)
  if redis.call('EXISTS', ...) == 0 then
    redis.call('EXPIRE', seq_key, 691200)
  end
end
