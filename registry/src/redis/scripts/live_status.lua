-- live_status: current holder and unexpired per-edge viewer counts of one stream.
-- ARGV: prefix, id. Returns {holder fields or {}, {edge, count, edge, count, ...}}.
local id = ARGV[2]
local holder = {}
if redis.call('EXISTS', P .. 'lease:' .. id) == 1 then holder = holder_fields(id) end
local now = now_ms()
local vk = P .. 'viewers:' .. id
local fields = redis.call('HGETALL', vk)
local viewers = {}
for i = 1, #fields - 1, 2 do
  local count, expires = string.match(fields[i + 1], '^(%d+):(%d+)$')
  if count and tonumber(expires) > now then
    table.insert(viewers, fields[i])
    table.insert(viewers, count)
  else
    redis.call('HDEL', vk, fields[i])
  end
end
return { holder, viewers }
