-- release: compare-and-delete. ARGV: prefix, id, token. Returns 1 if our lease was freed, else 0
-- (never frees someone else's lease).
local lk = P .. 'lease:' .. ARGV[2]
if redis.call('GET', lk) ~= ARGV[3] then return 0 end
redis.call('DEL', lk, P .. 'holder:' .. ARGV[2])
signal(ARGV[2])
return 1
