-- Deletes up to ARGV[5] finished batches older than ARGV[1] and, when ARGV[2] is set, unfinished
-- ones created before it (scanning ARGV[5] creation entries from offset ARGV[6]).
-- KEYS: creation index, finish index. ARGV[3], ARGV[4]: the record and outcomes key prefixes.
-- Returns {finished deleted, unfinished deleted, creation entries scanned}.
local function delete(id)
  redis.call('UNLINK', ARGV[3] .. id, ARGV[4] .. id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
local finished = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[5])
for _, id in ipairs(finished) do
  delete(id)
end
local unfinished, scanned = 0, 0
if ARGV[2] ~= '' then
  local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', ARGV[6], ARGV[5])
  scanned = #old
  for _, id in ipairs(old) do
    if not redis.call('ZSCORE', KEYS[2], id) then
      delete(id)
      unfinished = unfinished + 1
    end
  end
end
return {#finished, unfinished, scanned}
