-- set_viewers: one edge's viewer counts. ARGV: prefix, edge, ttl_ms, then id, count pairs.
-- Each field is "count:expiry_ms" (server clock); readers skip and delete expired fields. The
-- hash's own PEXPIRE is only ever pushed later, so it outlives every live field; a count of 0
-- removes the edge's field.
local edge, ttl = ARGV[2], tonumber(ARGV[3])
local expires = num(now_ms() + ttl)
-- Only a changed count is signalled: edges repeat unchanged reports every renew interval.
for i = 4, #ARGV - 1, 2 do
  local vk = P .. 'viewers:' .. ARGV[i]
  local before = redis.call('HGET', vk, edge)
  local was = before and string.match(before, '^(%d+):') or '0'
  if was ~= ARGV[i + 1] then signal_viewers(ARGV[i]) end
  if ARGV[i + 1] == '0' then
    redis.call('HDEL', vk, edge)
  else
    redis.call('HSET', vk, edge, ARGV[i + 1] .. ':' .. expires)
    if redis.call('PTTL', vk) < ttl then redis.call('PEXPIRE', vk, ttl) end
  end
end
return 'ok'
