-- The unexpired holders of slot KEYS[1] (a sorted set: holder -> expiry, microseconds since the
-- epoch by the server's clock), each followed by the microseconds it has left.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local found = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%.0f', now), '+inf', 'WITHSCORES')
local out = {}
for i = 1, #found, 2 do
  out[#out + 1] = found[i]
  out[#out + 1] = string.format('%.0f', tonumber(found[i + 1]) - now)
end
return out
