-- Write-behind session activity: moves last_activity forward and extends the idle deadline.
-- KEYS: session:{sid}... ARGV: now, idle seconds, then one activity time per key.
-- (Called with one key at a time: each session is in its own Cluster slot.)
local now = tonumber(ARGV[1])
local idle = tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  local at = tonumber(ARGV[i + 2])
  local last = redis.call('HGET', key, 'last_activity')
  if last and at > tonumber(last) then
    local exp = tonumber(redis.call('HGET', key, 'expires_at'))
    redis.call('HSET', key, 'last_activity', at)
    redis.call('EXPIRE', key, math.max(1, math.min(at + idle, exp) - now))
  end
end
return 1
