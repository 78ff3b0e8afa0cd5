-- Takes one of ARGV[2] slots of KEYS[1] (a sorted set: holder -> expiry, microseconds since the
-- epoch by the server's clock) for holder ARGV[1], until ARGV[3] microseconds from now; a holder
-- that holds one keeps it, renewed. ARGV[3] = 0 only asks whether one is free.
-- Returns {1, 0} when taken, or {0, microseconds until the soonest holder expires}.
local key, holder = KEYS[1], ARGV[1]
local limit, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
local mine = redis.call('ZSCORE', key, holder)
if not mine and redis.call('ZCARD', key) >= limit then
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] == nil then
    return {0, 0}
  end
  return {0, tonumber(first[2]) - now}
end
if ttl > 0 then
  redis.call('ZADD', key, now + ttl, holder)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', key, math.floor(tonumber(last[2]) / 1000) + 1)
end
return {1, 0}
