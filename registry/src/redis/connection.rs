//! The Redis backend's connection: one multiplexed connection, (re)established on demand, with
//! every call bounded in time, and checked before first use.
//!
//! Why not `redis::aio::ConnectionManager`: it keeps a connection after a response timeout (a
//! timeout is not "unrecoverable" to it), so behind a black-holed network or a dead Redis host it
//! would wait for TCP to give up (minutes); and it reconnects silently, with no hook to re-run
//! the checks below on the new server. Here any timeout or connection-level error drops the
//! connection and the next call dials again, and every new connection runs `init.lua` (schema
//! version, fencing epoch, failover detection) and checks `maxmemory-policy` before it serves a
//! single command.

use std::{
    future::Future,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::{AsyncConnectionConfig, ErrorKind, RedisError, Script, ServerErrorKind, aio::MultiplexedConnection};

use super::{target::Target, wire};
use crate::error::{RegistryError, Result, Unavailable};

/// Written to `<prefix>:v1:schema`; bump together with the `v1` in every key when the layout
/// changes incompatibly.
pub(super) const SCHEMA_VERSION: &str = "1";

/// What Redis reported for `maxmemory-policy` (anything but `noeviction` can evict a lease key,
/// which would admit a second publisher).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvictionPolicy {
    /// No connection has succeeded yet.
    NotChecked,
    /// The value of `CONFIG GET maxmemory-policy`.
    Policy(String),
    /// `CONFIG` is disabled or refused (managed Redis services often rename it); the reason.
    Unreadable(String),
}

impl EvictionPolicy {
    /// True only when Redis confirmed `noeviction`.
    pub fn is_safe(&self) -> bool {
        matches!(self, EvictionPolicy::Policy(p) if p == "noeviction")
    }
}

/// A connection attempt that failed; `fatal` when retrying cannot help (wrong password, schema
/// mismatch), so `connect` reports it instead of starting in the unavailable state.
pub(super) struct ConnectFailure {
    pub error: RegistryError,
    pub fatal: bool,
}

impl ConnectFailure {
    fn transient(msg: String) -> Self {
        ConnectFailure { error: RegistryError::Unavailable(msg.into()), fatal: false }
    }

    fn from_redis(context: &str, e: RedisError) -> Self {
        let fatal = e.kind() == ErrorKind::AuthenticationFailed || matches!(e.code(), Some("WRONGPASS" | "NOAUTH"));
        let msg =
            if fatal { format!("{context}: Redis refused the credentials: {e}") } else { format!("{context}: {e}") };
        ConnectFailure { error: RegistryError::Unavailable(Unavailable::caused_by(msg, e)), fatal }
    }
}

#[derive(Clone)]
struct Active {
    id: u64,
    conn: MultiplexedConnection,
}

pub(super) struct Link {
    target: std::sync::Arc<Target>,
    config: AsyncConnectionConfig,
    command_timeout: Duration,
    connect_timeout: Duration,
    /// `<key_prefix>:v1:`
    prefix: String,
    init: Script,
    current: Mutex<Option<Active>>,
    /// One dialler at a time; the others wait for its connection.
    connecting: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
    eviction: Mutex<EvictionPolicy>,
    /// This client admits grants and renewals only once a replica acknowledged them (Sentinel
    /// URL with `replica_ack_ms` > 0); told to init.lua, which may then skip the quarantine.
    replica_acked: bool,
}

impl Link {
    /// How connections are made: the change subscriber dials its own with it.
    pub fn target(&self) -> std::sync::Arc<Target> {
        self.target.clone()
    }

    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    pub fn new(
        target: Target,
        prefix: String,
        command_timeout: Duration,
        connect_timeout: Duration,
        replica_acked: bool,
    ) -> Self {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(command_timeout));
        Link {
            target: std::sync::Arc::new(target),
            config,
            command_timeout,
            connect_timeout,
            prefix,
            init: super::scripts::Scripts::init_script(),
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            next_id: AtomicU64::new(1),
            eviction: Mutex::new(EvictionPolicy::NotChecked),
            replica_acked,
        }
    }

    pub fn eviction_policy(&self) -> EvictionPolicy {
        lock(&self.eviction).clone()
    }

    /// Establishes the connection now (used by `connect`, which must tell a fatal
    /// misconfiguration from a Redis that is merely not up yet).
    pub async fn connect_now(&self) -> std::result::Result<(), ConnectFailure> {
        let budget = self.connect_timeout + self.command_timeout;
        match tokio::time::timeout(budget, self.get()).await {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(ConnectFailure::transient(format!("Redis not reachable within {} ms", budget.as_millis()))),
        }
    }

    /// Runs one request on the current connection (dialling first if there is none). The whole
    /// call is bounded by connect + command timeout, the request itself by the command timeout
    /// (and by the connection's own response timeout); a timeout or a connection-level error
    /// drops the connection so the next call starts from a fresh one.
    ///
    /// A connection that was already open and turns out dead (its server was killed or failed
    /// over: broken pipe, reset, closed) is replaced at once and the request sent again on the
    /// new one, within the same budget. Every registry request is idempotent (lease scripts
    /// recognise their own token, "already mine"), so a request that did reach the old server
    /// does no harm when repeated; without this, the first renew after a failover would fail
    /// and the holder would wait a whole retry interval closer to its deadline.
    pub async fn run<T, F, Fut>(&self, what: &str, request: F) -> Result<T>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let budget = self.connect_timeout + self.command_timeout;
        let attempt = async {
            let (active, dialled) = self.get().await.map_err(|f| f.error)?;
            match self.send(what, &active, &request).await {
                Err(Failed::Dead(_)) if !dialled => {
                    let (active, _) = self.get().await.map_err(|f| f.error)?;
                    self.send(what, &active, &request).await.map_err(Failed::into_error)
                }
                r => r.map_err(Failed::into_error),
            }
        };
        match tokio::time::timeout(budget, attempt).await {
            Ok(r) => r,
            Err(_) => Err(RegistryError::Unavailable(
                format!("{what}: Redis not reachable within {} ms", budget.as_millis()).into(),
            )),
        }
    }

    /// One request on `active`, bounded by the command timeout; drops the connection when it
    /// cannot be trusted any more.
    async fn send<T, F, Fut>(&self, what: &str, active: &Active, request: &F) -> std::result::Result<T, Failed>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.command_timeout, request(active.conn.clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let dead = is_dead_connection(&e);
                if dead || needs_new_connection(&e) {
                    self.drop_connection(active.id);
                }
                let error = RegistryError::Unavailable(Unavailable::caused_by(format!("{what}: {e}"), e));
                Err(if dead { Failed::Dead(error) } else { Failed::Other(error) })
            }
            Err(_) => {
                self.drop_connection(active.id);
                Err(Failed::Other(RegistryError::Unavailable(
                    format!("{what}: Redis did not answer within {} ms", self.command_timeout.as_millis()).into(),
                )))
            }
        }
    }

    fn current(&self) -> Option<Active> {
        lock(&self.current).clone()
    }

    /// Forgets connection `id` unless a newer one already replaced it.
    fn drop_connection(&self, id: u64) {
        let mut current = lock(&self.current);
        if current.as_ref().is_some_and(|a| a.id == id) {
            *current = None;
            tracing::debug!("dropped the Redis connection; the next call reconnects");
        }
    }

    /// The current connection, dialling one if there is none; `true` when this call dialled it
    /// (or waited for the dialler), so it was checked a moment ago.
    async fn get(&self) -> std::result::Result<(Active, bool), ConnectFailure> {
        if let Some(a) = self.current() {
            return Ok((a, false));
        }
        let _one_dialler = self.connecting.lock().await;
        if let Some(a) = self.current() {
            return Ok((a, true));
        }
        let dial = self.target.dial(&self.config);
        let conn = match tokio::time::timeout(self.connect_timeout, dial).await {
            Err(_) => {
                return Err(ConnectFailure::transient(format!(
                    "connecting to Redis timed out after {} ms",
                    self.connect_timeout.as_millis()
                )));
            }
            Ok(Err(e)) => {
                let context = format!("connecting to Redis ({})", self.target.describe());
                return Err(ConnectFailure::from_redis(&context, e));
            }
            Ok(Ok(c)) => c,
        };
        self.check_new_connection(conn.clone()).await?;
        let active = Active { id: self.next_id.fetch_add(1, Ordering::Relaxed), conn };
        *lock(&self.current) = Some(active.clone());
        Ok((active, true))
    }

    /// The checks every new connection passes before serving: schema version, fencing epoch and
    /// server identity (`init.lua`), then the eviction policy.
    async fn check_new_connection(&self, mut conn: MultiplexedConnection) -> std::result::Result<(), ConnectFailure> {
        let t = self.command_timeout;
        let timed_out = |what: &str| ConnectFailure::transient(format!("{what}: no reply within {} ms", t.as_millis()));

        // Only a primary may serve: a replica refuses writes, and one that a stale Sentinel (or a
        // demoted primary not yet reconfigured) still names must not be mistaken for the primary.
        match tokio::time::timeout(t, redis::cmd("ROLE").query_async::<redis::Value>(&mut conn)).await {
            Err(_) => return Err(timed_out("ROLE")),
            Ok(Ok(v)) => {
                if let Some(role) = role_name(&v)
                    && role != "master"
                {
                    return Err(ConnectFailure::transient(format!(
                        "the Redis server ({}) is a {role}, not the primary",
                        self.target.describe()
                    )));
                }
            }
            Ok(Err(e)) if is_connection_failure(&e) => return Err(ConnectFailure::from_redis("ROLE", e)),
            Ok(Err(e)) => tracing::debug!(error = %e, "Redis refused ROLE; relying on READONLY replies instead"),
        }

        // The server's run_id changes with every redis-server process: a different one under an
        // existing data set means a failover or a restore, which init.lua treats like a restart.
        let info = tokio::time::timeout(t, redis::cmd("INFO").arg("server").query_async::<String>(&mut conn)).await;
        let run_id = match info {
            Err(_) => return Err(timed_out("INFO server")),
            Ok(Ok(info)) => info_field(&info, "run_id").unwrap_or_default(),
            Ok(Err(e)) if is_connection_failure(&e) => return Err(ConnectFailure::from_redis("INFO server", e)),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Redis refused INFO: a failover to a replica will not start a new fencing epoch");
                String::new()
            }
        };
        // A promoted replica's `master_replid2` is the replication id of the primary it followed,
        // which lets init.lua tell a promotion from a restore ('' when unknown: the safe answer).
        let info =
            tokio::time::timeout(t, redis::cmd("INFO").arg("replication").query_async::<String>(&mut conn)).await;
        let (replid, replid2) = match info {
            Err(_) => return Err(timed_out("INFO replication")),
            Ok(Ok(info)) => (
                info_field(&info, "master_replid").unwrap_or_default(),
                info_field(&info, "master_replid2")
                    .filter(|r| !r.trim_start_matches('0').is_empty())
                    .unwrap_or_default(),
            ),
            Ok(Err(e)) if is_connection_failure(&e) => return Err(ConnectFailure::from_redis("INFO replication", e)),
            Ok(Err(_)) => (String::new(), String::new()),
        };

        let mut init = self.init.prepare_invoke();
        let acked = if self.replica_acked { "1" } else { "0" };
        init.arg(&self.prefix).arg(SCHEMA_VERSION).arg(&run_id).arg(&replid).arg(&replid2).arg(acked);
        let reply = match tokio::time::timeout(t, init.invoke_async::<redis::Value>(&mut conn)).await {
            Err(_) => return Err(timed_out("registry init script")),
            Ok(Err(e)) => return Err(ConnectFailure::from_redis("registry init script", e)),
            Ok(Ok(v)) => wire::texts(v).map_err(|error| ConnectFailure { error, fatal: false })?,
        };
        match reply.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["ok", epoch, rolled] => {
                if *rolled == "2" {
                    tracing::warn!(
                        epoch,
                        "Redis failed over to a replica of the primary that last wrote the registry, and every \
                         grant and renewal there was acknowledged by a replica: new fencing epoch, no quarantine"
                    );
                } else if *rolled == "1" {
                    tracing::warn!(
                        epoch,
                        "Redis is a different server process than the one that last wrote the registry (failover or \
                         restore): started a new fencing epoch; new publishers wait one lease TTL"
                    );
                } else {
                    tracing::info!(epoch, "connected to the Redis registry");
                }
            }
            ["schema_mismatch", found] => {
                let error =
                    RegistryError::SchemaMismatch { found: found.to_string(), expected: SCHEMA_VERSION.to_string() };
                return Err(ConnectFailure { error, fatal: true });
            }
            other => {
                let msg = format!("registry init script: unexpected reply {other:?}");
                return Err(ConnectFailure::transient(msg));
            }
        }

        let mut config = redis::cmd("CONFIG");
        config.arg("GET").arg("maxmemory-policy");
        let policy = match tokio::time::timeout(t, config.query_async::<Vec<String>>(&mut conn)).await {
            Err(_) => return Err(timed_out("CONFIG GET maxmemory-policy")),
            Ok(Ok(kv)) => match kv.as_slice() {
                [_, value] => EvictionPolicy::Policy(value.clone()),
                _ => EvictionPolicy::Unreadable(format!("CONFIG GET returned {kv:?}")),
            },
            Ok(Err(e)) if is_connection_failure(&e) => return Err(ConnectFailure::from_redis("CONFIG GET", e)),
            Ok(Err(e)) => EvictionPolicy::Unreadable(e.to_string()),
        };
        self.record_eviction_policy(policy);
        Ok(())
    }

    /// Warns (once per change, not on every reconnect) unless Redis is `noeviction`.
    fn record_eviction_policy(&self, policy: EvictionPolicy) {
        let mut seen = lock(&self.eviction);
        if *seen == policy {
            return;
        }
        match &policy {
            EvictionPolicy::Policy(p) if policy.is_safe() => {
                tracing::debug!(policy = %p, "Redis maxmemory-policy is noeviction")
            }
            EvictionPolicy::Policy(p) => tracing::warn!(
                policy = %p,
                "DANGER: Redis maxmemory-policy is not noeviction. Under memory pressure Redis may evict a lease key, \
                 which admits a SECOND PUBLISHER for a live stream. Set `maxmemory-policy noeviction` on the registry Redis."
            ),
            EvictionPolicy::Unreadable(why) => tracing::warn!(
                error = %why,
                "could not read Redis maxmemory-policy (CONFIG disabled?): make sure it is noeviction, or an evicted \
                 lease key admits a second publisher"
            ),
            EvictionPolicy::NotChecked => {}
        }
        *seen = policy;
    }
}

/// A poisoned lock still holds a consistent value here (every critical section is one
/// assignment or clone), so keep using it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The first element of a `ROLE` reply: `master`, `slave` or `sentinel`.
fn role_name(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Some(redis::Value::SimpleString(s)) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// One `name:value` field of an `INFO` reply.
fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(|s| s.trim().to_string())
}

/// The connection itself failed (as opposed to Redis refusing one command, e.g. an ACL user
/// without `INFO` or `CONFIG`, which the optional checks tolerate).
fn is_connection_failure(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// How one request failed: on a connection found dead (worth one immediate retry on a new
/// connection), or otherwise.
enum Failed {
    Dead(RegistryError),
    Other(RegistryError),
}

impl Failed {
    fn into_error(self) -> RegistryError {
        match self {
            Failed::Dead(e) | Failed::Other(e) => e,
        }
    }
}

/// The connection was closed under the request (its server died, restarted or dropped the
/// client), as opposed to a slow server: a timeout is not "dead" here, since retrying behind a
/// black-holed network would only double the wait.
fn is_dead_connection(e: &RedisError) -> bool {
    !e.is_timeout() && (e.is_connection_dropped() || e.is_io_error() || e.is_connection_refusal())
}

/// Errors after which the connection cannot be trusted (dead, timed out, or no longer talking
/// to a writable, authenticated primary). Plain command errors keep it.
fn needs_new_connection(e: &RedisError) -> bool {
    match e.kind() {
        ErrorKind::Server(
            ServerErrorKind::ResponseError
            | ServerErrorKind::ExecAbort
            | ServerErrorKind::NoScript
            | ServerErrorKind::NoPerm,
        ) => false,
        ErrorKind::Server(_) => true,
        // NOREPLICAS: a primary cut off from its replicas (`min-replicas-to-write`), typically a
        // demoted one that Sentinel has not reconfigured yet: ask the Sentinels again.
        ErrorKind::Extension => {
            matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "LOADING" | "READONLY" | "NOREPLICAS"))
        }
        ErrorKind::UnexpectedReturnType | ErrorKind::Client => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_is_read_from_info() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc123\r\ntcp_port:6379\r\n";
        assert_eq!(info_field(info, "run_id").as_deref(), Some("abc123"));
        assert_eq!(info_field("# Server\r\n", "run_id"), None);
        let repl = "# Replication\r\nmaster_replid:aaa\r\nmaster_replid2:bbb\r\n";
        assert_eq!(info_field(repl, "master_replid").as_deref(), Some("aaa"));
        assert_eq!(info_field(repl, "master_replid2").as_deref(), Some("bbb"));
    }

    #[test]
    fn only_noeviction_is_safe() {
        assert!(EvictionPolicy::Policy("noeviction".into()).is_safe());
        assert!(!EvictionPolicy::Policy("allkeys-lru".into()).is_safe());
        assert!(!EvictionPolicy::Unreadable("ERR unknown command".into()).is_safe());
        assert!(!EvictionPolicy::NotChecked.is_safe());
    }
}
