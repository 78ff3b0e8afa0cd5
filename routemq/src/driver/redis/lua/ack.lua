-- Delete finished jobs whose lease (id + token) is still held.
-- KEYS: inflight, leases
-- ARGV: (id, token) pairs
local inflight_key, leases_key = KEYS[1], KEYS[2]
local done = 0
for i = 1, #ARGV, 2 do
  local value = redis.call('HGET', inflight_key, ARGV[i])
  if value and string.sub(value, 1, #ARGV[i + 1] + 1) == ARGV[i + 1] .. '\n' then
    redis.call('HDEL', inflight_key, ARGV[i])
    redis.call('ZREM', leases_key, ARGV[i])
    done = done + 1
  end
end
return done
