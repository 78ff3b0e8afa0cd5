-- A queue's counter (seq) numbers its jobs, leases and failed records. It is kept while the queue
-- holds anything (the scripts that count also make it persist) and expires a week after the queue
-- last emptied, so that queues used once leave nothing behind and ids never repeat while one of
-- them is stored.
local function retire_seq(seq_key, ...)
  if redis.call('EXISTS', ...) == 0 then
    redis.call('EXPIRE', seq_key, 604800)
  end
end
