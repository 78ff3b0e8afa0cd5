-- Start prefetched leases still held: count their attempt, drop the token's 'p' and renew them.
-- KEYS: inflight, leases
-- ARGV: now, then (id, token) pairs
-- Returns, per pair, the started attempt number, or 0 when the lease is no longer held.
local inflight_key, leases_key, now = KEYS[1], KEYS[2], ARGV[1]
local out = {}
for i = 2, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local started = 0
  local value = redis.call('HGET', inflight_key, id)
  if value and string.sub(token, 1, 1) == 'p' then
    local held, attempts, record = string.match(value, '^([^\n]*)\n([^\n]*)\n(.*)$')
    if held == token then
      started = tonumber(attempts) + 1
      redis.call('HSET', inflight_key, id, string.sub(token, 2) .. '\n' .. started .. '\n' .. record)
      redis.call('ZADD', leases_key, 'XX', now, id)
    end
  end
  out[#out + 1] = started
end
return out
