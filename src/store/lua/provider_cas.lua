-- Compare-and-set of a provider's JSON state on its `version`, then a notice to every instance.
-- KEYS: provider:{name}. ARGV: expected version, JSON, TTL ms, channel, name.
-- Returns 1 written, 0 on a conflict.
local cur = redis.call('GET', KEYS[1])
local v = 0
if cur then v = cjson.decode(cur)['version'] or 0 end
if v ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
