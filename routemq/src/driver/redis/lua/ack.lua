-- Delete finished jobs whose lease (id + token) is still held.
-- KEYS: inflight, leases
-- ARGV: (id, token) pairs
local inflight_key, leases_key = KEYS[1], KEYS[2]
local ids = {}
for i = 1, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
end
local values = redis.call('HMGET', inflight_key, unpack(ids))
local done = {}
for i, value in ipairs(values) do
  local token = ARGV[2 * i]
  if value and string.sub(value, 1, #token + 1) == token .. '\n' then
    done[#done + 1] = ids[i]
  end
end
if #done > 0 then
  redis.call('HDEL', inflight_key, unpack(done))
  redis.call('ZREM', leases_key, unpack(done))
end
return #done
