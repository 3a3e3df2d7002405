-- revoke: drop whoever holds the lease (the holder learns it at its next renew).
-- ARGV: prefix, id. Returns 1 if a lease existed, else 0.
local n = redis.call('DEL', P .. 'lease:' .. ARGV[2])
redis.call('DEL', P .. 'holder:' .. ARGV[2])
if n > 0 then signal(ARGV[2]) end
return n
