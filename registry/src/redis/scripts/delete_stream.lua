-- delete_stream: remove a record, its indexes (if still ours), its lease, holder, viewers and
-- takeover cooldown. ARGV: prefix, id. Returns 1 if a record existed, else 0.
local id = ARGV[2]
local sk = P .. 'stream:' .. id
local old = redis.call('HMGET', sk, 'key_hash', 'playback_name')
if old[1] and redis.call('GET', P .. 'key:' .. old[1]) == id then redis.call('DEL', P .. 'key:' .. old[1]) end
if old[2] and redis.call('GET', P .. 'playback:' .. old[2]) == id then
  redis.call('DEL', P .. 'playback:' .. old[2])
end
redis.call('DEL', P .. 'lease:' .. id, P .. 'holder:' .. id, P .. 'viewers:' .. id, P .. 'takeover:' .. id)
redis.call('SREM', P .. 'streams', id)
return redis.call('DEL', sk)
