-- Renew leases still held (the heartbeat). Returns how many were.
-- KEYS: inflight, leases
-- ARGV: now, then (id, token) pairs
local inflight_key, leases_key, now = KEYS[1], KEYS[2], ARGV[1]
local held = 0
for i = 2, #ARGV, 2 do
  local value = redis.call('HGET', inflight_key, ARGV[i])
  if value and holds(value, ARGV[i + 1]) then
    redis.call('ZADD', leases_key, 'XX', now, ARGV[i])
    held = held + 1
  end
end
return held
