-- Promote due delayed jobs, then lease up to ARGV[1] jobs: the prioritized set's first (highest
-- priority, FIFO among equals), then the head of the ready list (FIFO).
-- A lease (see lease.lua) is inflight[id] = token, leased[id] = record, leases[id] = heartbeat: the
-- record is stored once, and nothing reads or rewrites it again until the lease ends.
-- With ARGV[3] = '1' the attempt counts now; with '0' the lease is a prefetched one: its token
-- starts with 'p' and its attempt counts when start.lua starts it.
-- KEYS: ready, delayed, inflight, leases, seq, prio, leased
-- ARGV: max, now, count (1/0)
-- Returns a flat list: id, token, record for each job (the caller reads the attempts and the
-- count of prefetches taken back unstarted from the record).
local ready_key, delayed_key, inflight_key, leases_key, seq_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local prio_key, leased_key = KEYS[6], KEYS[7]
local max, now, count = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
-- At most 1,000 jobs per call: the batched HSET and ZADD below pass two values per job, and Lua's
-- unpack stops near 8,000 (a script that fails half-way keeps what it wrote).
if max > 1000 then
  max = 1000
end
local due = redis.call('ZRANGEBYSCORE', delayed_key, '-inf', now, 'LIMIT', 0, 1000)
if #due > 0 then
  local plain = {}
  for _, record in ipairs(due) do
    local score = prio_score(record)
    if score then
      redis.call('ZADD', prio_key, score, record)
    else
      plain[#plain + 1] = record
    end
  end
  if #plain > 0 then
    redis.call('RPUSH', ready_key, unpack(plain))
  end
  redis.call('ZREM', delayed_key, unpack(due))
end
local records = {}
local popped = redis.call('ZPOPMIN', prio_key, max)
for i = 1, #popped, 2 do
  records[#records + 1] = popped[i]
end
if #records < max then
  local plain = redis.call('LPOP', ready_key, max - #records)
  if plain then
    for _, record in ipairs(plain) do
      records[#records + 1] = record
    end
  end
end
if #records == 0 then
  return {}
end
-- One counter step for the whole batch: the tokens are last - #records + 1 .. last.
local last = redis.call('INCRBY', seq_key, #records)
redis.call('PERSIST', seq_key)
local out = {}
local scores = {}
local held = {}
for i, record in ipairs(records) do
  local token = string.format('%d', last - #records + i)
  if count == 0 then
    token = 'p' .. token
  end
  -- The first "id" key is the record's own (inside the payload string quotes are escaped); it
  -- comes first, or after "priority".
  local id = string.match(record, '"id"%s*:%s*"([^"]*)"') or ('unnamed:' .. token)
  if redis.call('HSETNX', inflight_key, id, token) == 0 then
    id = id .. '#' .. token -- a duplicate id (RouteMQ's are not unique): keep both leases apart
    redis.call('HSET', inflight_key, id, token)
  end
  held[#held + 1] = id
  held[#held + 1] = record
  scores[#scores + 1] = now
  scores[#scores + 1] = id
  out[#out + 1] = id
  out[#out + 1] = token
  out[#out + 1] = record
end
redis.call('HSET', leased_key, unpack(held))
redis.call('ZADD', leases_key, unpack(scores))
return out
