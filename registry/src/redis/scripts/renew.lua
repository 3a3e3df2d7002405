-- renew: compare-and-extend. ARGV: prefix, id, token, ttl_ms, epoch of the grant.
-- Returns 'renewed' (lease and holder extended by ttl), 'other' (someone else holds it),
-- 'restarted' (gone, and this data set began after the grant: the holder should reclaim) or
-- 'missing' (gone: revoked or expired).
local id, token, ttl = ARGV[2], ARGV[3], ARGV[4]
local lk = P .. 'lease:' .. id
local current = redis.call('GET', lk)
if current == token then
  redis.call('PEXPIRE', lk, ttl)
  redis.call('PEXPIRE', P .. 'holder:' .. id, ttl)
  return 'renewed'
end
if current then return 'other' end
local boot = redis.call('GET', P .. 'boot')
if not boot or tonumber(boot) > tonumber(ARGV[5]) then return 'restarted' end
return 'missing'
