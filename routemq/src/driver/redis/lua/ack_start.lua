-- Delete finished jobs whose lease (id + token) is still held, then start prefetched leases still
-- held: count their attempt, drop the token's 'p', reset the record's stall count and renew them.
-- KEYS: inflight, leases, then for retire.lua: seq, ready, delayed, prio, failed
-- ARGV: now, the number of finished jobs, their (id, token) pairs, then the (id, token) pairs to start
-- Returns, per lease to start, the started attempt number, or 0 when the lease is no longer held.
-- Starting a lease that this call already started (a retry) answers the same.
local inflight_key, leases_key, now = KEYS[1], KEYS[2], ARGV[1]
local starts_at = 3 + 2 * tonumber(ARGV[2])
local ids = {}
for i = 3, starts_at - 1, 2 do
  ids[#ids + 1] = ARGV[i]
end
local done = {}
if #ids > 0 then
  local values = redis.call('HMGET', inflight_key, unpack(ids))
  for i, value in ipairs(values) do
    local token = ARGV[2 + 2 * i]
    if value and string.sub(value, 1, #token + 1) == token .. '\n' then
      done[#done + 1] = ids[i]
    end
  end
end
if #done > 0 then
  redis.call('HDEL', inflight_key, unpack(done))
  redis.call('ZREM', leases_key, unpack(done))
  if redis.call('HLEN', inflight_key) == 0 then
    retire_seq(KEYS[3], KEYS[4], KEYS[5], KEYS[6], inflight_key, leases_key, KEYS[7])
  end
end
local out = {}
for i = starts_at, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local started = 0
  local value = redis.call('HGET', inflight_key, id)
  if value and string.sub(token, 1, 1) == 'p' then
    local held, attempts, record = string.match(value, '^([^\n]*)\n([^\n]*)\n(.*)$')
    if held == string.sub(token, 2) then
      started = tonumber(attempts) -- started by an earlier try of this same call
    elseif held == token then
      started = tonumber(attempts) + 1
      if string.find(record, '"stalls"', 1, true) then
        record = string.gsub(record, '("stalls"%s*:%s*)%d+', '%10', 1)
      end
      redis.call('HSET', inflight_key, id, string.sub(token, 2) .. '\n' .. started .. '\n' .. record)
      redis.call('ZADD', leases_key, 'XX', now, id)
    end
  end
  out[#out + 1] = started
end
return out
