-- Lockout, the same rule as `LockoutPolicy::after_failure`.
-- KEYS: lockout:{email}. ARGV: after_failures, base_seconds, max_seconds, now.
-- Returns {failures, lockouts, locked_until}.
local f = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0') + 1
local l = tonumber(redis.call('HGET', KEYS[1], 'lockouts') or '0')
local u = tonumber(redis.call('HGET', KEYS[1], 'locked_until') or '0')
local now = tonumber(ARGV[4])
if f >= tonumber(ARGV[1]) then
  local secs = math.min(tonumber(ARGV[2]) * (2 ^ math.min(l, 32)), tonumber(ARGV[3]))
  u = now + secs
  l = l + 1
  f = 0
end
redis.call('HSET', KEYS[1], 'failures', f, 'lockouts', l, 'locked_until', u)
local keep = u - now
if keep < 0 then keep = 0 end
redis.call('EXPIRE', KEYS[1], keep + tonumber(ARGV[3]))
return {f, l, u}
