//! The key-hash migration on a live fleet. Records are written by a `sync` without the
//! key-hash secret (the legacy unsalted SHA-256), as every install before it did; the edges
//! already have the secret. Then `sync --watch` gets the secret too: every record is rewritten
//! with the keyed hash while its publisher keeps streaming, and when Redis then restarts empty
//! (the records come back keyed only) the publisher admitted on the legacy record still
//! reclaims its lease, because its lease carries the key's keyed hash as well.

use std::time::Duration;

use streamfleet_registry::OperatorRegistry;
use streamfleet_testkit::wait::wait_until;
use streamfleet_tests::{
    ffmpeg,
    fleet::{Fleet, FleetConfig},
    manifest::{ScratchDir, StreamSpec},
    operator::SyncWatch,
};

/// The fast profile: renew every 2 s, stop 4 s after the last good renew.
const TTL: Duration = Duration::from_secs(6);
const SECRET: &str = "fleet-test-key-hash-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn legacy_records_are_rehashed_under_a_live_publisher_which_then_survives_a_redis_restart() {
    let dir = ScratchDir::new();
    let secret_file = dir.write("key-hash-secret", &format!("{SECRET}\n"));
    let edge_args = vec!["--key-hash-secret-file".to_string(), secret_file.display().to_string()];
    let config = FleetConfig { edges: 2, lease_ttl: TTL, edge_args, ..FleetConfig::default() };
    let mut fleet = Fleet::start(config, &[StreamSpec::new("news"), StreamSpec::new("sport")]).await;
    let news = streamfleet_registry::StreamId::new("default", "news");
    let legacy = fleet.registry().get_stream(&news).await.expect("get").expect("news record");
    assert!(legacy.key_scheme.is_legacy(), "sync without a secret writes the legacy hash");

    let key = fleet.key("news");
    let mut encoder = ffmpeg::publish(&fleet.edges[0].url(&key), 120);
    fleet.edges[0].wait_live("news", 15, Duration::from_secs(20)).await;
    assert_eq!(fleet.edges[0].metric("streamfleet_edge_publish_legacy_key_hash_total").await, 1.0);
    let before = wait_until("news held by edge-a", Duration::from_secs(5), || async {
        fleet.live_status("news").await?.holder.filter(|h| h.edge == "edge-a")
    })
    .await;

    // The operator side gets the secret: both records are rewritten, nobody is disconnected.
    let sync = SyncWatch::start_with_env(
        &fleet.binaries.operator,
        &fleet.manifests,
        &fleet.redis.url(),
        Duration::from_millis(100),
        &[("STREAMFLEET_KEY_HASH_SECRET", SECRET)],
    )
    .await;
    let output = sync.output();
    assert_eq!(output.matches("(key hash upgraded to hmac-sha256:").count(), 2, "{output}");
    assert!(!output.contains("key rotated") && !output.contains(SECRET), "{output}");
    let keyed = fleet.registry().get_stream(&news).await.expect("get").expect("news record");
    assert!(!keyed.key_scheme.is_legacy() && keyed.key_hash != legacy.key_hash);
    let holder = fleet.live_status("news").await.and_then(|s| s.holder).expect("still held");
    assert_eq!((holder.edge.as_str(), holder.fence), ("edge-a", before.fence), "the same grant: no revocation");
    let frames = fleet.edges[0].live_frames("news").await.expect("news still live on edge-a");
    fleet.edges[0].wait_live("news", frames + 15, Duration::from_secs(10)).await;

    // A new publisher of the other stream is admitted by the keyed hash alone, on either edge.
    let mut sport = ffmpeg::publish(&fleet.edges[1].url(&fleet.key("sport")), 60);
    fleet.edges[1].wait_live("sport", 5, Duration::from_secs(20)).await;
    assert_eq!(fleet.edges[1].metric("streamfleet_edge_publish_legacy_key_hash_total").await, 0.0);

    // Redis restarts empty right after a renew; sync rewrites the records (keyed only). The
    // news publisher's lease names the legacy hash, which no record carries any more.
    let renewals = fleet.edges[0].metric("streamfleet_edge_lease_renewals_total").await;
    wait_until("a lease renewal", TTL, || async {
        (fleet.edges[0].metric("streamfleet_edge_lease_renewals_total").await > renewals).then_some(())
    })
    .await;
    let passes = sync.passes();
    tokio::task::block_in_place(|| fleet.redis.kill());
    tokio::task::block_in_place(|| fleet.redis.restart());
    sync.wait_passes(passes + 1, Duration::from_secs(10)).await;
    let after = wait_until("edge-a to reclaim news", TTL, || async {
        fleet.live_status("news").await?.holder.filter(|h| h.edge == "edge-a")
    })
    .await;
    assert!(after.fence > before.fence, "a reclaimed grant ({} after {})", after.fence, before.fence);
    assert_eq!(fleet.edges[0].metric("streamfleet_edge_lease_losses_total{reason=\"expired\"}").await, 0.0);
    assert_eq!(fleet.edges[0].metric("streamfleet_edge_lease_losses_total{reason=\"revoked\"}").await, 0.0);
    let frames = fleet.edges[0].live_frames("news").await.expect("news still live on edge-a");
    fleet.edges[0].wait_live("news", frames + 15, Duration::from_secs(10)).await;
    assert!(ffmpeg::running(&mut encoder), "the encoder was never disconnected");
    assert!(ffmpeg::running(&mut sport), "the sport encoder was never disconnected");
}
