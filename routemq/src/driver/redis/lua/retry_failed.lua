-- Move one failed record back to its queue as a new job (new id, attempts 0, the priority its
-- envelope carries), atomically.
-- KEYS: failed, ready, seq, prio
-- ARGV: failed id, queue, created_at, wake channel
local failed_key, ready_key, seq_key, prio_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
for _, record in ipairs(redis.call('LRANGE', failed_key, 0, -1)) do
  local ok, decoded = pcall(cjson.decode, record)
  if ok and type(decoded) == 'table' and decoded['id'] == ARGV[1] then
    if type(decoded['payload']) ~= 'string' then
      return redis.error_reply('failed job ' .. ARGV[1] .. ' has no payload to retry')
    end
    redis.call('LREM', failed_key, 1, record)
    local id = requeue(ready_key, prio_key, seq_key, ARGV[2], decoded['payload'], ARGV[3])
    redis.call('PUBLISH', ARGV[4], ARGV[2])
    return id
  end
end
return false
