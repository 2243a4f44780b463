-- Reserves tokens in every window of one user, all or none.
-- KEYS: one hash per window (field `total`: tokens used and reserved), all under one hash tag.
-- ARGV[1]: tokens to reserve; ARGV[1+i]: the limit of KEYS[i]; ARGV[1+#KEYS+i]: when KEYS[i]
-- may be dropped (unix ms).
-- Returns {0, 0} when reserved, or {i, used}: KEYS[i] would go over its limit.
local amount = tonumber(ARGV[1])
local n = #KEYS
for i = 1, n do
  local used = tonumber(redis.call('HGET', KEYS[i], 'total') or '0')
  if used + amount > tonumber(ARGV[1 + i]) then
    return {i, used}
  end
end
for i = 1, n do
  redis.call('HINCRBY', KEYS[i], 'total', amount)
  redis.call('PEXPIREAT', KEYS[i], ARGV[1 + n + i])
end
return {0, 0}
