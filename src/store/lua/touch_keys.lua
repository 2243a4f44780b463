-- Records the latest use of API keys (write-behind); a later time wins, an earlier one is ignored,
-- and a key revoked meanwhile gets no entry back.
-- KEYS: {credentials}:key-uses, {credentials}:api-keys (one hash tag: one Cluster slot). ARGV: key id, unix seconds, key id, unix seconds, ...
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then
    local current = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
    if tonumber(ARGV[i + 1]) > current then
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    end
  end
end
return 0
