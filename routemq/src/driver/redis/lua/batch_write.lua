-- A batch's compare-and-set: applied only at the version the writer read.
-- KEYS: record hash, outcomes hash, finish index.
-- ARGV: id, version read, doc, finished_at (ms, '' when unfinished), job id ('' for none), outcome.
local version = redis.call('HGET', KEYS[1], 'version')
if not version or version ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'version', tostring(tonumber(ARGV[2]) + 1), 'doc', ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'finished_at', ARGV[4])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
else
  redis.call('HDEL', KEYS[1], 'finished_at')
  redis.call('ZREM', KEYS[3], ARGV[1])
end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[5], ARGV[6])
end
return 1
