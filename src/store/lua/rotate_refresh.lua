-- Rotates a session's refresh token if the presented jti is the current one (RFC 9700 reuse detection).
-- KEYS: session:{sid}. ARGV: presented jti, next jti, now, idle seconds.
-- Returns 1 rotated, 0 reused (a rotated token again), -1 no such live session.
local cur = redis.call('HGET', KEYS[1], 'refresh_jti')
if not cur then return -1 end
if cur ~= ARGV[1] then return 0 end
local now = tonumber(ARGV[3])
local exp = tonumber(redis.call('HGET', KEYS[1], 'expires_at'))
if exp <= now then redis.call('DEL', KEYS[1]) return -1 end
redis.call('HSET', KEYS[1], 'refresh_jti', ARGV[2], 'last_activity', ARGV[3])
redis.call('EXPIRE', KEYS[1], math.max(1, math.min(now + tonumber(ARGV[4]), exp) - now))
return 1
