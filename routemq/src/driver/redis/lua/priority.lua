-- Shared by the scripts that move records between the ready list and the prioritized set
-- (prepended to each of them when it is loaded).
-- A prioritized record starts with its priority: {"priority": P, "id": "queue:N", ...}. Its
-- score in the prioritized set is (255 - P) * 2^40 + N: higher priorities first, FIFO among equals.
local function prio_score(record)
  local p, n = string.match(record, '^{"priority": (%d+), "id": "[^"]*:(%d+)"')
  if not p then return nil end
  return (255 - tonumber(p)) * 1099511627776 + tonumber(n)
end
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
  redis.call('PERSIST', seq_key)
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
