-- Settles a reservation to what the call really used.
-- KEYS: the window hashes the reservation was made in (windows already dropped are skipped).
-- ARGV[1]: used - reserved (may be negative); ARGV[2]: the model's field; ARGV[3]: tokens used.
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HINCRBY', KEYS[i], 'total', ARGV[1])
    redis.call('HINCRBY', KEYS[i], ARGV[2], ARGV[3])
  end
end
return 0
