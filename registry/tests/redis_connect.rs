//! Connecting to Redis: starting before Redis is up, AUTH, TLS with a private CA, the
//! `maxmemory-policy` check and its warning, the schema version, key prefixes and bad URLs.
//! Each test starts its own redis-server.

mod common;

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::*;
use streamfleet_registry::{
    EdgeRegistry, OperatorRegistry, RegistryError, RegistryStatus,
    redis::{EvictionPolicy, RedisConfig, RedisRegistry},
};
use streamfleet_testkit::RedisServer;
use tokio::time::Instant;

/// Captures this thread's log output (the tests run on a current-thread runtime).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt().with_writer(logs.clone()).with_ansi(false).finish();
        (logs.clone(), tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn connect_succeeds_while_redis_is_down_and_recovers_when_it_starts() {
    let mut server = RedisServer::start();
    server.kill();
    let t = Instant::now();
    let reg = RedisRegistry::connect(config(&server.url(), 300)).await.expect("Redis being down is not an error");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(reg.eviction_policy(), EvictionPolicy::NotChecked);
    let t = Instant::now();
    assert!(matches!(reg.ping().await, Err(RegistryError::Unavailable(_))));
    assert!(matches!(reg.lookup(&key("alpha")).await, Err(RegistryError::Unavailable(_))));
    assert!(t.elapsed() < Duration::from_secs(2));

    server.restart(); // comes up on the same port
    poll_until("the registry to reach Redis", Duration::from_secs(5), || async { reg.ping().await.ok() }).await;
    assert!(reg.epoch().await.unwrap() > 0, "the first connection created the epoch");
    assert_eq!(reg.eviction_policy(), EvictionPolicy::Policy("noeviction".into()));
    assert!(reg.eviction_policy().is_safe());
}

#[tokio::test]
async fn an_evicting_redis_is_accepted_with_a_loud_warning() {
    let (logs, _guard) = Logs::capture();
    let server = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]);
    let reg = connect(&server.url()).await;
    reg.ping().await.unwrap();
    assert_eq!(reg.eviction_policy(), EvictionPolicy::Policy("allkeys-lru".into()));
    assert!(!reg.eviction_policy().is_safe());
    let text = logs.text();
    assert!(text.contains("WARN") && text.contains("allkeys-lru") && text.contains("SECOND PUBLISHER"), "{text}");
}

#[tokio::test]
async fn a_disabled_config_command_is_reported_as_unchecked() {
    let (logs, _guard) = Logs::capture();
    let server = RedisServer::start_with(&["--rename-command", "CONFIG", ""]);
    let reg = connect(&server.url()).await;
    reg.ping().await.unwrap();
    assert!(matches!(reg.eviction_policy(), EvictionPolicy::Unreadable(_)), "{:?}", reg.eviction_policy());
    let text = logs.text();
    assert!(text.contains("WARN") && text.contains("could not read Redis maxmemory-policy"), "{text}");
}

#[tokio::test]
async fn a_registry_of_another_schema_version_is_refused() {
    let server = RedisServer::start();
    let _: () =
        redis::cmd("SET").arg("sf:v1:schema").arg("2").query_async(&mut raw(&server.url()).await).await.unwrap();
    match RedisRegistry::connect(RedisConfig::new(server.url())).await {
        Err(RegistryError::SchemaMismatch { found, expected }) => {
            assert_eq!((found.as_str(), expected.as_str()), ("2", "1"))
        }
        Err(other) => panic!("expected SchemaMismatch, got {other:?}"),
        Ok(_) => panic!("expected SchemaMismatch, got a registry"),
    }
    // A fresh Redis gets the version written; a second client agrees with it.
    let fresh = RedisServer::start();
    connect(&fresh.url()).await;
    let v: String = redis::cmd("GET").arg("sf:v1:schema").query_async(&mut raw(&fresh.url()).await).await.unwrap();
    assert_eq!(v, "1");
    connect(&fresh.url()).await.ping().await.unwrap();
}

#[tokio::test]
async fn passwords_come_from_the_url_or_the_config() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret-pass"]);
    let port = server.port();

    let mut cfg = RedisConfig::new(server.url());
    cfg.password = Some("s3cret-pass".into());
    RedisRegistry::connect(cfg).await.unwrap().ping().await.unwrap();

    let in_url = format!("redis://:s3cret-pass@127.0.0.1:{port}/");
    RedisRegistry::connect(RedisConfig::new(in_url)).await.unwrap().ping().await.unwrap();

    // The config's password overrides a stale one in the URL.
    let mut cfg = RedisConfig::new(format!("redis://:old-pass@127.0.0.1:{port}/"));
    cfg.password = Some("s3cret-pass".into());
    RedisRegistry::connect(cfg).await.unwrap().ping().await.unwrap();

    // Wrong or missing credentials fail at once (retrying cannot fix them) without echoing them.
    for url in [format!("redis://:wrong-pass@127.0.0.1:{port}/"), server.url()] {
        match RedisRegistry::connect(RedisConfig::new(url)).await {
            Err(e) => {
                let msg = e.to_string();
                assert!(matches!(e, RegistryError::Unavailable(_)), "{e:?}");
                assert!(!msg.contains("wrong-pass"), "{msg}");
            }
            Ok(_) => panic!("connect must refuse bad credentials"),
        }
    }
}

#[tokio::test]
async fn rediss_urls_use_tls_with_a_private_ca() {
    let server = RedisServer::start_tls(&[]);
    let mut cfg = RedisConfig::new(server.tls_url());
    cfg.tls_ca_file = Some(server.tls_ca_file());
    let reg = RedisRegistry::connect(cfg).await.unwrap();
    reg.end_quarantine().await.unwrap();
    reg.put_stream(&rec("alpha")).await.unwrap();
    let lease = reg.acquire(&key("alpha"), &who("edge-1"), &opts()).await.unwrap();
    assert!(reg.release(&lease).await.unwrap());

    // Without the CA the server's certificate is not trusted: nothing works, nothing hangs.
    let untrusting = RedisRegistry::connect(config(&server.tls_url(), 500)).await.unwrap();
    assert!(matches!(untrusting.ping().await, Err(RegistryError::Unavailable(_))));
    // And plain text to a TLS port fails the same way.
    let plain = format!("redis://127.0.0.1:{}/", server.port());
    let plain = RedisRegistry::connect(config(&plain, 300)).await.unwrap();
    assert!(matches!(plain.ping().await, Err(RegistryError::Unavailable(_))));
}

#[tokio::test]
async fn key_prefixes_keep_registries_apart() {
    let server = RedisServer::start();
    let prod = connect(&server.url()).await;
    let mut cfg = RedisConfig::new(server.url());
    cfg.key_prefix = "staging".into();
    let staging = RedisRegistry::connect(cfg).await.unwrap();
    for reg in [&prod, &staging] {
        reg.end_quarantine().await.unwrap();
        reg.put_stream(&rec("alpha")).await.unwrap(); // same key and name: no conflict across prefixes
    }
    let lease = prod.acquire(&key("alpha"), &who("edge-1"), &opts()).await.unwrap();
    let other = staging.acquire(&key("alpha"), &who("edge-2"), &opts()).await.unwrap();
    assert!(!other.took_over);
    assert!(prod.delete_stream(&id("alpha")).await.unwrap());
    assert_eq!(staging.list_streams().await.unwrap(), vec![rec("alpha")]);
    assert_eq!(staging.live_status(&id("alpha")).await.unwrap().holder.map(|h| h.edge), Some("edge-2".into()));
    assert!(!prod.release(&lease).await.unwrap(), "prod's stream and lease are gone");
}

#[tokio::test]
async fn bad_configuration_is_a_clear_error() {
    let invalid = |r: Result<RedisRegistry, RegistryError>| match r {
        Err(RegistryError::Invalid(m)) => m,
        Err(other) => panic!("expected Invalid, got {other:?}"),
        Ok(_) => panic!("expected Invalid, got a registry"),
    };
    let m = invalid(RedisRegistry::connect(RedisConfig::new("http://user:hunter2@redis:6379/")).await);
    assert!(m.contains("<redacted>") && !m.contains("hunter2"), "{m}");

    let mut cfg = RedisConfig::new("redis://127.0.0.1:1/");
    cfg.tls_ca_file = Some("/nonexistent/ca.crt".into());
    assert!(invalid(RedisRegistry::connect(cfg).await).contains("rediss://"));

    let mut cfg = RedisConfig::new("rediss://127.0.0.1:1/");
    cfg.tls_ca_file = Some("/nonexistent/ca.crt".into());
    assert!(invalid(RedisRegistry::connect(cfg).await).contains("/nonexistent/ca.crt"));

    let mut cfg = RedisConfig::new("redis://127.0.0.1:1/");
    cfg.command_timeout = Duration::ZERO;
    invalid(RedisRegistry::connect(cfg).await);

    // A zero TTL would be `PX 0`, which Redis rejects: refuse it before sending.
    let server = RedisServer::start();
    let reg = connect(&server.url()).await;
    reg.put_stream(&rec("alpha")).await.unwrap();
    let zero = streamfleet_registry::AcquireOptions { ttl: Duration::ZERO, ..opts() };
    assert!(matches!(reg.acquire(&key("alpha"), &who("e"), &zero).await, Err(RegistryError::Invalid(_))));
}

#[tokio::test]
async fn a_least_privilege_acl_user_is_enough() {
    // Keys limited to the prefix, no INFO and no CONFIG: every key the scripts touch must be
    // under `sf:` (Redis checks script key access against the ACL), and the optional checks
    // must degrade to warnings rather than block the connection.
    let (logs, _guard) = Logs::capture();
    let server = RedisServer::start_with(&[
        "--user",
        "edge",
        "on",
        ">edge-pass",
        "~sf:*",
        "+@read",
        "+@write",
        "+@scripting",
        "+@connection",
        "+time",
        "-info",
        "-config",
    ]);
    let url = format!("redis://edge:edge-pass@127.0.0.1:{}/", server.port());
    let reg = RedisRegistry::connect(RedisConfig::new(url)).await.unwrap();
    assert!(matches!(reg.eviction_policy(), EvictionPolicy::Unreadable(_)), "{:?}", reg.eviction_policy());
    reg.end_quarantine().await.unwrap();
    reg.put_stream(&rec("alpha")).await.unwrap();
    let lease = reg.acquire(&key("alpha"), &who("edge-1"), &opts()).await.unwrap();
    reg.set_viewers("edge-1", &[(id("alpha"), 2)], Duration::from_secs(10)).await.unwrap();
    assert_eq!(reg.live_status(&id("alpha")).await.unwrap().viewers, 2);
    assert!(reg.release(&lease).await.unwrap());
    assert_eq!(reg.list_streams().await.unwrap(), vec![rec("alpha")]);
    assert!(reg.delete_stream(&id("alpha")).await.unwrap());
    assert!(logs.text().contains("Redis refused INFO"), "{}", logs.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_under_the_client_is_replaced_within_the_same_call() {
    let mut server = RedisServer::start();
    let reg = connect(&server.url()).await;
    reg.end_quarantine().await.unwrap();
    reg.put_stream(&rec("alpha")).await.unwrap();
    let lease = reg.acquire(&key("alpha"), &who("edge-1"), &opts()).await.unwrap();
    // A restart closes the client's open connection (as a failover does): the next call finds a
    // dead connection, dials again and is answered, instead of failing once.
    tokio::task::block_in_place(|| server.restart());
    let renewed = reg.renew(&lease, Duration::from_secs(10)).await;
    assert!(renewed.is_ok(), "the first call after the restart failed: {renewed:?}");
    // The same through a connection the server itself closed while the server stays up (the
    // restart emptied it: the record is written again first).
    reg.put_stream(&rec("alpha")).await.unwrap();
    let mut admin = raw(&server.url()).await;
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(reg.lookup(&key("alpha")).await.is_ok(), "the first call after CLIENT KILL failed");
}
