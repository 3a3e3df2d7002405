//! Two edge processes sharing one private redis-server: publish admission is cluster-wide, and
//! readiness follows the registry's reachability.

mod common;

use std::time::Duration;

use common::{Edge, STREAMS_YAML, ffmpeg_publish, finish, wait_for};
use streamfleet_registry::{
    Registry, StreamId,
    manifest::load_manifests,
    redis::{RedisConfig, RedisRegistry},
};
use streamfleet_testkit::RedisServer;
use tokio::time::Instant;

/// A fresh Redis with the test streams written into it, as `streamfleet-operator sync` would.
async fn seeded_redis() -> (RedisServer, RedisRegistry) {
    let redis = RedisServer::start();
    let registry = RedisRegistry::connect(RedisConfig::new(redis.url())).await.expect("connect to redis");
    // A brand-new Redis has never granted a lease, so there is nothing to quarantine.
    registry.end_quarantine().await.expect("end quarantine");
    for record in load_manifests(STREAMS_YAML).expect("test manifests") {
        registry.put_stream(&record).await.expect("put stream");
    }
    (redis, registry)
}

async fn edge(redis: &RedisServer, id: &str) -> Edge {
    Edge::start_with(vec!["--redis-url".into(), redis.url(), "--edge-id".into(), id.into()]).await
}

#[tokio::test]
async fn a_publisher_live_on_one_edge_blocks_the_same_key_on_another() {
    let (redis, registry) = seeded_redis().await;
    let a = edge(&redis, "edge-a").await;
    let b = edge(&redis, "edge-b").await;
    for e in [&a, &b] {
        wait_for("edge ready", Duration::from_secs(10), || async { (e.get("/readyz").await.0 == 200).then_some(()) })
            .await;
    }

    let mut first = ffmpeg_publish(&a.url("demo-publish-key"), 30, 30);
    a.wait_live("demo", 30, Duration::from_secs(20)).await;
    let status = registry.live_status(&StreamId::new("default", "demo")).await.unwrap();
    assert_eq!(status.holder.map(|h| h.edge).as_deref(), Some("edge-a"));

    let second = ffmpeg_publish(&b.url("demo-publish-key"), 5, 30);
    let (ok, stderr) = finish(second, Duration::from_secs(15)).await;
    assert!(!ok, "second publisher on edge-b must be rejected");
    assert!(stderr.contains("already being published (on edge edge-a"), "stderr: {stderr}");
    assert_eq!(b.metric("streamfleet_edge_publish_rejections_total{reason=\"already_active\"}").await, 1.0);
    assert_eq!(a.metric("streamfleet_edge_publishers_active").await, 1.0, "edge-a's publisher undisturbed");

    // Once the first publisher stops, edge-a releases the lease at once and edge-b admits.
    first.kill().await.unwrap();
    first.wait().await.ok();
    let t0 = Instant::now();
    let third = ffmpeg_publish(&b.url("demo-publish-key"), 30, 30);
    b.wait_live("demo", 1, Duration::from_secs(5)).await;
    let took = t0.elapsed();
    eprintln!("cross-edge republish admitted after {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let status = registry.live_status(&StreamId::new("default", "demo")).await.unwrap();
    assert_eq!(status.holder.map(|h| h.edge).as_deref(), Some("edge-b"));
    drop(third);
}

#[tokio::test]
async fn readiness_follows_the_registry() {
    let (mut redis, _registry) = seeded_redis().await;
    let e = edge(&redis, "edge-r").await;
    wait_for("ready", Duration::from_secs(10), || async { (e.get("/readyz").await.0 == 200).then_some(()) }).await;
    redis.kill();
    wait_for("not ready without redis", Duration::from_secs(10), || async {
        (e.get("/readyz").await.0 == 503).then_some(())
    })
    .await;
    assert_eq!(e.metric("streamfleet_edge_registry_up").await, 0.0);
    assert_eq!(e.get("/healthz").await.0, 200, "alive even when not ready");
    redis.restart();
    wait_for("ready again", Duration::from_secs(15), || async { (e.get("/readyz").await.0 == 200).then_some(()) })
        .await;
}
