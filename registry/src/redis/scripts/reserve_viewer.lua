-- reserve_viewer: a player's slot under maxViewers, taken atomically across every edge.
-- ARGV: prefix, stream id, player (edge/process-token/session), max, ttl_ms.
-- The stream's slots are a sorted set, member = player, score = expiry (server clock, ms):
-- expired members (an edge that died stopped renewing them) are dropped first, then the player
-- gets a slot if fewer than max remain. A player that already holds one has it refreshed. The
-- key's own PEXPIRE is only ever pushed later, so it outlives every live member.
local k = P .. 'viewer_slots:' .. ARGV[2]
local player, max, ttl = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', k, '-inf', num(now))
if not redis.call('ZSCORE', k, player) and redis.call('ZCARD', k) >= max then
  return 0
end
redis.call('ZADD', k, num(now + ttl), player)
if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
return 1
