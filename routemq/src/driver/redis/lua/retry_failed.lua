-- Move one failed record back to its queue as a new job (new id, attempts 0, the priority its
-- envelope carries), atomically.
-- KEYS: failed, ready, seq, prio
-- ARGV: failed id, queue, created_at, wake channel
-- The priority an envelope carries (routemq's own field; 0 when it has none).
local function priority_of(payload)
  if not string.find(payload, '"priority"', 1, true) then return 0 end
  local ok, envelope = pcall(cjson.decode, payload)
  if ok and type(envelope) == 'table' and type(envelope['priority']) == 'number' then
    local p = math.floor(envelope['priority'])
    if p > 0 and p <= 255 then return p end
  end
  return 0
end
-- A new job's record, to the prioritized set or the ready list's tail.
local function requeue(ready_key, prio_key, seq_key, queue, payload, created_at)
  local n = redis.call('INCR', seq_key)
  local id = queue .. ':' .. string.format('%d', n)
  local priority = priority_of(payload)
  local head = '{'
  if priority > 0 then
    head = '{"priority": ' .. string.format('%d', priority) .. ', '
  end
  local job = head .. '"id": "' .. id .. '", "payload": ' .. cjson.encode(payload)
    .. ', "attempts": 0, "created_at": "' .. created_at .. '"}'
  if priority > 0 then
    redis.call('ZADD', prio_key, (255 - priority) * 1099511627776 + n, job)
  else
    redis.call('RPUSH', ready_key, job)
  end
  return id
end
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
