-- Deletes the worker presence records that last beat before ARGV[1] (ms); returns how many.
-- KEYS: beats (sorted set: id -> beat ms), docs (hash: id -> doc)
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
for _, id in ipairs(stale) do
  redis.call('HDEL', KEYS[2], id)
end
if #stale > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
end
return #stale
