-- Move one failed record back to its queue as a new job (new id, attempts 0), atomically.
-- KEYS: failed, ready, seq
-- ARGV: failed id, queue, created_at, wake channel
local failed_key, ready_key, seq_key = KEYS[1], KEYS[2], KEYS[3]
for _, record in ipairs(redis.call('LRANGE', failed_key, 0, -1)) do
  local ok, decoded = pcall(cjson.decode, record)
  if ok and type(decoded) == 'table' and decoded['id'] == ARGV[1] then
    redis.call('LREM', failed_key, 1, record)
    local id = ARGV[2] .. ':' .. string.format('%d', redis.call('INCR', seq_key))
    local job = '{"id": "' .. id .. '", "payload": ' .. cjson.encode(decoded['payload'] or '')
      .. ', "attempts": 0, "created_at": "' .. ARGV[3] .. '"}'
    redis.call('RPUSH', ready_key, job)
    redis.call('PUBLISH', ARGV[4], ARGV[2])
    return id
  end
end
return false
