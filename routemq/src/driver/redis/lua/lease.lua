-- A lease: inflight[id] = its token (prefixed 'p' while prefetched and not started), leased[id] =
-- the job's record as it was stored (never rewritten while leased), leases[id] = its heartbeat.
-- Leases taken before the token was kept apart hold 'token \n attempts \n record' in inflight[id]
-- and nothing in leased: every reader takes both forms.
local function holds(value, token)
  return value == token or string.sub(value, 1, #token + 1) == token .. '\n'
end
-- The lease's token, attempts (the record's, plus the one being run unless prefetched) and record;
-- nil when the job is not leased.
local function read_lease(inflight_key, leased_key, id)
  local value = redis.call('HGET', inflight_key, id)
  if not value then
    return nil
  end
  if string.find(value, '\n', 1, true) then
    local token, attempts, record = string.match(value, '^([^\n]*)\n([^\n]*)\n(.*)$')
    return token, tonumber(attempts) or 0, record
  end
  local record = redis.call('HGET', leased_key, id)
  if not record then
    return nil -- a token without its record (see orphan.lua)
  end
  local attempts = tonumber(string.match(record, '"attempts"%s*:%s*(%d+)')) or 0
  if string.sub(value, 1, 1) ~= 'p' then
    attempts = attempts + 1
  end
  return value, attempts, record
end
-- Forgets a lease.
local function drop_lease(inflight_key, leased_key, leases_key, id)
  redis.call('HDEL', inflight_key, id)
  redis.call('HDEL', leased_key, id)
  redis.call('ZREM', leases_key, id)
end
