-- Streamfleet registry: what every script needs, prepended to each at load time (scripts.rs).
-- ARGV[1] is always the key prefix including the schema version, e.g. "sf:v1:". Keys are built
-- here rather than passed in KEYS because most are only known after a lookup inside the script;
-- this is why Redis Cluster is not supported (docs/registry.md).

local P = ARGV[1]

local function num(n)
  return string.format('%d', n)
end

-- The Redis server's clock: every edge and the operator then agree on "now".
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Tells subscribers (the operator) that a stream's live state changed: channel P .. 'changes',
-- message the stream id, or 'v:' and the id when only a viewer count changed (the operator
-- coalesces those). pcall: a Redis user without PUBLISH rights (an ACL written before signals
-- existed) must still be admitted; the operator then only polls.
local function signal(id)
  redis.pcall('PUBLISH', P .. 'changes', id)
end

local function signal_viewers(id)
  redis.pcall('PUBLISH', P .. 'changes', 'v:' .. id)
end
