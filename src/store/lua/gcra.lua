-- GCRA, the same arithmetic as `limits::gcra`.
-- KEYS: rl:{limit}:{subject}. ARGV: now_ms, interval_ms, window_ms, requests.
-- Returns {allowed, remaining, reset_seconds, retry_after_seconds}.
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local requests = tonumber(ARGV[4])
local tolerance = window - interval
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then
  return {0, 0, math.ceil((tat - now) / 1000), math.max(1, math.ceil((allow_at - now) / 1000))}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now + tolerance + 1)
local used = math.ceil((new_tat - now) / interval)
local remaining = requests - used
if remaining < 0 then remaining = 0 end
return {1, remaining, math.ceil((new_tat - now) / 1000), 0}
