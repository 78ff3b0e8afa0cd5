-- Move a leased job to the failed list in RouteMQ's failed-record shape, id failed:{queue}:{n}.
-- With a non-empty ARGV[7], only if the lease is not newer than that (the reaper).
-- KEYS: inflight, leases, failed, seq, leased
-- ARGV: id, token, queue, connection (JSON literal), exception (JSON literal), failed_at, max heartbeat
local inflight_key, leases_key, failed_key, seq_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local leased_key = KEYS[5]
local id, token, queue = ARGV[1], ARGV[2], ARGV[3]
local held, _, record = read_lease(inflight_key, leased_key, id)
if held ~= token then
  return 0
end
if ARGV[7] ~= '' then
  local beat = tonumber(redis.call('ZSCORE', leases_key, id))
  if beat and beat > tonumber(ARGV[7]) then
    return 0
  end
end
local ok, decoded = pcall(cjson.decode, record)
local payload = (ok and type(decoded) == 'table' and type(decoded['payload']) == 'string') and decoded['payload'] or record
local n = string.format('%d', redis.call('INCR', seq_key))
redis.call('PERSIST', seq_key)
local failed = '{"id": "failed:' .. queue .. ':' .. n .. '", "connection": ' .. ARGV[4] .. ', "queue": "' .. queue
  .. '", "payload": ' .. cjson.encode(payload) .. ', "exception": ' .. ARGV[5] .. ', "failed_at": "' .. ARGV[6] .. '"}'
redis.call('RPUSH', failed_key, failed)
drop_lease(inflight_key, leased_key, leases_key, id)
return 1
