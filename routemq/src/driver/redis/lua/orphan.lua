-- Drops what is left of a lease that lost its job: a heartbeat whose in-flight entry is gone, or a
-- token whose record is gone. Only if the entry is still as the reaper read it (ARGV[2], '' when
-- there was none): a lease released and taken again since then is left alone.
-- KEYS: inflight, leased, leases
-- ARGV: id, the in-flight value read
local inflight_key, leased_key, leases_key, id = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local value = redis.call('HGET', inflight_key, id)
if (value or '') ~= ARGV[2] then
  return 0
end
if value and redis.call('HEXISTS', leased_key, id) == 1 then
  return 0
end
drop_lease(inflight_key, leased_key, leases_key, id)
return 1
