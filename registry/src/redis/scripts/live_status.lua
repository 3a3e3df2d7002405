-- live_status: current holder and unexpired per-edge viewer counts of one stream.
-- ARGV: prefix, id. Returns {holder fields or {}, {edge, count, edge, count, ...}, {lease ms left} or {}}.
local id = ARGV[2]
local holder = {}
local left = {}
local pttl = redis.call('PTTL', P .. 'lease:' .. id)
if pttl ~= -2 then
  holder = holder_fields(id)
  if pttl >= 0 then left = { tostring(pttl) } end
end
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
return { holder, viewers, left }
