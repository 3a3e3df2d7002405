//! Where the registry's Redis is, from its URL: one server (`redis://`, `rediss://`), or the
//! primary that a set of Sentinels currently names (`redis+sentinel://`, `rediss+sentinel://`).
//!
//! Sentinel URL (the exact form, documented in docs/registry.md):
//!
//! ```text
//! redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/<master-name>[/<db>][?option=value&...]
//! ```
//!
//! * hosts are the Sentinels (port 26379 when left out); IPv6 literals in brackets; list all;
//! * user and password (percent-encoded), or `RedisConfig::password`, authenticate to the
//!   **Redis servers**; the Sentinels are asked without credentials unless
//!   `sentinel_auth=same` (then the same user and password are sent to them too);
//! * `rediss+sentinel://` speaks TLS to the Sentinels and to the Redis servers;
//! * `replica_ack_ms=<ms>` (default 100; `0` turns it off): after a grant, `WAIT 1 <ms>` for
//!   one replica to hold it before the publisher is admitted (see `RedisRegistry::acquire`).
//!
//! The dial asks all Sentinels at once and takes the newest answer of a majority (see
//! [`SentinelTarget::find_primary`]); `connection.rs` checks `ROLE` on the server named and redials
//! after any connection failure, so a failover is followed without a restart. Not the redis
//! crate's `sentinel` feature: it asks the Sentinels in list order and waits on each, so one
//! black-holed Sentinel stalls every dial past the connect timeout (measured: every connect
//! failed with the first Sentinel of the URL frozen).

use std::time::Duration;

use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, RedisResult,
    TlsCertificates, aio::MultiplexedConnection,
};

use crate::error::{RegistryError, Result};

/// The default Sentinel port.
pub const SENTINEL_PORT: u16 = 26379;

/// The default `replica_ack_ms` of a Sentinel URL.
pub const DEFAULT_REPLICA_ACK: Duration = Duration::from_millis(100);

/// A parsed `redis+sentinel://` URL. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    pub tls: bool,
    pub sentinels: Vec<(String, u16)>,
    pub master: String,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Send the user and password to the Sentinels too (`sentinel_auth=same`).
    pub sentinel_auth: bool,
    /// `WAIT 1 <ms>` after a grant; `None` when `replica_ack_ms=0`.
    pub replica_ack: Option<Duration>,
}

impl std::fmt::Debug for SentinelUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelUrl")
            .field("tls", &self.tls)
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("sentinel_auth", &self.sentinel_auth)
            .field("replica_ack", &self.replica_ack)
            .finish()
    }
}

/// True for `redis+sentinel://` and `rediss+sentinel://` URLs.
pub fn is_sentinel_url(url: &str) -> bool {
    url.starts_with("redis+sentinel://") || url.starts_with("rediss+sentinel://")
}

/// Parses a Sentinel URL; errors never contain the password.
pub fn parse_sentinel_url(url: &str) -> std::result::Result<SentinelUrl, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("redis+sentinel://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("rediss+sentinel://") {
        (true, r)
    } else {
        return Err("not a redis+sentinel:// or rediss+sentinel:// URL".into());
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, p),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(u) => {
            let (user, pass) = match u.split_once(':') {
                Some((user, pass)) => (user, Some(pass)),
                None => (u, None),
            };
            let user = percent_decode(user).map_err(|e| format!("user name: {e}"))?;
            let pass =
                pass.map(percent_decode).transpose().map_err(|_| "password: bad percent-encoding".to_string())?;
            ((!user.is_empty()).then_some(user), pass.filter(|p| !p.is_empty()))
        }
    };
    let mut sentinels = Vec::new();
    for h in hosts.split(',') {
        sentinels.push(parse_host_port(h)?);
    }
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let master = segments.next().ok_or("no master name: the path must be /<master-name>[/<db>]")?;
    let master = percent_decode(master).map_err(|e| format!("master name: {e}"))?;
    let db = match segments.next() {
        None => 0,
        Some(d) => {
            d.parse::<i64>().ok().filter(|d| *d >= 0).ok_or_else(|| format!("database {d:?} is not a number"))?
        }
    };
    if let Some(extra) = segments.next() {
        return Err(format!("unexpected path segment {extra:?} after the database"));
    }
    let mut sentinel_auth = false;
    let mut replica_ack = Some(DEFAULT_REPLICA_ACK);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match (k, v) {
            ("sentinel_auth", "same") => sentinel_auth = true,
            ("sentinel_auth", "none") => sentinel_auth = false,
            ("sentinel_auth", other) => return Err(format!("sentinel_auth={other:?}: use `same` or `none`")),
            ("replica_ack_ms", ms) => {
                let ms = ms.parse::<u64>().map_err(|_| format!("replica_ack_ms={ms:?} is not a number"))?;
                replica_ack = (ms > 0).then(|| Duration::from_millis(ms));
            }
            (other, _) => return Err(format!("unknown option {other:?} (known: sentinel_auth, replica_ack_ms)")),
        }
    }
    Ok(SentinelUrl { tls, sentinels, master, db, username, password, sentinel_auth, replica_ack })
}

fn parse_host_port(h: &str) -> std::result::Result<(String, u16), String> {
    if h.is_empty() {
        return Err("empty Sentinel host".into());
    }
    let (host, port) = if let Some(v6) = h.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| format!("unclosed [ in {h:?}"))?;
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err(format!("bad Sentinel address {h:?}")),
        }
    } else {
        match h.rsplit_once(':') {
            Some((host, p)) => (host, Some(p)),
            None => (h, None),
        }
    };
    if host.is_empty() {
        return Err(format!("bad Sentinel address {h:?}"));
    }
    let port = match port {
        None => SENTINEL_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("bad port in {h:?}"))?,
    };
    Ok((host.to_string(), port))
}

fn percent_decode(s: &str) -> std::result::Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or("truncated percent-encoding")?;
            let hex = std::str::from_utf8(hex).map_err(|_| "bad percent-encoding")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad percent-encoding")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 after percent-decoding".to_string())
}

/// How new connections are made.
pub(super) enum Target {
    /// One server, named by the URL.
    Direct(Client),
    /// Whichever server the Sentinels name as the primary at dial time.
    Sentinel(SentinelTarget),
}

/// The Sentinels of one monitored primary, and how to reach the servers they name.
pub(super) struct SentinelTarget {
    sentinels: Vec<Client>,
    master: String,
    /// db, user and password for the Redis servers.
    node: RedisConnectionInfo,
    tls: bool,
    ca: Option<Vec<u8>>,
    /// Bound on asking one Sentinel (connect, AUTH, one command).
    ask_timeout: Duration,
}

/// What one Sentinel says about the primary.
struct Named {
    host: String,
    port: u16,
    config_epoch: u64,
}

impl Target {
    /// A Sentinel target; `password` (from `RedisConfig`) overrides the URL's. Each Sentinel is
    /// asked for at most `ask_timeout`.
    pub fn sentinel(
        url: &SentinelUrl,
        password: Option<&str>,
        ca: Option<Vec<u8>>,
        ask_timeout: Duration,
    ) -> Result<Target> {
        let invalid = |e: redis::RedisError| RegistryError::Invalid(format!("Redis Sentinel configuration: {e}"));
        let password = password.map(str::to_string).or_else(|| url.password.clone());
        let mut node = RedisConnectionInfo::default().set_db(url.db);
        let mut at_sentinel = RedisConnectionInfo::default();
        if let Some(user) = &url.username {
            node = node.set_username(user);
            if url.sentinel_auth {
                at_sentinel = at_sentinel.set_username(user);
            }
        }
        if let Some(p) = &password {
            node = node.set_password(p);
            if url.sentinel_auth {
                at_sentinel = at_sentinel.set_password(p);
            }
        }
        let mut sentinels = Vec::with_capacity(url.sentinels.len());
        for (host, port) in &url.sentinels {
            let info = addr(url.tls, host, *port).into_connection_info().map_err(invalid)?;
            let info = info.set_redis_settings(at_sentinel.clone());
            sentinels.push(open(info, ca.as_deref()).map_err(invalid)?);
        }
        Ok(Target::Sentinel(SentinelTarget {
            sentinels,
            master: url.master.clone(),
            node,
            tls: url.tls,
            ca,
            ask_timeout,
        }))
    }

    /// Opens a connection to the server to use now (for Sentinel: the current primary).
    pub async fn dial(&self, config: &AsyncConnectionConfig) -> RedisResult<MultiplexedConnection> {
        match self {
            Target::Direct(client) => client.get_multiplexed_async_connection_with_config(config).await,
            Target::Sentinel(s) => {
                let named = s.find_primary().await?;
                let info = addr(s.tls, &named.host, named.port).into_connection_info()?;
                let client = open(info.set_redis_settings(s.node.clone()), s.ca.as_deref())?;
                client.get_multiplexed_async_connection_with_config(config).await
            }
        }
    }

    /// A pub/sub connection to the server to use now (for Sentinel: the current primary).
    pub async fn dial_pubsub(&self) -> RedisResult<redis::aio::PubSub> {
        match self {
            Target::Direct(client) => client.get_async_pubsub().await,
            Target::Sentinel(s) => {
                let named = s.find_primary().await?;
                let info = addr(s.tls, &named.host, named.port).into_connection_info()?;
                open(info.set_redis_settings(s.node.clone()), s.ca.as_deref())?.get_async_pubsub().await
            }
        }
    }

    /// For logs: which primary this target follows.
    pub fn describe(&self) -> String {
        match self {
            Target::Direct(_) => "direct".to_string(),
            Target::Sentinel(s) => format!("sentinel master {}", s.master),
        }
    }
}

impl SentinelTarget {
    /// Asks every Sentinel at once (`SENTINEL MASTER <name>`), each bounded by `ask_timeout`, and
    /// stops as soon as a majority answered or all replied: a dead or black-holed Sentinel then
    /// costs nothing. Of the answers that name a primary not flagged `s_down`/`o_down`, the one
    /// with the highest `config-epoch` (the newest failover) wins. The server it names is checked
    /// with `ROLE` by the connection (`connection.rs`) before use.
    async fn find_primary(&self) -> RedisResult<Named> {
        let mut asking = tokio::task::JoinSet::new();
        for client in &self.sentinels {
            let (client, master, limit) = (client.clone(), self.master.clone(), self.ask_timeout);
            asking.spawn(async move {
                let ask = async {
                    let mut c = client.get_multiplexed_async_connection().await?;
                    redis::cmd("SENTINEL").arg("MASTER").arg(&master).query_async::<Vec<String>>(&mut c).await
                };
                match tokio::time::timeout(limit, ask).await {
                    Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
                    Ok(Err(e)) => Err(e.to_string()),
                    Ok(Ok(fields)) => named_primary(&fields),
                }
            });
        }
        let majority = self.sentinels.len() / 2 + 1;
        let (mut answers, mut errors) = (Vec::new(), Vec::new());
        while let Some(done) = asking.join_next().await {
            match done {
                Ok(Ok(named)) => answers.push(named),
                Ok(Err(e)) => errors.push(e),
                Err(e) => errors.push(e.to_string()),
            }
            if answers.len() >= majority {
                break;
            }
        }
        answers.into_iter().max_by_key(|n| n.config_epoch).ok_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::Client,
                "no Sentinel named a usable primary",
                format!("{}: {}", self.master, errors.join("; ")),
            ))
        })
    }
}

/// The primary in a `SENTINEL MASTER` reply (flat field/value pairs), unless it is down.
fn named_primary(fields: &[String]) -> std::result::Result<Named, String> {
    let get = |name: &str| fields.chunks_exact(2).find(|kv| kv[0] == name).map(|kv| kv[1].as_str());
    let flags = get("flags").unwrap_or("");
    if !flags.split(',').any(|f| f == "master") || flags.split(',').any(|f| f == "s_down" || f == "o_down") {
        return Err(format!("primary flagged {flags:?}"));
    }
    let host = get("ip").filter(|h| !h.is_empty()).ok_or("no ip in SENTINEL MASTER")?;
    let port = get("port").and_then(|p| p.parse().ok()).ok_or("no port in SENTINEL MASTER")?;
    let config_epoch = get("config-epoch").and_then(|e| e.parse().ok()).unwrap_or(0);
    Ok(Named { host: host.to_string(), port, config_epoch })
}

fn addr(tls: bool, host: &str, port: u16) -> ConnectionAddr {
    if tls {
        ConnectionAddr::TcpTls { host: host.to_string(), port, insecure: false, tls_params: None }
    } else {
        ConnectionAddr::Tcp(host.to_string(), port)
    }
}

fn open(info: redis::ConnectionInfo, ca: Option<&[u8]>) -> RedisResult<Client> {
    match ca {
        Some(pem) => Client::build_with_tls(info, TlsCertificates { client_tls: None, root_cert: Some(pem.to_vec()) }),
        None => Client::open(info),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_parse() {
        let u = parse_sentinel_url("redis+sentinel://s1:26379,s2,[::1]:26380/mymaster/2").unwrap();
        assert!(!u.tls);
        assert_eq!(u.sentinels, vec![("s1".to_string(), 26379), ("s2".to_string(), 26379), ("::1".to_string(), 26380)]);
        assert_eq!(u.master, "mymaster");
        assert_eq!(u.db, 2);
        assert_eq!(u.password, None);
        assert!(!u.sentinel_auth);
        assert_eq!(u.replica_ack, Some(DEFAULT_REPLICA_ACK));

        let u = parse_sentinel_url(
            "rediss+sentinel://app:p%40ss@10.0.0.1:1,10.0.0.2:2/m?sentinel_auth=same&replica_ack_ms=0",
        )
        .unwrap();
        assert!(u.tls);
        assert_eq!(u.username.as_deref(), Some("app"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert!(u.sentinel_auth);
        assert_eq!(u.replica_ack, None);
        assert_eq!(u.db, 0);

        let u = parse_sentinel_url("redis+sentinel://:secret@h/m/?replica_ack_ms=250").unwrap();
        assert_eq!((u.username, u.password.as_deref()), (None, Some("secret")));
        assert_eq!(u.replica_ack, Some(Duration::from_millis(250)));
    }

    #[test]
    fn bad_sentinel_urls_are_refused_without_showing_the_password() {
        for bad in [
            "redis://h/m",
            "redis+sentinel://h",
            "redis+sentinel://h/",
            "redis+sentinel://h:0/m",
            "redis+sentinel://h:x/m",
            "redis+sentinel://,h/m",
            "redis+sentinel://h/m/db",
            "redis+sentinel://h/m/1/x",
            "redis+sentinel://:hunter2@h/m?replica_ack_ms=soon",
            "redis+sentinel://:hunter2@h/m?sentinel_auth=yes",
            "redis+sentinel://:hunter2@h/m?foo=1",
        ] {
            let e = parse_sentinel_url(bad).expect_err(bad);
            assert!(!e.contains("hunter2"), "{bad}: {e}");
        }
        let shown = format!("{:?}", parse_sentinel_url("redis+sentinel://:hunter2@h/m").unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}

#[cfg(test)]
mod primary_tests {
    use super::*;

    fn reply(pairs: &[(&str, &str)]) -> Vec<String> {
        pairs.iter().flat_map(|(k, v)| [k.to_string(), v.to_string()]).collect()
    }

    #[test]
    fn a_primary_is_named_unless_down() {
        let ok = named_primary(&reply(&[
            ("name", "m"),
            ("ip", "10.0.0.2"),
            ("port", "6380"),
            ("flags", "master"),
            ("config-epoch", "7"),
        ]))
        .unwrap();
        assert_eq!((ok.host.as_str(), ok.port, ok.config_epoch), ("10.0.0.2", 6380, 7));
        for flags in ["master,s_down", "master,s_down,o_down", "slave"] {
            assert!(named_primary(&reply(&[("ip", "h"), ("port", "1"), ("flags", flags)])).is_err(), "{flags}");
        }
        assert!(named_primary(&reply(&[("port", "1"), ("flags", "master")])).is_err());
    }
}
