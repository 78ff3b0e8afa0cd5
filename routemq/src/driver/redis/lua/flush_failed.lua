-- Delete a queue's failed list. Returns how many records it held.
-- KEYS: failed
local count = redis.call('LLEN', KEYS[1])
redis.call('DEL', KEYS[1])
return count
