-- init: run once on every new connection, before any other command on it.
-- ARGV: prefix, schema version, run_id of the server ('' when INFO is not allowed), its
-- master_replid and master_replid2 ('' when unknown), '1' when this client admits grants and
-- renewals only once a replica acknowledged them (WAIT 1), else '0'.
-- Returns {'ok', epoch, rolled} (rolled: '0' same server, '1' new epoch and quarantine, '2' new
-- epoch without quarantine) or {'schema_mismatch', found}.
-- Checks the schema version (sets it on an empty Redis), creates the fencing epoch if missing, and
-- starts a new epoch when the data set is now served by a different Redis process than the one
-- that last wrote it (failover to a replica, restore from a snapshot): such a process may lack
-- the latest grants, so fences cannot be trusted as-is. It also starts a quarantine, unless the
-- new process is a replica promoted from the primary that last wrote the registry (its
-- master_replid2 is that primary's replication id) and every client of that primary waited for a
-- replica to hold each grant and renewal: then every lease a holder relies on is here.
local found = redis.call('GET', P .. 'schema')
if not found then
  redis.call('SET', P .. 'schema', ARGV[2])
elseif found ~= ARGV[2] then
  return { 'schema_mismatch', found }
end
local now = now_ms()
local rolled = '0'
local run_id, replid, replid2, acked = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if run_id ~= '' then
  local seen = redis.call('GET', P .. 'run')
  if seen ~= run_id then
    local epoch = redis.call('GET', P .. 'epoch')
    if epoch then
      local promoted = acked == '1' and replid2 ~= '' and redis.call('GET', P .. 'replid') == replid2
        and redis.call('GET', P .. 'acked') == '1'
      if promoted then
        roll_epoch(now, tonumber(epoch))
        rolled = '2'
      else
        new_epoch(now, tonumber(epoch))
        rolled = '1'
      end
    end
    redis.call('SET', P .. 'run', run_id)
    -- This server's tenure starts acked only if its first client is.
    redis.call('SET', P .. 'acked', acked)
  end
end
-- One client that does not wait for replicas taints the tenure: the next failover quarantines.
if acked ~= '1' and redis.call('GET', P .. 'acked') ~= '0' then redis.call('SET', P .. 'acked', '0') end
if replid ~= '' and redis.call('GET', P .. 'replid') ~= replid then redis.call('SET', P .. 'replid', replid) end
return { 'ok', num(fencing_state(now).epoch), rolled }
