-- Push jobs to one queue: ready ones to the list's tail, delayed ones to the sorted set.
-- KEYS: ready, delayed, seq
-- ARGV: queue, created_at, now, wake channel, then (payload JSON literal, delay seconds) per job
local ready_key, delayed_key, seq_key = KEYS[1], KEYS[2], KEYS[3]
local queue, created_at, now, channel = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local count = (#ARGV - 4) / 2
local last = redis.call('INCRBY', seq_key, count)
local ids = {}
local ready = 0
for i = 0, count - 1 do
  local id = queue .. ':' .. string.format('%d', last - count + 1 + i)
  local record = '{"id": "' .. id .. '", "payload": ' .. ARGV[5 + 2 * i]
    .. ', "attempts": 0, "created_at": "' .. created_at .. '"}'
  local delay = tonumber(ARGV[6 + 2 * i])
  if delay > 0 then
    redis.call('ZADD', delayed_key, now + delay, record)
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
