-- Move up to ARGV[4] failed records, oldest first, back to their queue as new jobs (new ids,
-- attempts 0, the priority their envelope carries), atomically per call. A record that does not
-- decode goes back to the tail of the failed list untouched, so nothing is lost; the caller stops
-- after the list's length at its start.
-- KEYS: failed, ready, seq, prio
-- ARGV: queue, created_at, wake channel, max
-- Returns {moved, examined}.
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
local moved, examined = 0, 0
for _ = 1, tonumber(ARGV[4]) do
  local record = redis.call('LPOP', failed_key)
  if not record then break end
  examined = examined + 1
  local ok, decoded = pcall(cjson.decode, record)
  if ok and type(decoded) == 'table' and type(decoded['payload']) == 'string' then
    requeue(ready_key, prio_key, seq_key, ARGV[1], decoded['payload'], ARGV[2])
    moved = moved + 1
  else
    redis.call('RPUSH', failed_key, record)
  end
end
if moved > 0 then redis.call('PUBLISH', ARGV[3], ARGV[1]) end
return {moved, examined}
