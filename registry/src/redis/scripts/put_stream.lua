-- put_stream: insert or replace one stream record and its indexes, atomically.
-- ARGV: prefix, id, key_hash, playback_name, enabled ('1'|'0'), max_viewers ('' = unlimited),
--       takeover policy, generation, key scheme ('sha256' | 'hmac-sha256:<secret id>'),
--       SRT passphrase ('' = none: the field is removed).
-- Returns {'ok'}, {'conflict_key', owner_id} or {'conflict_playback', owner_id}.
local id, key_hash, playback = ARGV[2], ARGV[3], ARGV[4]
local owner = redis.call('GET', P .. 'key:' .. key_hash)
if owner and owner ~= id then return { 'conflict_key', owner } end
owner = redis.call('GET', P .. 'playback:' .. playback)
if owner and owner ~= id then return { 'conflict_playback', owner } end
local sk = P .. 'stream:' .. id
-- A changed key or playback name frees the old index entry (only if it is still ours).
local old = redis.call('HMGET', sk, 'key_hash', 'playback_name')
if old[1] and old[1] ~= key_hash and redis.call('GET', P .. 'key:' .. old[1]) == id then
  redis.call('DEL', P .. 'key:' .. old[1])
end
if old[2] and old[2] ~= playback and redis.call('GET', P .. 'playback:' .. old[2]) == id then
  redis.call('DEL', P .. 'playback:' .. old[2])
end
redis.call('HSET', sk, 'id', id, 'key_hash', key_hash, 'playback_name', playback, 'enabled', ARGV[5],
  'max_viewers', ARGV[6], 'takeover', ARGV[7], 'generation', ARGV[8], 'key_scheme', ARGV[9])
if ARGV[10] and ARGV[10] ~= '' then
  redis.call('HSET', sk, 'srt_passphrase', ARGV[10])
else
  redis.call('HDEL', sk, 'srt_passphrase')
end
redis.call('SET', P .. 'key:' .. key_hash, id)
redis.call('SET', P .. 'playback:' .. playback, id)
redis.call('SADD', P .. 'streams', id)
return { 'ok' }
