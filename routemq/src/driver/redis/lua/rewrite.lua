-- Replace records in place, each only if it is still there: in a sorted set with its score kept,
-- or in a list at its position, looked for within ARGV[2] records of the window it was read
-- from (ARGV[3] to ARGV[4], counted from the tail: pushes and removals meanwhile shift it).
-- KEYS: the list or sorted set
-- ARGV: 'zset' or 'list', margin, window start, window stop, then (old record, new record) pairs
-- Returns how many records were replaced.
local key, kind = KEYS[1], ARGV[1]
local replaced = 0
if kind == 'zset' then
  for i = 5, #ARGV, 2 do
    local score = redis.call('ZSCORE', key, ARGV[i])
    if score then
      redis.call('ZREM', key, ARGV[i])
      redis.call('ZADD', key, score, ARGV[i + 1])
      replaced = replaced + 1
    end
  end
  return replaced
end
local margin, start, stop = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local len = redis.call('LLEN', key)
local first = math.max(len + start - margin, 0)
local last = math.min(len + stop + margin, len - 1)
if last < first then
  return 0
end
-- Each record's positions in the window, nearest the head first (a record can be there twice:
-- RouteMQ's ids need not be unique); each pair takes one.
local at = {}
for i, record in ipairs(redis.call('LRANGE', key, first, last)) do
  local positions = at[record]
  if not positions then
    positions = {}
    at[record] = positions
  end
  positions[#positions + 1] = first + i - 1
end
for i = 5, #ARGV, 2 do
  local positions = at[ARGV[i]]
  if positions and #positions > 0 then
    redis.call('LSET', key, table.remove(positions, 1), ARGV[i + 1])
    replaced = replaced + 1
  end
end
return replaced
