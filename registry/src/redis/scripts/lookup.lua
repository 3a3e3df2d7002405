-- lookup: one record through an index, in one round trip and one consistent read.
-- ARGV: prefix, index ('key' | 'playback'), value. Returns the record hash as a flat
-- field/value list, or an empty list when the index has no entry.
local id = redis.call('GET', P .. ARGV[2] .. ':' .. ARGV[3])
if not id then return {} end
return redis.call('HGETALL', P .. 'stream:' .. id)
