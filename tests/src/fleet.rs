//! The fleet harness: one private `redis-server` (or, with [`FleetConfig::sentinel`], three Redis
//! and three Sentinels, reached through a `redis+sentinel://` URL), the streams of a manifest file applied with
//! `streamfleet-operator sync` (once, or kept running with `--watch`), and N `streamfleet-edge`
//! processes on `--redis-url`, each optionally reaching Redis through its own [`TcpProxy`] so a
//! test can partition exactly one edge from Redis. Short lease TTLs keep the tests fast. Every
//! process is killed when the fleet is dropped; if the test failed, the edges' logs are printed.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use streamfleet_registry::{
    LiveStatus, RegistryStatus, StreamId,
    redis::{RedisConfig, RedisRegistry},
};
use streamfleet_testkit::{RedisServer, SentinelCluster, SentinelTiming, TcpProxy};

use crate::{
    binaries::{Binaries, binaries_async},
    census::Census,
    edge::EdgeProcess,
    manifest::{ScratchDir, StreamSpec, render},
    operator::{SyncWatch, sync_once},
};

/// The shared relay secret every test edge gets (cross-edge play authenticates with it).
pub const RELAY_SECRET: &str = "fleet-test-relay-secret";

/// How a fleet is set up.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub edges: usize,
    /// `--lease-ttl` of every edge (renew every TTL/3, stop TTL/3 before it could expire).
    pub lease_ttl: Duration,
    /// `--drain-timeout` of every edge.
    pub drain_timeout: Duration,
    /// Each edge reaches Redis through its own cuttable proxy.
    pub proxied: bool,
    /// Keep `streamfleet-operator sync --watch` running (it rewrites the records after a Redis
    /// restart); otherwise `sync` runs once.
    pub watch_sync: bool,
    /// Declare the fresh Redis a first install (`RedisRegistry::end_quarantine`), as an install
    /// that waited out its first TTL would be. Off, new grants wait one TTL after start.
    pub end_quarantine: bool,
    /// More flags for every edge.
    pub edge_args: Vec<String>,
    /// Run the registry on a Sentinel-managed Redis (3 Redis + 3 Sentinels) with this timing;
    /// the edges, sync and the test's own client all go through the Sentinels. Not with `proxied`.
    pub sentinel: Option<SentinelTiming>,
}

/// The fleet's Redis: one server, or a Sentinel-managed set.
pub enum FleetRedis {
    Single(RedisServer),
    Sentinel(SentinelCluster),
}

impl FleetRedis {
    /// The URL edges and sync use.
    pub fn url(&self) -> String {
        match self {
            FleetRedis::Single(r) => r.url(),
            FleetRedis::Sentinel(c) => c.url(),
        }
    }

    fn single(&mut self) -> &mut RedisServer {
        match self {
            FleetRedis::Single(r) => r,
            FleetRedis::Sentinel(_) => panic!("this fleet runs on Sentinel, not on one redis-server"),
        }
    }

    /// The Sentinel-managed set (panics on a single-server fleet).
    pub fn sentinel(&mut self) -> &mut SentinelCluster {
        match self {
            FleetRedis::Sentinel(c) => c,
            FleetRedis::Single(_) => panic!("this fleet runs on one redis-server, not on Sentinel"),
        }
    }

    /// SIGKILL the single server.
    pub fn kill(&mut self) {
        self.single().kill()
    }

    /// Restart the single server, empty.
    pub fn restart(&mut self) {
        self.single().restart()
    }
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            edges: 3,
            lease_ttl: Duration::from_secs(3),
            drain_timeout: Duration::from_secs(10),
            proxied: false,
            watch_sync: false,
            end_quarantine: true,
            edge_args: Vec::new(),
            sentinel: None,
        }
    }
}

pub struct Fleet {
    pub config: FleetConfig,
    pub redis: FleetRedis,
    pub edges: Vec<EdgeProcess>,
    /// One per edge, index-aligned, when `proxied`.
    pub proxies: Vec<TcpProxy>,
    pub sync_watch: Option<SyncWatch>,
    pub manifests: PathBuf,
    pub streams: Vec<StreamSpec>,
    pub binaries: &'static Binaries,
    /// The test's own view of the registry (never through a proxy).
    registry: RedisRegistry,
    _dir: ScratchDir,
}

impl Fleet {
    /// Starts Redis, applies `streams` with the operator's `sync`, starts the edges and waits
    /// until every edge is ready.
    pub async fn start(config: FleetConfig, streams: &[StreamSpec]) -> Fleet {
        let binaries = binaries_async().await;
        let redis = match config.sentinel {
            None => FleetRedis::Single(
                tokio::task::spawn_blocking(RedisServer::start)
                    .await
                    .unwrap_or_else(|e| panic!("starting redis-server panicked: {e}")),
            ),
            Some(timing) => {
                assert!(!config.proxied, "a Sentinel fleet has no per-edge proxies");
                FleetRedis::Sentinel(
                    tokio::task::spawn_blocking(move || {
                        // As docs/deploy.md recommends for the registry under Sentinel.
                        SentinelCluster::start_with(
                            timing,
                            &["--min-replicas-to-write", "1", "--min-replicas-max-lag", "5"],
                        )
                    })
                    .await
                    .unwrap_or_else(|e| panic!("starting Redis with Sentinels panicked: {e}")),
                )
            }
        };
        let dir = ScratchDir::new();
        let manifests = dir.write("streams.yaml", &render(streams));
        let sync_watch = if config.watch_sync {
            Some(SyncWatch::start(&binaries.operator, &manifests, &redis.url(), Duration::from_millis(100)).await)
        } else {
            let report = sync_once(&binaries.operator, &manifests, &redis.url()).await;
            assert!(report.contains(&format!("{} applied, 0 failed", streams.len())), "sync report:\n{report}");
            None
        };
        let registry = RedisRegistry::connect(RedisConfig::new(redis.url()))
            .await
            .unwrap_or_else(|e| panic!("connect to the test redis: {e}"));
        if config.end_quarantine {
            registry.end_quarantine().await.unwrap_or_else(|e| panic!("end the first-install quarantine: {e}"));
        }

        let mut proxies = Vec::new();
        let mut starting = Vec::new();
        for i in 0..config.edges {
            let url = if let (true, FleetRedis::Single(server)) = (config.proxied, &redis) {
                let redis_addr: SocketAddr =
                    server.addr().parse().unwrap_or_else(|e| panic!("redis address {}: {e}", server.addr()));
                let proxy = TcpProxy::start(redis_addr)
                    .await
                    .unwrap_or_else(|e| panic!("start the Redis proxy of edge {i}: {e}"));
                let url = proxy.url();
                proxies.push(proxy);
                url
            } else {
                redis.url()
            };
            let mut args: Vec<String> = vec![
                "--redis-url".into(),
                url,
                "--lease-ttl".into(),
                format!("{}ms", config.lease_ttl.as_millis()),
                "--drain-timeout".into(),
                format!("{}ms", config.drain_timeout.as_millis()),
            ];
            args.extend(config.edge_args.iter().cloned());
            let id = format!("edge-{}", (b'a' + i as u8) as char);
            starting.push(async move {
                EdgeProcess::spawn(&binaries.edge, &id, &args, &[("STREAMFLEET_RELAY_SECRET", RELAY_SECRET)]).await
            });
        }
        let edges = futures::future::join_all(starting).await;
        let fleet = Fleet {
            config,
            redis,
            edges,
            proxies,
            sync_watch,
            manifests,
            streams: streams.to_vec(),
            binaries,
            registry,
            _dir: dir,
        };
        for edge in &fleet.edges {
            edge.wait_readyz(200, Duration::from_secs(20)).await;
        }
        fleet
    }

    /// The test's registry client (straight to Redis).
    pub fn registry(&self) -> &RedisRegistry {
        &self.registry
    }

    /// The registry's live state of stream `name` (namespace `default`).
    pub async fn live_status(&self, name: &str) -> Option<LiveStatus> {
        self.registry.live_status(&StreamId::new("default", name)).await.ok()
    }

    /// The edge id holding `name`'s lease, per the registry.
    pub async fn holder_edge(&self, name: &str) -> Option<String> {
        self.live_status(name).await?.holder.map(|h| h.edge)
    }

    /// The publish key of stream `name`.
    pub fn key(&self, name: &str) -> String {
        self.streams
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.publish_key.clone())
            .unwrap_or_else(|| panic!("no stream {name} in this fleet"))
    }

    /// `streamfleet_edge_publishers_active` of every edge that answers.
    pub async fn publishers_active(&self) -> Vec<f64> {
        let mut v = Vec::new();
        for e in &self.edges {
            v.push(e.metric("streamfleet_edge_publishers_active").await);
        }
        v
    }

    /// Starts sampling every edge for streams published on two edges at once.
    pub fn census(&self) -> Census {
        Census::start(self.edges.iter().map(|e| (e.id.clone(), e.http)).collect())
    }

    /// The sum of one series over all edges.
    pub async fn metric_sum(&self, series: &str) -> f64 {
        let mut sum = 0.0;
        for e in &self.edges {
            sum += e.metric(series).await;
        }
        sum
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for e in &self.edges {
                eprintln!("----- log of {} -----\n{}", e.id, e.logs());
            }
            if let Some(w) = &self.sync_watch {
                eprintln!("----- sync --watch -----\n{}", w.output());
            }
        }
    }
}
