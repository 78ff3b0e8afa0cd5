-- Promote due delayed jobs, then lease up to ARGV[1] jobs from the head of the ready list (FIFO).
-- A lease is the hash field inflight[id] = token \n attempts \n record, plus leases[id] = heartbeat.
-- KEYS: ready, delayed, inflight, leases, seq
-- ARGV: max, now
-- Returns a flat list: id, token, attempts, record for each job.
local ready_key, delayed_key, inflight_key, leases_key, seq_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local max, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', delayed_key, '-inf', now, 'LIMIT', 0, 1000)
for _, member in ipairs(due) do
  redis.call('RPUSH', ready_key, member)
  redis.call('ZREM', delayed_key, member)
end
local records = redis.call('LPOP', ready_key, max)
if not records then
  return {}
end
local out = {}
for _, record in ipairs(records) do
  local token = string.format('%d', redis.call('INCR', seq_key))
  -- The first "id"/"attempts" keys are the record's own: inside the payload string quotes are escaped.
  local id = string.match(record, '"id"%s*:%s*"([^"]*)"') or ('unnamed:' .. token)
  if redis.call('HEXISTS', inflight_key, id) == 1 then
    id = id .. '#' .. token -- a duplicate id (RouteMQ's are not unique): keep both leases apart
  end
  local attempts = (tonumber(string.match(record, '"attempts"%s*:%s*(%d+)')) or 0) + 1
  redis.call('HSET', inflight_key, id, token .. '\n' .. attempts .. '\n' .. record)
  redis.call('ZADD', leases_key, now, id)
  out[#out + 1] = id
  out[#out + 1] = token
  out[#out + 1] = tostring(attempts)
  out[#out + 1] = record
end
return out
