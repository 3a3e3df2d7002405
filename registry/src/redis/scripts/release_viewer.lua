-- release_viewer: a player left; its maxViewers slot is free at once. ARGV: prefix, stream id,
-- player. Returns 1 if the player held a slot.
return redis.call('ZREM', P .. 'viewer_slots:' .. ARGV[2], ARGV[3])
