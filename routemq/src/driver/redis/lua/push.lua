-- Push jobs to one queue: ready ones to the list's tail (or, with a priority, to the prioritized
-- set), delayed ones to the sorted set.
-- KEYS: ready, delayed, seq, prio
-- ARGV: queue, created_at, now, wake channel, then (payload JSON literal, delay seconds, priority)
-- per job
local ready_key, delayed_key, seq_key, prio_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local queue, created_at, now, channel = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local count = (#ARGV - 4) / 3
local last = redis.call('INCRBY', seq_key, count)
redis.call('PERSIST', seq_key)
local ids = {}
local ready = 0
for i = 0, count - 1 do
  local n = last - count + 1 + i
  local id = queue .. ':' .. string.format('%d', n)
  local priority = tonumber(ARGV[7 + 3 * i])
  local head = '{'
  if priority > 0 then
    head = '{"priority": ' .. string.format('%d', priority) .. ', '
  end
  local record = head .. '"id": "' .. id .. '", "payload": ' .. ARGV[5 + 3 * i]
    .. ', "attempts": 0, "created_at": "' .. created_at .. '"}'
  local delay = tonumber(ARGV[6 + 3 * i])
  if delay > 0 then
    redis.call('ZADD', delayed_key, now + delay, record)
  elseif priority > 0 then
    redis.call('ZADD', prio_key, (255 - priority) * 1099511627776 + n, record)
    ready = ready + 1
  else
    redis.call('RPUSH', ready_key, record)
    ready = ready + 1
  end
  ids[i + 1] = id
end
if ready > 0 then
  redis.call('PUBLISH', channel, queue)
end
return ids
