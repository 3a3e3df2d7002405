-- renew_viewers: one edge keeps its players' maxViewers slots alive. ARGV: prefix, ttl_ms, then
-- stream id, player pairs. Only existing members are extended (ZADD XX): a slot already released
-- or expired is never brought back, so a renew racing a release cannot leave a ghost slot.
local ttl = tonumber(ARGV[2])
local expires = num(now_ms() + ttl)
for i = 3, #ARGV - 1, 2 do
  local k = P .. 'viewer_slots:' .. ARGV[i]
  redis.call('ZADD', k, 'XX', expires, ARGV[i + 1])
  if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
end
return 'ok'
