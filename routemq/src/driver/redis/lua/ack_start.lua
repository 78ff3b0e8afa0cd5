-- Delete finished jobs whose lease (id + token) is still held, then start prefetched leases still
-- held: drop the token's 'p' (the attempt counts from now) and renew them. A lease taken before
-- tokens were kept apart (see lease.lua) is rewritten whole, its attempts counted in it.
-- KEYS: inflight, leases, leased, then for retire.lua: seq, ready, delayed, prio, failed
-- ARGV: now, the number of finished jobs, their (id, token) pairs, then the (id, token) pairs to start
-- Returns, per lease to start, 1 when it is started (by this call, or by an earlier try of this
-- same call), 0 when it is no longer held.
local inflight_key, leases_key, leased_key, now = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local starts_at = 3 + 2 * tonumber(ARGV[2])
local ids = {}
for i = 3, starts_at - 1, 2 do
  ids[#ids + 1] = ARGV[i]
end
local done = {}
if #ids > 0 then
  local values = redis.call('HMGET', inflight_key, unpack(ids))
  for i, value in ipairs(values) do
    if value and holds(value, ARGV[2 + 2 * i]) then
      done[#done + 1] = ids[i]
    end
  end
end
if #done > 0 then
  redis.call('HDEL', inflight_key, unpack(done))
  redis.call('HDEL', leased_key, unpack(done))
  redis.call('ZREM', leases_key, unpack(done))
  if redis.call('HLEN', inflight_key) == 0 then
    retire_seq(KEYS[4], KEYS[5], KEYS[6], KEYS[7], inflight_key, leases_key, KEYS[8])
  end
end
local out = {}
for i = starts_at, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local bare = string.sub(token, 2)
  local started = 0
  local value = redis.call('HGET', inflight_key, id)
  if value and string.sub(token, 1, 1) == 'p' then
    if holds(value, bare) then
      started = 1 -- started by an earlier try of this same call
    elseif value == token then
      redis.call('HSET', inflight_key, id, bare)
      redis.call('ZADD', leases_key, 'XX', now, id)
      started = 1
    elseif holds(value, token) then
      local _, attempts, record = string.match(value, '^([^\n]*)\n([^\n]*)\n(.*)$')
      if string.find(record, '"stalls"', 1, true) then
        record = string.gsub(record, '("stalls"%s*:%s*)%d+', '%10', 1)
      end
      redis.call('HSET', inflight_key, id, bare .. '\n' .. (tonumber(attempts) + 1) .. '\n' .. record)
      redis.call('ZADD', leases_key, 'XX', now, id)
      started = 1
    end
  end
  out[#out + 1] = started
end
return out
