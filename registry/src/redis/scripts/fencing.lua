-- Fencing, quarantine and holder helpers, prepended (after prelude.lua) only to the scripts that
-- grant leases or report holders: Redis runs a script's whole text on every call, so each helper
-- defined here costs the small scripts (renew, release) time on every call if they carry it.

-- Grants per fencing epoch: fence = epoch_ms * 2^20 + counter, assembled in Rust (Lua numbers
-- are doubles and lose precision above 2^53).
local FENCE_SPAN = 1048576

-- Holder fields everyone may read, in the order the Rust side parses them. `protocol` is absent
-- from holders written before it existed (read as unknown).
local HOLDER_FIELDS = { 'edge', 'remote', 'relay', 'since', 'epoch', 'counter', 'idle_since', 'kbps', 'media', 'protocol' }

-- Starts a new fencing epoch that is later than any before it, so fences never repeat even when
-- the counter was lost: `boot` marks when this data set stopped knowing every lease.
local function new_epoch(now, previous)
  local epoch = now
  if previous and previous + 1 > epoch then epoch = previous + 1 end
  redis.call('SET', P .. 'epoch', num(epoch))
  redis.call('SET', P .. 'boot', num(now))
  redis.call('SET', P .. 'fence', '0')
  redis.call('DEL', P .. 'quarantine_lifted')
  return epoch
end

-- A new fencing epoch for a data set that still knows every lease (a verified promotion, see
-- init.lua): fences restart above every earlier one, but `boot` and the quarantine are untouched.
local function roll_epoch(now, previous)
  local epoch = math.max(now, previous + 1)
  redis.call('SET', P .. 'epoch', num(epoch))
  redis.call('SET', P .. 'fence', '0')
  return epoch
end

-- The fencing state in one read: {epoch, boot, lifted, fence}. `lifted` says the quarantine was
-- ended by hand; `fence` says the grant counter exists. Creates the epoch on a fresh (or
-- restarted-empty) Redis. One MGET instead of four calls keeps acquire close to a bare round trip.
local function fencing_state(now)
  local s = redis.call('MGET', P .. 'epoch', P .. 'boot', P .. 'quarantine_lifted', P .. 'fence')
  if not s[1] then
    return { epoch = new_epoch(now, nil), boot = now, lifted = false, fence = true }
  end
  return { epoch = tonumber(s[1]), boot = tonumber(s[2] or '0'), lifted = s[3] ~= false, fence = s[4] ~= false }
end

-- Milliseconds of quarantine left for a grant with this TTL: after a restart that lost leases,
-- holders may still be publishing for one TTL, so newcomers wait that long.
local function quarantine_left(state, ttl, now)
  if state.lifted then return 0 end
  local left = state.boot + ttl - now
  if left > 0 then return left end
  return 0
end

local function holder_fields(id)
  local h = redis.call('HMGET', P .. 'holder:' .. id, unpack(HOLDER_FIELDS))
  for i = 1, #HOLDER_FIELDS do
    if not h[i] then h[i] = '' end
  end
  return h
end

-- Reply for "someone else holds it": wait_ms < 0 means waiting will not help.
local function active_reply(id, wait_ms)
  local reply = { 'active', id, num(wait_ms) }
  for _, v in ipairs(holder_fields(id)) do table.insert(reply, v) end
  return reply
end

-- The stream id a key hash belongs to, or an error reply: {nil, reply}.
local function stream_for_key(key_hash)
  local id = redis.call('GET', P .. 'key:' .. key_hash)
  if not id then return nil, { 'not_found' } end
  local rec = redis.call('HMGET', P .. 'stream:' .. id, 'enabled', 'takeover', 'key_hash')
  if not rec[1] or rec[3] ~= key_hash then return nil, { 'not_found' } end
  if rec[1] ~= '1' then return nil, { 'disabled', id } end
  return id, rec[2]
end

-- Writes the lease (SET PX) and its holder hash with a fresh fence; returns epoch, counter.
-- state: from fencing_state. h: edge, remote, relay, since, kbps, taken_over_at, protocol
-- (strings, '' when absent), leased (true when the caller already wrote the lease key with this token and TTL).
local function grant(id, token, ttl, now, state, h)
  local epoch = state.epoch
  if not state.fence then
    -- The counter vanished while the epoch survived: only a new epoch keeps fences unique.
    epoch = new_epoch(now, epoch)
  end
  local counter = redis.call('INCR', P .. 'fence')
  if counter >= FENCE_SPAN then
    -- The counter would spill into the epoch bits: roll to a later epoch (not a restart, so
    -- `boot` and the quarantine are untouched).
    epoch = math.max(now, epoch + 1)
    redis.call('SET', P .. 'epoch', num(epoch))
    redis.call('SET', P .. 'fence', '1')
    counter = 1
  end
  local hk = P .. 'holder:' .. id
  if not h.leased then redis.call('SET', P .. 'lease:' .. id, token, 'PX', ttl) end
  redis.call('DEL', hk)
  redis.call('HSET', hk, 'token', token, 'epoch', num(epoch), 'counter', num(counter), 'edge', h.edge,
    'remote', h.remote, 'relay', h.relay, 'since', h.since)
  if h.kbps ~= '' then redis.call('HSET', hk, 'kbps', h.kbps) end
  if h.taken_over_at ~= '' then redis.call('HSET', hk, 'taken_over_at', h.taken_over_at) end
  if h.protocol ~= '' then redis.call('HSET', hk, 'protocol', h.protocol) end
  redis.call('PEXPIRE', hk, ttl)
  return epoch, counter
end
