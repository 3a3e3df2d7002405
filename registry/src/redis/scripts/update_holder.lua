-- update_holder: holder-side live state, fenced by the lease token.
-- ARGV: prefix, id, token, idle ('1' now idle, '0' media again, '' unchanged), kbps ('' unchanged),
-- media (the encoder summary as JSON, '' unchanged).
-- Returns 'ok', 'other' (someone else holds the lease) or 'missing'.
local id, token = ARGV[2], ARGV[3]
local lk, hk = P .. 'lease:' .. id, P .. 'holder:' .. id
local current = redis.call('GET', lk)
if current ~= token then
  if current then return 'other' end
  return 'missing'
end
-- A change of idleness or of the encoder's health verdict is signalled, figures alone are not
-- (they change on every report and reach status at the live-counter pace anyway).
local changed = false
if ARGV[4] == '1' then
  changed = redis.call('HEXISTS', hk, 'idle_since') == 0
elseif ARGV[4] == '0' then
  changed = redis.call('HEXISTS', hk, 'idle_since') == 1
end
if ARGV[6] ~= nil and ARGV[6] ~= '' then
  local old = redis.call('HGET', hk, 'media')
  local verdict = function(json)
    if not json then return '' end
    return (string.match(json, '"healthy":(%a+)') or '') .. '/' .. (string.match(json, '"reason":"(%a+)"') or '')
  end
  if verdict(old) ~= verdict(ARGV[6]) then changed = true end
end
if ARGV[4] == '1' then
  -- Keep the first report: idleness counts from when it began.
  redis.call('HSETNX', hk, 'idle_since', num(now_ms()))
elseif ARGV[4] == '0' then
  redis.call('HDEL', hk, 'idle_since')
end
if ARGV[5] ~= '' then redis.call('HSET', hk, 'kbps', ARGV[5]) end
if ARGV[6] ~= nil and ARGV[6] ~= '' then redis.call('HSET', hk, 'media', ARGV[6]) end
-- The holder hash must never outlive the lease.
local pttl = redis.call('PTTL', lk)
if pttl > 0 then redis.call('PEXPIRE', hk, pttl) end
if changed then signal(id) end
return 'ok'
