-- Revokes sessions: records them in the revoked set until ARGV[1], prunes lapsed revocations
-- and tells every instance. (The sessions themselves are deleted after, by the caller: each is
-- in its own Cluster slot.)
-- KEYS: revoked. ARGV: until, now, channel, then the session ids.
-- Returns how many were revoked.
local untl = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
for i = 4, #ARGV do
  redis.call('ZADD', KEYS[1], untl, ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then redis.call('EXPIRE', KEYS[1], math.max(1, math.ceil(tonumber(last[2]) - now))) end
redis.call('PUBLISH', ARGV[3], ARGV[1] .. ' ' .. table.concat(ARGV, ' ', 4))
return #ARGV - 3
