//! Two edge processes sharing one private redis-server: publish admission is cluster-wide, and
//! readiness follows the registry's reachability.

mod common;

use std::time::Duration;

use common::{Edge, STREAMS_YAML, ffmpeg_publish, finish};
use streamfleet_registry::{
    OperatorRegistry, RegistryStatus, StreamId,
    manifest::load_manifests,
    redis::{RedisConfig, RedisRegistry},
};
use streamfleet_testkit::RedisServer;
use streamfleet_testkit::{rtmp_client::fake_avc, wait::wait_until};
use tokio::time::Instant;

/// A fresh Redis with the test streams written into it, as `streamfleet-operator sync` would.
async fn seeded_redis() -> (RedisServer, RedisRegistry) {
    let redis = RedisServer::start();
    let registry = RedisRegistry::connect(RedisConfig::new(redis.url())).await.expect("connect to redis");
    // A brand-new Redis has never granted a lease, so there is nothing to quarantine.
    registry.end_quarantine().await.expect("end quarantine");
    for record in load_manifests(STREAMS_YAML, &streamfleet_registry::KeyHasher::legacy()).expect("test manifests") {
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
        wait_until("edge ready", Duration::from_secs(10), || async { (e.get("/readyz").await.0 == 200).then_some(()) })
            .await;
    }

    let mut first = ffmpeg_publish(&a.url("demo-publish-key"), 30, 30);
    a.wait_live("demo", 30, Duration::from_secs(20)).await;
    let status = registry.live_status(&StreamId::new("default", "demo")).await.unwrap();
    let holder = status.holder.expect("a holder");
    assert_eq!((holder.edge.as_str(), holder.protocol.map(|p| p.as_str())), ("edge-a", Some("rtmp")));

    let second = ffmpeg_publish(&b.url("demo-publish-key"), 5, 30);
    let (ok, stderr) = finish(second, Duration::from_secs(15)).await;
    assert!(!ok, "second publisher on edge-b must be rejected");
    assert!(stderr.contains("already being published (over rtmp on edge edge-a"), "stderr: {stderr}");
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
    wait_until("ready", Duration::from_secs(10), || async { (e.get("/readyz").await.0 == 200).then_some(()) }).await;
    let mut publisher = common::RawClient::connect(e.rtmp).await;
    publisher.publish("demo-publish-key").await.unwrap();
    publisher.send_video(fake_avc(true, 100), 0).await;
    e.wait_live("demo", 1, Duration::from_secs(5)).await;
    redis.kill();
    wait_until("not ready without redis", Duration::from_secs(10), || async {
        (e.get("/readyz").await.0 == 503).then_some(())
    })
    .await;
    assert_eq!(e.metric("streamfleet_edge_registry_up").await, 0.0);
    assert_eq!(e.get("/healthz").await.0, 200, "alive even when not ready");
    // A stream live here stays watchable (until its lease can no longer be proven)...
    let mut player = common::RawClient::connect(e.rtmp).await;
    player.play("demo").await.expect("local stream playable without the registry");
    publisher.send_video(fake_avc(false, 50), 33).await;
    player
        .until("video", |ev| matches!(ev, rml_rtmp::sessions::ClientSessionEvent::VideoDataReceived { .. }))
        .await
        .expect("player gets video");
    // ...but new publishers are refused (fail closed), after a short retry.
    let t0 = Instant::now();
    let mut refused = common::RawClient::connect(e.rtmp).await;
    let err = refused.publish("solo-publish-key").await.expect_err("no registry, no admission");
    assert!(err.contains("NetStream.Failed"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(6), "refusal took {:?}", t0.elapsed());
    assert_eq!(e.metric("streamfleet_edge_publish_rejections_total{reason=\"unavailable\"}").await, 1.0);
    redis.restart();
    wait_until("ready again", Duration::from_secs(15), || async { (e.get("/readyz").await.0 == 200).then_some(()) })
        .await;
}

#[tokio::test]
async fn sigterm_tells_clients_and_releases_the_lease_at_once() {
    let (redis, _registry) = seeded_redis().await;
    let mut a = edge(&redis, "edge-a").await;
    let b = edge(&redis, "edge-b").await;
    let mut publisher = common::RawClient::connect(a.rtmp).await;
    publisher.publish("demo-publish-key").await.expect("publish on edge-a");
    publisher.send_video(fake_avc(true, 100), 0).await;
    let mut player = common::RawClient::connect(a.rtmp).await;
    player.play("demo").await.expect("play on edge-a");

    let t0 = Instant::now();
    let status = tokio::process::Command::new("kill").args(["-TERM", &a.pid.to_string()]).status().await.unwrap();
    assert!(status.success());
    assert!(publisher.closed_within(Duration::from_secs(5)).await);
    assert!(player.closed_within(Duration::from_secs(5)).await);
    let told = |c: &common::RawClient, code: &str| {
        c.events.iter().any(
            |e| matches!(e, rml_rtmp::sessions::ClientSessionEvent::UnhandleableOnStatusCode { code: c } if c == code),
        )
    };
    assert!(told(&publisher, "NetStream.Unpublish.Success"), "{:?}", publisher.events);
    assert!(told(&player, "NetStream.Play.Stop"), "{:?}", player.events);
    // The lease was released during the drain: edge-b admits the key immediately.
    let mut next = common::RawClient::connect(b.rtmp).await;
    next.publish("demo-publish-key").await.expect("admitted on edge-b");
    let took = t0.elapsed();
    eprintln!("publisher admitted on edge-b {took:?} after SIGTERM to edge-a");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let exit = tokio::time::timeout(Duration::from_secs(10), a.child.wait()).await.expect("edge-a exits").unwrap();
    assert!(exit.success(), "{exit}");
}

#[tokio::test]
async fn a_revoked_lease_drops_the_publisher_and_players_wait_for_a_republish() {
    let (redis, registry) = seeded_redis().await;
    // TTL 3 s: renew every second, so a revoke is noticed within about a second.
    let e = Edge::start_with(vec![
        "--redis-url".into(),
        redis.url(),
        "--edge-id".into(),
        "edge-l".into(),
        "--lease-ttl".into(),
        "3s".into(),
    ])
    .await;
    let mut publisher = common::RawClient::connect(e.rtmp).await;
    publisher.publish("demo-publish-key").await.unwrap();
    publisher.send_video(fake_avc(true, 100), 0).await;
    let mut player = common::RawClient::connect(e.rtmp).await;
    player.play("demo").await.unwrap();
    // Keep media flowing so only the lease loss can end the publisher.
    let id = StreamId::new("default", "demo");
    let t0 = Instant::now();
    assert!(registry.revoke(&id).await.unwrap());
    let mut ts = 0;
    let dropped = loop {
        ts += 33;
        publisher.send_video(fake_avc(false, 50), ts).await;
        if publisher.closed_within(Duration::from_millis(33)).await {
            break t0.elapsed();
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "publisher not dropped after revoke");
    };
    eprintln!("publisher dropped {dropped:?} after its lease was revoked");
    assert_eq!(e.metric("streamfleet_edge_lease_losses_total{reason=\"revoked\"}").await, 1.0);
    // The player stays, waiting; a republish resumes it on the same connection.
    assert!(!player.closed_within(Duration::from_millis(100)).await);
    let mut again = common::RawClient::connect(e.rtmp).await;
    again.publish("demo-publish-key").await.expect("republish");
    again.send_video(fake_avc(true, 100), 0).await;
    player.events.clear();
    player
        .until("video after republish", |ev| {
            matches!(ev, rml_rtmp::sessions::ClientSessionEvent::VideoDataReceived { .. })
        })
        .await
        .expect("player resumed");
}

#[tokio::test]
async fn keyed_and_legacy_records_both_admit_during_the_migration() {
    // `demo` keeps the record an operator without a key-hash secret wrote (unsalted SHA-256);
    // `solo` is rewritten with the keyed hash, as an operator with the secret does.
    let (redis, registry) = seeded_redis().await;
    let secret = "edge-redis-test-key-hash-secret";
    let keyed = streamfleet_registry::KeyHasher::new(Some(streamfleet_registry::KeyHashSecret::new(secret).unwrap()));
    let solo = load_manifests(STREAMS_YAML, &keyed)
        .expect("test manifests")
        .into_iter()
        .find(|r| r.playback_name == "solo")
        .expect("the solo stream");
    registry.put_stream(&solo).await.expect("rewrite solo with the keyed hash");
    let secret_file = common::TempFile::new("key-hash-secret", &format!("{secret}\n"));
    let with_secret = Edge::start_with(vec![
        "--redis-url".into(),
        redis.url(),
        "--edge-id".into(),
        "edge-keyed".into(),
        "--key-hash-secret-file".into(),
        secret_file.0.display().to_string(),
    ])
    .await;
    let without = edge(&redis, "edge-legacy").await;

    let mut legacy_publisher = common::RawClient::connect(with_secret.rtmp).await;
    legacy_publisher.publish("demo-publish-key").await.expect("a legacy record still admits its key");
    let mut keyed_publisher = common::RawClient::connect(with_secret.rtmp).await;
    keyed_publisher.publish("solo-publish-key").await.expect("a keyed record admits its key");
    assert_eq!(with_secret.metric("streamfleet_edge_publish_legacy_key_hash_total").await, 1.0);
    assert_eq!(with_secret.metric("streamfleet_edge_publishers_active").await, 2.0);

    // An edge without the secret cannot find a keyed record: the mistake the start-up warns of.
    let mut stranded = common::RawClient::connect(without.rtmp).await;
    let refused = stranded.publish("solo-publish-key").await.expect_err("no secret, no keyed record");
    assert!(refused.contains("Publish.Denied"), "an unknown key is denied: {refused}");
    assert_eq!(without.metric("streamfleet_edge_publish_rejections_total{reason=\"unknown_key\"}").await, 1.0);
    assert!(without.logs().contains("no key-hash secret"), "the edge without a secret says so at start");
    assert!(!with_secret.logs().contains(secret), "the secret is never logged");
    assert!(!with_secret.logs().contains("demo-publish-key"), "keys are never logged");
}
