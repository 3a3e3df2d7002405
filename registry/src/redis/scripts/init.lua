-- init: run once on every new connection, before any other command on it.
-- ARGV: prefix, schema version, run_id of the server ('' when INFO is not allowed).
-- Returns {'ok', epoch, rolled} or {'schema_mismatch', found}.
-- Checks the schema version (sets it on an empty Redis), creates the fencing epoch if missing, and
-- starts a new epoch plus a quarantine when the data set is now served by a different Redis
-- process than the one that last wrote it (failover to a replica, restore from a snapshot):
-- such a process may lack the latest grants, so neither fences nor leases can be trusted as-is.
local found = redis.call('GET', P .. 'schema')
if not found then
  redis.call('SET', P .. 'schema', ARGV[2])
elseif found ~= ARGV[2] then
  return { 'schema_mismatch', found }
end
local now = now_ms()
local rolled = '0'
local run_id = ARGV[3]
if run_id ~= '' then
  local seen = redis.call('GET', P .. 'run')
  if seen ~= run_id then
    local epoch = redis.call('GET', P .. 'epoch')
    if epoch then
      new_epoch(now, tonumber(epoch))
      rolled = '1'
    end
    redis.call('SET', P .. 'run', run_id)
  end
end
return { 'ok', num(fencing_state(now).epoch), rolled }
