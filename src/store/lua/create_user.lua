-- Creates a user unless the email is taken.
-- KEYS: {users}:email:<email>, {users}:user:<id>, {users}:all (one hash tag: one Cluster slot). ARGV: id, email, role, password_hash, created_at.
-- Returns 1, or 0 when the email or id is taken.
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 0 end
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'email', ARGV[2], 'role', ARGV[3], 'password_hash', ARGV[4], 'created_at', ARGV[5])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
