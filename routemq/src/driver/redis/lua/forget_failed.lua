-- Delete one failed record by id. Returns 1 if it existed.
-- KEYS: failed
-- ARGV: failed id
for _, record in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local ok, decoded = pcall(cjson.decode, record)
  if ok and type(decoded) == 'table' and decoded['id'] == ARGV[1] then
    return redis.call('LREM', KEYS[1], 1, record)
  end
end
return 0
