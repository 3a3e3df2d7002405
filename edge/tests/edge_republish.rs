//! Sequential republish with one key: connect → publish → close, again and again, as an encoder
//! that reconnects at once does. The next connection can reach admission while the edge is still
//! releasing the previous publisher's lease; it must be admitted, and not held back by the
//! takeover poll, on both registry backends (a bound on a hang: the deterministic check of the
//! wait for a release in flight is `admission::tests`). A publisher that is still connected keeps
//! its protection.

mod common;

use std::time::Duration;

use common::{Edge, RawClient, STREAMS_YAML};
use rml_rtmp::sessions::ClientSessionResult;
use streamfleet_registry::{
    OperatorRegistry,
    manifest::load_manifests,
    redis::{RedisConfig, RedisRegistry},
};
use streamfleet_testkit::RedisServer;
use streamfleet_testkit::{rtmp_client::fake_avc, wait::wait_until};
use tokio::{
    io::AsyncWriteExt,
    time::{Instant, timeout},
};

const CYCLES: usize = 200;
/// A bound on a hang (the takeover wait is 2 s), not a performance target.
const CYCLE_LIMIT: Duration = Duration::from_millis(500);

/// `CYCLES` connect → publish → close round trips with `key`; every one must be admitted in time.
async fn cycles(edge: &Edge, key: &str) {
    let mut slowest = Duration::ZERO;
    for i in 0..CYCLES {
        let t0 = Instant::now();
        let admitted = timeout(CYCLE_LIMIT * 4, async {
            let mut client = RawClient::connect(edge.rtmp).await;
            client.publish(key).await?;
            Ok::<_, String>(client)
        })
        .await;
        let took = t0.elapsed();
        let mut client = match admitted {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => panic!("{key}: cycle {i} refused after {took:?}: {e}\n{}", edge.logs()),
            Err(_) => panic!("{key}: cycle {i} not admitted within {:?}\n{}", CYCLE_LIMIT * 4, edge.logs()),
        };
        assert!(took < CYCLE_LIMIT, "{key}: cycle {i} took {took:?}");
        slowest = slowest.max(took);
        // Stop as an encoder does (deleteStream, then close) and reconnect at once; every other
        // cycle just drops the socket, like an encoder that is killed.
        if i % 2 == 0 {
            for r in client.session.stop_publishing().expect("deleteStream") {
                if let ClientSessionResult::OutboundResponse(p) = r {
                    client.socket.write_all(&p.bytes).await.expect("send deleteStream");
                }
            }
            client.socket.shutdown().await.ok();
        }
        drop(client);
    }
    eprintln!("{key}: {CYCLES} sequential republishes, slowest {slowest:?}");
    let refused = edge.metric("streamfleet_edge_publish_rejections_total{reason=\"already_active\"}").await;
    assert_eq!(refused, 0.0, "{key}: already_active refusals");
}

/// A live publisher (connection open) on a Reject stream still turns a second one away.
async fn live_publisher_still_protected(edge: &Edge) {
    let mut live = RawClient::connect(edge.rtmp).await;
    live.publish("solo-publish-key").await.expect("first publisher admitted");
    live.send_video(fake_avc(true, 100), 0).await;
    let mut second = RawClient::connect(edge.rtmp).await;
    let refused = second.publish("solo-publish-key").await.expect_err("second publisher refused");
    assert!(refused.contains("BadName"), "{refused}");
    assert_eq!(edge.metric("streamfleet_edge_publishers_active").await, 1.0, "live publisher undisturbed");
}

#[tokio::test]
async fn sequential_republish_is_admitted_with_the_memory_registry() {
    let edge = Edge::start(&["--edge-id", "edge-seq"]).await;
    cycles(&edge, "demo-publish-key").await;
    live_publisher_still_protected(&edge).await;
}

#[tokio::test]
async fn sequential_republish_is_admitted_with_the_redis_registry() {
    let redis = RedisServer::start();
    let registry = RedisRegistry::connect(RedisConfig::new(redis.url())).await.expect("connect to redis");
    // A brand-new Redis has never granted a lease, so there is nothing to quarantine.
    registry.end_quarantine().await.expect("end quarantine");
    for record in load_manifests(STREAMS_YAML, &streamfleet_registry::KeyHasher::legacy()).expect("test manifests") {
        registry.put_stream(&record).await.expect("put stream");
    }
    let edge = Edge::start_with(vec!["--redis-url".into(), redis.url(), "--edge-id".into(), "edge-seq".into()]).await;
    wait_until("edge ready", Duration::from_secs(10), || async { (edge.get("/readyz").await.0 == 200).then_some(()) })
        .await;
    cycles(&edge, "demo-publish-key").await;
    live_publisher_still_protected(&edge).await;
}
