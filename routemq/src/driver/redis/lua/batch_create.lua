-- Stores a new batch. KEYS: record hash, creation index, finish index.
-- ARGV: id, version, created_at (ms), finished_at (ms, '' when unfinished), doc.
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'created_at', ARGV[3], 'doc', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'finished_at', ARGV[4])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
end
return 1
