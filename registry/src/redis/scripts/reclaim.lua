-- reclaim: after a restart that lost the lease, give it back to the same holder, even during the
-- quarantine, if the stream is still free (or still ours), its key unchanged and it is enabled.
-- ARGV: prefix, key_hash, id, token, ttl_ms, edge, remote, relay, since_ms, kbps, protocol.
-- Returns {'ok', id, epoch, counter, since_ms, '0'}, {'not_found'}, {'disabled', id} or
-- {'active', id, -1, holder fields...}.
local key_hash, want, token, ttl = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local id, err = stream_for_key(key_hash)
if not id then return err end
if id ~= want then return { 'not_found' } end
local current = redis.call('GET', P .. 'lease:' .. id)
if current and current ~= token then return active_reply(id, -1) end
local now = now_ms()
local e, c = grant(id, token, ttl, now, fencing_state(now), {
  edge = ARGV[6], remote = ARGV[7], relay = ARGV[8], since = ARGV[9], kbps = ARGV[10], taken_over_at = '',
  protocol = ARGV[11] or '',
})
signal(id)
return { 'ok', id, num(e), num(c), ARGV[9], '0' }
