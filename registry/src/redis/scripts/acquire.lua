-- acquire: admit a publisher, atomically with every check it depends on.
-- ARGV: prefix, key_hash, token, ttl_ms, idle_threshold_ms, takeover_cooldown_ms, edge,
--       remote_addr, relay_addr, protocol ('' when absent).
-- Returns one of
--   {'ok', id, epoch, counter, since_ms, took_over ('1'|'0')}
--   {'not_found'} | {'disabled', id} | {'quarantined', retry_in_ms}
--   {'active', id, retry_in_ms (-1: never), holder fields...}
-- The takeover rule is takeover::decide in Rust, restated here: Reject never replaces; Replace
-- waits only for the cooldown; ReplaceIdle also waits until the holder has reported idle for the
-- threshold. Cooldown left = PTTL of the takeover key, which outlives the lease that set it.
local key_hash, token = ARGV[2], ARGV[3]
local ttl, idle_threshold, cooldown = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local id, policy = stream_for_key(key_hash)
if not id then return policy end
local now = now_ms()
local state = fencing_state(now)
local q = quarantine_left(state, ttl, now)
local lk = P .. 'lease:' .. id
-- Already mine: the same admission asking again (the reply to its first ask was lost or came
-- too late for it) is granted the lease its token holds, as it stands, with the TTL extended.
if redis.call('GET', lk) == token then
  local hk = P .. 'holder:' .. id
  local h = redis.call('HMGET', hk, 'epoch', 'counter', 'since', 'taken_over_at')
  if h[1] and h[2] and h[3] then
    redis.call('PEXPIRE', lk, ttl)
    redis.call('PEXPIRE', hk, ttl)
    return { 'ok', id, h[1], h[2], h[3], h[4] and '1' or '0' }
  end
end
-- Outside the quarantine a free stream is checked and taken by the same SET NX: one call fewer
-- on the common path than EXISTS then SET.
local leased = q == 0 and redis.call('SET', lk, token, 'NX', 'PX', ttl) ~= false
local took_over = false
if not leased and (q == 0 or redis.call('EXISTS', lk) == 1) then
  local wait
  if policy == 'Replace' then
    wait = 0
  elseif policy == 'ReplaceIdle' then
    local idle_since = redis.call('HGET', P .. 'holder:' .. id, 'idle_since')
    if idle_since then
      wait = math.max(0, idle_threshold - (now - tonumber(idle_since)))
    else
      wait = idle_threshold
    end
  else
    -- Reject, or a policy this version does not know: never replace.
    return active_reply(id, -1)
  end
  local cooldown_left = redis.call('PTTL', P .. 'takeover:' .. id)
  if cooldown_left > wait then wait = cooldown_left end
  if wait > 0 then return active_reply(id, wait) end
  took_over = true
end
if q > 0 then return { 'quarantined', num(q) } end
local taken_over_at = ''
if took_over then
  taken_over_at = num(now)
  if cooldown > 0 then redis.call('SET', P .. 'takeover:' .. id, taken_over_at, 'PX', cooldown) end
end
local e, c = grant(id, token, ttl, now, state, {
  edge = ARGV[7], remote = ARGV[8], relay = ARGV[9], since = num(now), kbps = '', taken_over_at = taken_over_at,
  protocol = ARGV[10] or '', leased = leased,
})
signal(id)
return { 'ok', id, num(e), num(c), num(now), took_over and '1' or '0' }
