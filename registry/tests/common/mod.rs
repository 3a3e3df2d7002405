//! Shared by the registry's integration tests: backends to run the contract against (a private
//! redis-server per test), record and publisher builders, and polling with a deadline (the
//! tests wait for conditions, never for a fixed time).

#![allow(dead_code)] // each test binary uses a different subset

use std::{sync::Arc, time::Duration};

use streamfleet_registry::{
    AcquireOptions, IngestProtocol, KeyHash, KeyScheme, PublisherInfo, SharedRegistry, StreamId, StreamRecord,
    TakeoverPolicy,
    redis::{RedisConfig, RedisRegistry},
};
use streamfleet_testkit::RedisServer;

/// A registry under test plus whatever must outlive it (its redis-server).
pub struct Backend {
    pub registry: SharedRegistry,
    pub server: Option<RedisServer>,
}

impl Backend {
    pub fn memory() -> Self {
        Backend { registry: Arc::new(streamfleet_registry::MemoryRegistry::new()), server: None }
    }

    /// A fresh redis-server and a registry on it, past the first-boot quarantine (nothing can
    /// hold a lease on a Redis that was just created).
    pub async fn redis() -> Self {
        let server = RedisServer::start();
        let reg = connect(&server.url()).await;
        reg.end_quarantine().await.expect("end quarantine");
        Backend { registry: Arc::new(reg), server: Some(server) }
    }

    pub fn registry(&self) -> SharedRegistry {
        self.registry.clone()
    }
}

pub async fn connect(url: &str) -> RedisRegistry {
    RedisRegistry::connect(RedisConfig::new(url)).await.expect("connect to the test redis-server")
}

pub fn config(url: &str, command_timeout_ms: u64) -> RedisConfig {
    let mut cfg = RedisConfig::new(url);
    cfg.command_timeout = Duration::from_millis(command_timeout_ms);
    cfg.connect_timeout = Duration::from_millis(command_timeout_ms);
    cfg
}

pub fn id(name: &str) -> StreamId {
    StreamId::new("media", name)
}

pub fn key(name: &str) -> KeyHash {
    KeyHash::of_key(&format!("publish-key-of-{name}"))
}

/// An enabled record for stream `media/<name>`, playback name `<name>`.
pub fn rec(name: &str) -> StreamRecord {
    StreamRecord {
        id: id(name),
        key_hash: key(name),
        key_scheme: KeyScheme::Sha256,
        playback_name: name.to_string(),
        enabled: true,
        max_viewers: Some(100),
        takeover: TakeoverPolicy::ReplaceIdle,
        generation: 1,
        srt_passphrase: None,
    }
}

pub fn rec_with(name: &str, takeover: TakeoverPolicy) -> StreamRecord {
    StreamRecord { takeover, ..rec(name) }
}

pub fn who(edge: &str) -> PublisherInfo {
    PublisherInfo {
        edge: edge.to_string(),
        remote_addr: Some(format!("192.0.2.1:{}", 40000 + edge.len())),
        relay_addr: Some(format!("{edge}.edges:1936")),
        protocol: None,
    }
}

/// [`who`], publishing over `protocol`.
pub fn who_over(edge: &str, protocol: IngestProtocol) -> PublisherInfo {
    PublisherInfo { protocol: Some(protocol), ..who(edge) }
}

pub fn opts() -> AcquireOptions {
    AcquireOptions {
        ttl: Duration::from_secs(10),
        idle_threshold: Duration::from_secs(1),
        takeover_cooldown: Duration::from_secs(5),
    }
}

/// Polls `check` every 20 ms until it yields `Some`, panicking after `within`.
#[allow(unused_imports)] // not every test binary polls
pub use streamfleet_testkit::wait::wait_until as poll_until;

/// A plain connection to a test Redis, to inspect or prepare keys behind the registry's back.
pub async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).expect("redis url").get_multiplexed_async_connection().await.expect("raw redis connection")
}

/// Collects keeper events with the instant each happened; `wait_for*` await one with a deadline,
/// and `take_log` hands over everything received so far (for a timeline around a fault).
pub struct EventTap {
    rx: tokio::sync::mpsc::UnboundedReceiver<(tokio::time::Instant, streamfleet_registry::KeeperEvent)>,
    log: Vec<(tokio::time::Instant, streamfleet_registry::KeeperEvent)>,
}

impl EventTap {
    pub fn new() -> (Self, streamfleet_registry::lease_keeper::KeeperObserver) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            EventTap { rx, log: Vec::new() },
            Arc::new(move |e| {
                let _ = tx.send((tokio::time::Instant::now(), e));
            }),
        )
    }

    async fn next(&mut self) -> Option<streamfleet_registry::KeeperEvent> {
        let (at, e) = self.rx.recv().await?;
        self.log.push((at, e));
        Some(e)
    }

    /// Every event received so far, oldest first; the tap then starts a new log, so a later
    /// `wait_for*` sees only events that happen after this call.
    pub fn take_log(&mut self) -> Vec<(tokio::time::Instant, streamfleet_registry::KeeperEvent)> {
        while let Ok((at, e)) = self.rx.try_recv() {
            self.log.push((at, e));
        }
        std::mem::take(&mut self.log)
    }

    /// Waits for any of `want` (or a loss, which is returned too), skipping other events;
    /// panics after `within`.
    pub async fn wait_for_any(
        &mut self,
        want: &[streamfleet_registry::KeeperEvent],
        within: Duration,
    ) -> streamfleet_registry::KeeperEvent {
        let found = tokio::time::timeout(within, async {
            while let Some(e) = self.next().await {
                if want.contains(&e) || matches!(e, streamfleet_registry::KeeperEvent::Lost(_)) {
                    return Some(e);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(e)) => e,
            other => panic!("none of the keeper events {want:?} came within {within:?}: {other:?}"),
        }
    }

    /// Waits for `want`, skipping other events; panics after `within`.
    pub async fn wait_for(&mut self, want: streamfleet_registry::KeeperEvent, within: Duration) {
        let found = tokio::time::timeout(within, async {
            while let Some(e) = self.next().await {
                if e == want {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(found, Ok(true), "keeper event {want:?} did not come within {within:?}");
    }
}
