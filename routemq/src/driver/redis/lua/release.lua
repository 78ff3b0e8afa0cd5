-- Put a leased job back: to the ready list's tail, or the delayed set. Keeps its attempts, or gives
-- one back (refund). With a non-empty ARGV[8], only if the lease is not newer than that (the reaper).
-- KEYS: ready, delayed, inflight, leases, prio, leased
-- ARGV: id, token, delay seconds, now, refund (0/1), wake channel, queue, max heartbeat ('' = any)
local ready_key, delayed_key, inflight_key, leases_key, prio_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local leased_key = KEYS[6]
local id, token, delay, now = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local held, attempts, record = read_lease(inflight_key, leased_key, id)
if held ~= token then
  return 0
end
if ARGV[8] ~= '' then
  local beat = tonumber(redis.call('ZSCORE', leases_key, id))
  if beat and beat > tonumber(ARGV[8]) then
    return 0
  end
end
drop_lease(inflight_key, leased_key, leases_key, id)
local count = attempts
if ARGV[5] == '1' and count > 0 then
  count = count - 1
end
record = string.gsub(record, '("attempts"%s*:%s*)%d+', '%1' .. string.format('%d', count), 1)
local prefetched = string.sub(held, 1, 1) == 'p'
if ARGV[8] ~= '' and prefetched then
  -- The reaper taking back a prefetched lease (never started): count the stall in the record, so
  -- that the next worker starts the job only once its start is stored.
  local stalls = tonumber(string.match(record, '"stalls"%s*:%s*(%d+)'))
  if stalls then
    record = string.gsub(record, '("stalls"%s*:%s*)%d+', '%1' .. string.format('%d', stalls + 1), 1)
  else
    record = string.gsub(record, '}%s*$', ', "stalls": 1}', 1)
  end
elseif not prefetched and string.find(record, '"stalls"', 1, true) then
  -- The job started: its stalls are over.
  record = string.gsub(record, '("stalls"%s*:%s*)%d+', '%10', 1)
end
local score = prio_score(record)
if delay > 0 then
  redis.call('ZADD', delayed_key, now + delay, record)
elseif score then
  redis.call('ZADD', prio_key, score, record)
  redis.call('PUBLISH', ARGV[6], ARGV[7])
else
  redis.call('RPUSH', ready_key, record)
  redis.call('PUBLISH', ARGV[6], ARGV[7])
end
return 1
