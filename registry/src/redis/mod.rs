//! Redis backend: the registry shared by a fleet of edges and the operator.
//!
//! Layout: [`connection`] owns the one connection (reconnects, timeouts, per-connection checks),
//! `scripts/*.lua` hold every multi-key operation as one atomic script, [`wire`] encodes records
//! and decodes replies, and this file maps the [`Registry`] trait onto them. The key schema, each
//! script, and the fencing, epoch and quarantine rules are documented in docs/registry.md.
//!
//! Requires a single Redis primary (standalone or Sentinel-managed): scripts touch keys they
//! compute, which Redis Cluster does not allow. `maxmemory-policy` must be `noeviction`.

// `RegistryError::AlreadyActive` carries the holder by value on purpose (a refused publisher is
// told who holds the stream); boxing it would change the API the edge and operator match on.
#![allow(clippy::result_large_err)]

mod changes;
mod connection;
mod scripts;
mod target;
mod wire;

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use async_trait::async_trait;
use redis::{Client, ConnectionAddr, IntoConnectionInfo, Script, TlsCertificates, Value};

pub use connection::EvictionPolicy;
use connection::Link;
use scripts::Scripts;
use target::Target;
pub use target::{SentinelUrl, is_sentinel_url, parse_sentinel_url};

use crate::{
    backend::{EdgeRegistry, HolderUpdate, OperatorRegistry, RegistryStatus},
    error::{ConflictKind, LossReason, RegistryError, Result},
    lease::{AcquireOptions, HolderInfo, IngestProtocol, Lease, LiveStatus, PublisherInfo, RenewOutcome},
    record::{KeyHash, StreamId, StreamRecord},
};

/// How to reach the registry's Redis.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` or `rediss://…` for TLS; or the Sentinels of a
    /// Sentinel-managed primary: `redis+sentinel://[user:password@]host:port,host:port/<master>[/db]`
    /// (`rediss+sentinel://` for TLS; options in `target.rs` and docs/registry.md).
    pub url: String,
    /// Overrides the URL's password (e.g. read from `--redis-password-file`).
    pub password: Option<String>,
    /// First segment of every key (default `sf`): several registries can share one Redis.
    pub key_prefix: String,
    /// Bound on every request (default 500 ms); a reply that has not come by then counts as
    /// "Redis unavailable" and the connection is replaced.
    pub command_timeout: Duration,
    /// Bound on dialling, TLS and AUTH (default 1 s).
    pub connect_timeout: Duration,
    /// PEM CA bundle to trust for `rediss://` instead of the system store (a private CA). The
    /// system store also honours `SSL_CERT_FILE`.
    pub tls_ca_file: Option<PathBuf>,
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            password: None,
            key_prefix: "sf".to_string(),
            command_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(1),
            tls_ca_file: None,
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("key_prefix", &self.key_prefix)
            .field("command_timeout", &self.command_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

/// The URL with any `user:password@` replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://<redacted>@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// The registry on Redis. Cheap to share behind an `Arc` (one multiplexed connection).
pub struct RedisRegistry {
    link: Link,
    scripts: Scripts,
    /// `<key_prefix>:v1:`; the Lua scripts receive it as `ARGV[1]`.
    prefix: String,
    /// Sentinel mode: how long a grant waits for one replica to acknowledge it (`WAIT 1 <ms>`)
    /// before the publisher is admitted; `None` admits on the primary's word alone.
    replica_ack: Option<Duration>,
}

impl RedisRegistry {
    /// Prepares the registry and tries to connect once. A Redis that is down or unreachable is
    /// not an error (edges may start before Redis): calls return `Unavailable` until it is up.
    /// A bad URL, refused credentials or a registry written by an incompatible version are.
    pub async fn connect(cfg: RedisConfig) -> Result<RedisRegistry> {
        let shown = redact_url(&cfg.url);
        if cfg.command_timeout.is_zero() || cfg.connect_timeout.is_zero() {
            return Err(RegistryError::Invalid("Redis command and connect timeouts must be positive".into()));
        }
        if cfg.key_prefix.is_empty() {
            return Err(RegistryError::Invalid("the Redis key prefix must not be empty".into()));
        }
        let (target, replica_ack) = if is_sentinel_url(&cfg.url) {
            let url =
                parse_sentinel_url(&cfg.url).map_err(|e| RegistryError::Invalid(format!("Redis URL {shown}: {e}")))?;
            if url.tls {
                let _ = rustls::crypto::ring::default_provider().install_default();
            }
            let ca = match (&cfg.tls_ca_file, url.tls) {
                (Some(path), true) => Some(read_ca(path).await?),
                (Some(_), false) => {
                    return Err(RegistryError::Invalid(format!(
                        "a TLS CA file is set but {shown} is not a rediss+sentinel:// URL"
                    )));
                }
                (None, _) => None,
            };
            (Target::sentinel(&url, cfg.password.as_deref(), ca, cfg.connect_timeout / 2)?, url.replica_ack)
        } else {
            (Target::Direct(direct_client(&cfg, &shown).await?), None)
        };

        let prefix = format!("{}:v1:", cfg.key_prefix);
        if let Some(ack) = replica_ack
            && ack >= cfg.command_timeout
        {
            return Err(RegistryError::Invalid(format!(
                "replica_ack_ms ({} ms) must be shorter than the command timeout ({} ms)",
                ack.as_millis(),
                cfg.command_timeout.as_millis()
            )));
        }
        let link = Link::new(target, prefix.clone(), cfg.command_timeout, cfg.connect_timeout, replica_ack.is_some());
        match link.connect_now().await {
            Ok(()) => {}
            Err(f) if f.fatal => return Err(f.error),
            Err(f) => tracing::warn!(
                redis = %shown,
                error = %f.error,
                "Redis is not reachable yet; registry calls fail with `unavailable` until it is"
            ),
        }
        Ok(RedisRegistry { link, scripts: Scripts::new(), prefix, replica_ack })
    }

    /// What the last successful connection found for `maxmemory-policy`.
    pub fn eviction_policy(&self) -> EvictionPolicy {
        self.link.eviction_policy()
    }

    /// Declares that no lease granted before the current registry epoch can still be held, so
    /// new publishers need not wait out the restart quarantine. Only true for a Redis that has
    /// never served edges (a first install, tests); after a real restart, let the quarantine run.
    pub async fn end_quarantine(&self) -> Result<()> {
        let key = &format!("{}quarantine_lifted", self.prefix);
        self.link
            .run("end quarantine", |mut c| async move {
                redis::cmd("SET").arg(key).arg(crate::lease::now_ms()).query_async::<()>(&mut c).await
            })
            .await
    }

    async fn script(&self, what: &str, script: &Script, args: &[&str]) -> Result<Value> {
        let prefix = self.prefix.as_str();
        self.link
            .run(what, |mut c| async move {
                let mut call = script.prepare_invoke();
                call.arg(prefix);
                for a in args {
                    call.arg(*a);
                }
                call.invoke_async::<Value>(&mut c).await
            })
            .await
    }

    /// Runs a script that grants or extends a lease (acquire, reclaim, renew) and, in Sentinel
    /// mode, when it did (`granted` on its reply), waits on the same connection for one replica
    /// to acknowledge the write (`WAIT 1 <ms>`: WAIT counts this connection's own writes, so it
    /// must not run on another one). Returns the script's reply and whether the write is known to
    /// be on a replica (`true` when no ack is asked).
    async fn acked_script(
        &self,
        what: &str,
        script: &Script,
        args: &[&str],
        granted: fn(&Value) -> bool,
    ) -> Result<(Value, bool)> {
        let prefix = self.prefix.as_str();
        let ack = self.replica_ack;
        self.link
            .run(what, |mut c| async move {
                let mut call = script.prepare_invoke();
                call.arg(prefix);
                for a in args {
                    call.arg(*a);
                }
                let reply = call.invoke_async::<Value>(&mut c).await?;
                let Some(ack) = ack.filter(|_| granted(&reply)) else { return Ok((reply, true)) };
                let ms = u64::try_from(ack.as_millis()).unwrap_or(u64::MAX);
                let acked: i64 = redis::cmd("WAIT").arg(1).arg(ms).query_async(&mut c).await?;
                Ok((reply, acked >= 1))
            })
            .await
    }

    async fn hgetall(&self, key: String) -> Result<std::collections::HashMap<String, String>> {
        let key = &key;
        self.link
            .run("read record", |mut c| async move { redis::cmd("HGETALL").arg(key).query_async(&mut c).await })
            .await
    }

    async fn lookup_index(&self, index: &str, value: &str) -> Result<Option<StreamRecord>> {
        let reply = self.script("lookup", &self.scripts.lookup, &[index, value]).await?;
        wire::record_from_flat(wire::texts(reply)?)
    }
}

/// The client for a `redis://` or `rediss://` URL.
/// Reads a CA bundle off the async workers: a slow or network file system never stalls them.
async fn read_ca(path: &std::path::Path) -> Result<Vec<u8>> {
    tokio::fs::read(path)
        .await
        .map_err(|e| RegistryError::Invalid(format!("Redis TLS CA file {}: {e}", path.display())))
}

async fn direct_client(cfg: &RedisConfig, shown: &str) -> Result<Client> {
    let mut info = cfg
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| RegistryError::Invalid(format!("Redis URL {shown}: {e}")))?;
    if let Some(password) = &cfg.password {
        let settings = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(settings);
    }
    let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
    if tls {
        // rustls needs a crypto provider; install ring unless the process already chose one.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    match (&cfg.tls_ca_file, tls) {
        (Some(path), true) => {
            let pem = read_ca(path).await?;
            Client::build_with_tls(info, TlsCertificates { client_tls: None, root_cert: Some(pem) })
        }
        (Some(_), false) => {
            return Err(RegistryError::Invalid(format!("a TLS CA file is set but {shown} is not a rediss:// URL")));
        }
        (None, _) => Client::open(info),
    }
    .map_err(|e| RegistryError::Invalid(format!("Redis URL {shown}: {e}")))
}

/// Whole milliseconds for a script argument; `positive` rejects zero (Redis refuses `PX 0`).
fn millis(what: &str, d: Duration, positive: bool) -> Result<String> {
    let ms = d.as_millis();
    if positive && ms == 0 {
        return Err(RegistryError::Invalid(format!("{what} must be at least 1 ms")));
    }
    Ok(ms.to_string())
}

fn key_not_found(key: &KeyHash) -> RegistryError {
    RegistryError::NotFound { what: format!("publish key {}…", key.short()) }
}

/// `{'ok', …}` from acquire or reclaim.
fn is_grant(reply: &Value) -> bool {
    matches!(reply, Value::Array(items) if matches!(items.first(), Some(Value::BulkString(b)) if b.as_slice() == b"ok"))
}

/// `'renewed'` from renew.
fn is_renewal(reply: &Value) -> bool {
    match reply {
        Value::BulkString(b) => b.as_slice() == b"renewed",
        Value::SimpleString(s) => s == "renewed",
        _ => false,
    }
}

/// A grant as `acquire.lua` and `reclaim.lua` report it.
struct Granted {
    stream: StreamId,
    epoch: u64,
    counter: u64,
    since_ms: u64,
    took_over: bool,
}

fn decode_grant(reply: Value, key: &KeyHash) -> Result<Granted> {
    let reply = wire::texts(reply)?;
    let r: Vec<&str> = reply.iter().map(String::as_str).collect();
    match r.as_slice() {
        ["ok", id, epoch, counter, since, took_over] => Ok(Granted {
            stream: wire::stream_id(id)?,
            epoch: wire::u64_field("epoch", epoch)?,
            counter: wire::u64_field("fence counter", counter)?,
            since_ms: wire::u64_field("since", since)?,
            took_over: *took_over == "1",
        }),
        ["not_found"] => Err(key_not_found(key)),
        ["disabled", id] => Err(RegistryError::Disabled { stream: wire::stream_id(id)? }),
        ["quarantined", ms] => {
            Err(RegistryError::Quarantined { retry_in: Duration::from_millis(wire::u64_field("retry_in", ms)?) })
        }
        ["active", id, wait, ..] => {
            let holder = wire::holder_from(&reply[3..])?;
            let retry_in = wait.parse::<u64>().ok().map(Duration::from_millis);
            Err(RegistryError::AlreadyActive { stream: wire::stream_id(id)?, holder, retry_in })
        }
        other => Err(RegistryError::Unavailable(format!("unexpected reply from the grant script: {other:?}").into())),
    }
}

#[async_trait]
impl OperatorRegistry for RedisRegistry {
    async fn put_stream(&self, rec: &StreamRecord) -> Result<()> {
        if !crate::record::valid_playback_name(&rec.playback_name) {
            return Err(RegistryError::Invalid(format!("playback name {:?} is not a DNS label", rec.playback_name)));
        }
        let args = wire::record_args(rec);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let reply = wire::texts(self.script("put stream", &self.scripts.put_stream, &args).await?)?;
        match reply.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["ok"] => Ok(()),
            ["conflict_key", owner] => Err(RegistryError::Conflict {
                what: ConflictKind::PublishKey(rec.key_hash),
                owner: wire::stream_id(owner)?,
            }),
            ["conflict_playback", owner] => Err(RegistryError::Conflict {
                what: ConflictKind::PlaybackName(rec.playback_name.clone()),
                owner: wire::stream_id(owner)?,
            }),
            other => Err(RegistryError::Unavailable(format!("unexpected reply from put_stream: {other:?}").into())),
        }
    }

    async fn delete_stream(&self, id: &StreamId) -> Result<bool> {
        let reply = self.script("delete stream", &self.scripts.delete_stream, &[&id.to_string()]).await?;
        Ok(wire::text(reply)? == "1")
    }

    async fn get_stream(&self, id: &StreamId) -> Result<Option<StreamRecord>> {
        wire::record_from_hash(&self.hgetall(format!("{}stream:{id}", self.prefix)).await?)
    }

    async fn list_streams(&self) -> Result<Vec<StreamRecord>> {
        let set = &format!("{}streams", self.prefix);
        let ids: Vec<String> = self
            .link
            .run("list streams", |mut c| async move { redis::cmd("SMEMBERS").arg(set).query_async(&mut c).await })
            .await?;
        let mut ids: Vec<StreamId> = ids.iter().map(|s| wire::stream_id(s)).collect::<Result<_>>()?;
        ids.sort();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL").arg(format!("{}stream:{id}", self.prefix));
        }
        let hashes: Vec<std::collections::HashMap<String, String>> = self
            .link
            .run("list streams", |mut c| {
                let pipe = &pipe;
                async move { pipe.query_async(&mut c).await }
            })
            .await?;
        let mut out = Vec::with_capacity(hashes.len());
        for h in &hashes {
            // A record deleted between the two reads is simply absent.
            if let Some(rec) = wire::record_from_hash(h)? {
                out.push(rec);
            }
        }
        Ok(out)
    }

    async fn revoke(&self, id: &StreamId) -> Result<bool> {
        let reply = self.script("revoke", &self.scripts.revoke, &[&id.to_string()]).await?;
        Ok(wire::text(reply)? == "1")
    }

    async fn epoch(&self) -> Result<u64> {
        let key = &format!("{}epoch", self.prefix);
        let epoch: Option<String> = self
            .link
            .run("read epoch", |mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await })
            .await?;
        epoch.map_or(Ok(0), |e| wire::u64_field("epoch", &e))
    }

    fn changes(&self) -> futures::stream::BoxStream<'static, crate::LiveChange> {
        changes::feed(self.link.target(), format!("{}changes", self.prefix), self.link.connect_timeout())
    }
}

#[async_trait]
impl EdgeRegistry for RedisRegistry {
    async fn lookup(&self, key: &KeyHash) -> Result<StreamRecord> {
        let rec = self
            .lookup_index("key", &key.to_hex())
            .await?
            .filter(|r| r.key_hash == *key)
            .ok_or_else(|| key_not_found(key))?;
        if !rec.enabled {
            return Err(RegistryError::Disabled { stream: rec.id });
        }
        Ok(rec)
    }

    async fn stream_records(&self) -> Result<Vec<StreamRecord>> {
        OperatorRegistry::list_streams(self).await
    }

    async fn lookup_playback(&self, name: &str) -> Result<StreamRecord> {
        self.lookup_index("playback", name)
            .await?
            .filter(|r| r.playback_name == name)
            .ok_or_else(|| RegistryError::NotFound { what: format!("playback name {name:?}") })
    }

    async fn acquire_as(
        &self,
        key: &KeyHash,
        who: &PublisherInfo,
        opts: &AcquireOptions,
        token: &str,
    ) -> Result<Lease> {
        let token = token.to_string();
        let key_hex = key.to_hex();
        let ttl = millis("lease TTL", opts.ttl, true)?;
        let idle = millis("idle threshold", opts.idle_threshold, false)?;
        let cooldown = millis("takeover cooldown", opts.takeover_cooldown, false)?;
        let args = [
            key_hex.as_str(),
            token.as_str(),
            ttl.as_str(),
            idle.as_str(),
            cooldown.as_str(),
            who.edge.as_str(),
            who.remote_addr.as_deref().unwrap_or(""),
            who.relay_addr.as_deref().unwrap_or(""),
            who.protocol.map_or("", IngestProtocol::as_str),
        ];
        let (reply, replicated) = self.acked_script("acquire", &self.scripts.acquire, &args, is_grant).await?;
        let g = decode_grant(reply, key)?;
        if !replicated {
            // Not admitted: a failover now could promote a replica that never saw this grant and
            // admit a second publisher. Take it back (compare-and-delete, so only ours).
            let released = self.script("release", &self.scripts.release, &[&g.stream.to_string(), &token]).await;
            tracing::warn!(
                stream = %g.stream,
                released = released.is_ok(),
                "no replica acknowledged the grant in time: publisher not admitted"
            );
            return Err(RegistryError::Unavailable(
                format!(
                    "acquire: no replica acknowledged the grant within {} ms",
                    self.replica_ack.map_or(0, |d| d.as_millis())
                )
                .into(),
            ));
        }
        let fence = wire::fence(g.epoch, g.counter);
        let holder = HolderInfo {
            edge: who.edge.clone(),
            remote_addr: who.remote_addr.clone(),
            relay_addr: who.relay_addr.clone(),
            protocol: who.protocol,
            since_ms: g.since_ms,
            fence,
            idle_since_ms: None,
            ingest_kbps: None,
            media: None,
        };
        Ok(Lease {
            stream: g.stream,
            key_hash: *key,
            key_hash_alt: None,
            token,
            fence,
            epoch: g.epoch,
            holder,
            took_over: g.took_over,
        })
    }

    async fn reclaim(&self, lease: &mut Lease, ttl: Duration) -> Result<()> {
        match (self.reclaim_with(lease.key_hash, lease, ttl).await, lease.key_hash_alt) {
            // The record was rewritten under the key's other hash (a legacy record rehashed
            // while the registry was away): the same key, so the same holder may reclaim.
            (Err(RegistryError::NotFound { .. }), Some(alt)) => {
                self.reclaim_with(alt, lease, ttl).await?;
                lease.key_hash_alt = Some(std::mem::replace(&mut lease.key_hash, alt));
                Ok(())
            }
            (result, _) => result,
        }
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<RenewOutcome> {
        let id = lease.stream.to_string();
        let ttl = millis("lease TTL", ttl, true)?;
        let epoch = lease.epoch.to_string();
        let (reply, replicated) =
            self.acked_script("renew", &self.scripts.renew, &[&id, &lease.token, &ttl, &epoch], is_renewal).await?;
        match wire::text(reply)?.as_str() {
            // Not yet on a replica: the keeper must not extend its deadline on it (a promoted
            // replica would expire the lease earlier than the holder stops).
            "renewed" if !replicated => Err(RegistryError::Unavailable(
                format!("renew: no replica acknowledged within {} ms", self.replica_ack.map_or(0, |d| d.as_millis()))
                    .into(),
            )),
            "renewed" => Ok(RenewOutcome::Renewed),
            "other" => Ok(RenewOutcome::HeldByOther),
            "restarted" => Ok(RenewOutcome::Missing { registry_restarted: true }),
            "missing" => Ok(RenewOutcome::Missing { registry_restarted: false }),
            other => Err(RegistryError::Unavailable(format!("unexpected reply from renew: {other:?}").into())),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        let reply = self.script("release", &self.scripts.release, &[&lease.stream.to_string(), &lease.token]).await?;
        Ok(wire::text(reply)? == "1")
    }

    async fn update_holder(&self, lease: &Lease, update: HolderUpdate) -> Result<()> {
        let idle = match update.idle {
            Some(true) => "1",
            Some(false) => "0",
            None => "",
        };
        let kbps = update.ingest_kbps.map(|k| k.to_string()).unwrap_or_default();
        // An encoding that is too long is dropped, not truncated: half a JSON object reads as none.
        let media = update.media.and_then(|m| m.encode()).unwrap_or_default();
        let id = lease.stream.to_string();
        let args = [id.as_str(), lease.token.as_str(), idle, kbps.as_str(), media.as_str()];
        let reply = self.script("update holder", &self.scripts.update_holder, &args).await?;
        let lost = |reason| Err(RegistryError::LeaseLost { stream: lease.stream.clone(), reason });
        match wire::text(reply)?.as_str() {
            "ok" => Ok(()),
            "other" => lost(LossReason::Stolen),
            "missing" => lost(LossReason::Revoked),
            other => Err(RegistryError::Unavailable(format!("unexpected reply from update_holder: {other:?}").into())),
        }
    }

    async fn set_viewers(&self, edge: &str, counts: &[(StreamId, u32)], ttl: Duration) -> Result<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let ttl = millis("viewer TTL", ttl, true)?;
        let pairs: Vec<String> = counts.iter().flat_map(|(id, n)| [id.to_string(), n.to_string()]).collect();
        let mut args = vec![edge, ttl.as_str()];
        args.extend(pairs.iter().map(String::as_str));
        self.script("set viewers", &self.scripts.set_viewers, &args).await.map(|_| ())
    }

    async fn reserve_viewer(&self, id: &StreamId, player: &str, max: u32, ttl: Duration) -> Result<bool> {
        let ttl = millis("viewer slot TTL", ttl, true)?;
        let (id, max) = (id.to_string(), max.to_string());
        let reply = self.script("reserve viewer", &self.scripts.reserve_viewer, &[&id, player, &max, &ttl]).await?;
        match reply {
            Value::Int(n) => Ok(n == 1),
            other => Err(RegistryError::Unavailable(format!("unexpected reply from reserve_viewer: {other:?}").into())),
        }
    }

    async fn release_viewer(&self, id: &StreamId, player: &str) -> Result<bool> {
        let id = id.to_string();
        let reply = self.script("release viewer", &self.scripts.release_viewer, &[&id, player]).await?;
        Ok(matches!(reply, Value::Int(1)))
    }

    async fn renew_viewers(&self, players: &[(StreamId, String)], ttl: Duration) -> Result<()> {
        if players.is_empty() {
            return Ok(());
        }
        let ttl = millis("viewer slot TTL", ttl, true)?;
        let pairs: Vec<String> = players.iter().flat_map(|(id, p)| [id.to_string(), p.clone()]).collect();
        let mut args = vec![ttl.as_str()];
        args.extend(pairs.iter().map(String::as_str));
        self.script("renew viewers", &self.scripts.renew_viewers, &args).await.map(|_| ())
    }
}

#[async_trait]
impl RegistryStatus for RedisRegistry {
    async fn live_status(&self, id: &StreamId) -> Result<LiveStatus> {
        let reply = wire::nested(self.script("live status", &self.scripts.live_status, &[&id.to_string()]).await?)?;
        let [holder, viewers, left] = reply.as_slice() else {
            return Err(RegistryError::Unavailable(format!("unexpected reply from live_status: {reply:?}").into()));
        };
        let holder = if holder.is_empty() { None } else { Some(wire::holder_from(holder)?) };
        let mut viewers_by_edge = BTreeMap::new();
        for pair in viewers.chunks_exact(2) {
            let n = wire::u64_field("viewer count", &pair[1])?;
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            if n > 0 {
                viewers_by_edge.insert(pair[0].clone(), n);
            }
        }
        let viewers = viewers_by_edge.values().fold(0u32, |sum, n| sum.saturating_add(*n));
        let lease_ms_left = match left.first() {
            Some(ms) if holder.is_some() => Some(wire::u64_field("lease time left", ms)?),
            _ => None,
        };
        Ok(LiveStatus { holder, viewers, viewers_by_edge, lease_ms_left })
    }

    async fn ping(&self) -> Result<()> {
        self.link.run("ping", |mut c| async move { redis::cmd("PING").query_async::<()>(&mut c).await }).await
    }
}

impl RedisRegistry {
    /// `reclaim` with the record looked up under `key` (the lease's hash or its other one).
    async fn reclaim_with(&self, key: KeyHash, lease: &mut Lease, ttl: Duration) -> Result<()> {
        let key_hex = key.to_hex();
        let id = lease.stream.to_string();
        let ttl = millis("lease TTL", ttl, true)?;
        let since = lease.holder.since_ms.to_string();
        let kbps = lease.holder.ingest_kbps.map(|k| k.to_string()).unwrap_or_default();
        let args = [
            key_hex.as_str(),
            id.as_str(),
            lease.token.as_str(),
            ttl.as_str(),
            lease.holder.edge.as_str(),
            lease.holder.remote_addr.as_deref().unwrap_or(""),
            lease.holder.relay_addr.as_deref().unwrap_or(""),
            since.as_str(),
            kbps.as_str(),
            lease.holder.protocol.map_or("", IngestProtocol::as_str),
        ];
        let (reply, replicated) = self.acked_script("reclaim", &self.scripts.reclaim, &args, is_grant).await?;
        let g = decode_grant(reply, &key)?;
        if !replicated {
            // The lease is ours on this primary but not yet known to be on a replica: report a
            // transient failure; the keeper keeps the publisher only until its local deadline and
            // tries again (the next renew or reclaim carries the same token).
            return Err(RegistryError::Unavailable(
                format!(
                    "reclaim: no replica acknowledged the grant within {} ms",
                    self.replica_ack.map_or(0, |d| d.as_millis())
                )
                .into(),
            ));
        }
        lease.epoch = g.epoch;
        lease.fence = wire::fence(g.epoch, g.counter);
        lease.holder.fence = lease.fence;
        lease.holder.idle_since_ms = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_config_never_show_passwords() {
        assert_eq!(redact_url("redis://:s3cret@redis:6379/0"), "redis://<redacted>@redis:6379/0");
        assert_eq!(redact_url("rediss://user:p@ss@redis/"), "rediss://<redacted>@redis/");
        assert_eq!(redact_url("redis://redis:6379/"), "redis://redis:6379/");
        assert_eq!(
            redact_url("redis+sentinel://app:s3cret@s1:26379,s2:26379/m/0?sentinel_auth=same"),
            "redis+sentinel://<redacted>@s1:26379,s2:26379/m/0?sentinel_auth=same"
        );
        let mut cfg = RedisConfig::new("redis://:s3cret@redis:6379/");
        cfg.password = Some("hunter2".into());
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let cfg = RedisConfig::new("redis://localhost/");
        assert_eq!(cfg.key_prefix, "sf");
        assert_eq!(cfg.command_timeout, Duration::from_millis(500));
        assert_eq!(cfg.connect_timeout, Duration::from_secs(1));
        assert_eq!(cfg.password, None);
    }
}
