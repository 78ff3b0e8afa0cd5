-- Move up to ARGV[4] failed records, oldest first, back to their queue as new jobs (new ids,
-- attempts 0, the priority their envelope carries), atomically per call. A record that does not
-- decode goes back to the tail of the failed list untouched, so nothing is lost; the caller stops
-- after the list's length at its start.
-- KEYS: failed, ready, seq, prio
-- ARGV: queue, created_at, wake channel, max
-- Returns {moved, examined}.
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
