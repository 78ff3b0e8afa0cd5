-- Extends holder ARGV[1]'s unexpired slot of KEYS[1] to ARGV[2] microseconds from now.
-- Returns 1 when it held one, else 0.
local key, holder, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local expires = redis.call('ZSCORE', key, holder)
if not expires or tonumber(expires) <= now then
  return 0
end
redis.call('ZADD', key, now + ttl, holder)
local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', key, math.floor(tonumber(last[2]) / 1000) + 1)
return 1
