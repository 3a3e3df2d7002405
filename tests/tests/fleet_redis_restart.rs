//! Redis restarted empty (no persistence) under a live fleet, with `streamfleet-operator sync
//! --watch` running as a VM install would run it. While Redis is down every edge reports not
//! ready; once it is back they are ready again without a restart. The live publisher keeps
//! its stream: its edge reclaims the lease under the new epoch (with a larger fence) once sync
//! has rewritten the records. Newcomers wait out the restart quarantine (one TTL), and no
//! stream ever has two publishers.

use std::time::Duration;

use streamfleet_testkit::{
    rtmp_client::{Refusal, RtmpClient, publish_until_admitted},
    wait::{ms, wait_until},
};
use streamfleet_tests::{
    ffmpeg,
    fleet::{Fleet, FleetConfig},
    manifest::StreamSpec,
};
use tokio::time::Instant;

/// The fast profile: renew every 2 s, stop 4 s after the last good renew.
const TTL: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_redis_restarts_empty_live_publishers_keep_their_streams_and_no_stream_gets_two() {
    // A fresh install (quarantine ended once, at start); the restart's quarantine stays on.
    let config = FleetConfig { lease_ttl: TTL, watch_sync: true, ..FleetConfig::default() };
    let mut fleet = Fleet::start(config, &[StreamSpec::new("news"), StreamSpec::new("sport")]).await;
    let (news_key, sport_key) = (fleet.key("news"), fleet.key("sport"));
    let pids: Vec<u32> = fleet.edges.iter().map(|e| e.pid).collect();

    let mut encoder = ffmpeg::publish(&fleet.edges[0].url(&news_key), 120);
    fleet.edges[0].wait_live("news", 15, Duration::from_secs(20)).await;
    let before = wait_until("news held by edge-a", Duration::from_secs(5), || async {
        fleet.live_status("news").await?.holder.filter(|h| h.edge == "edge-a")
    })
    .await;
    let census = fleet.census();

    // Kill Redis right after a renew, as late as possible in the holder's margin: the holder
    // then has its whole TTL − TTL/3 to get its lease back.
    let renewals = fleet.edges[0].metric("streamfleet_edge_lease_renewals_total").await;
    wait_until("a lease renewal", TTL, || async {
        (fleet.edges[0].metric("streamfleet_edge_lease_renewals_total").await > renewals).then_some(())
    })
    .await;
    let killed_at = Instant::now();
    tokio::task::block_in_place(|| fleet.redis.kill());

    for edge in &fleet.edges {
        edge.wait_readyz(503, Duration::from_secs(5)).await;
        assert_eq!(edge.metric("streamfleet_edge_registry_up").await, 0.0, "{}: registry_up", edge.id);
    }
    let all_unready = killed_at.elapsed();
    // The publisher is not dropped for a short outage: its stop deadline has not come.
    assert!(ffmpeg::running(&mut encoder), "the encoder is still connected while Redis is down");
    assert!(fleet.edges[0].live_frames("news").await.is_some(), "news still live on edge-a");

    let restarted_at = Instant::now();
    tokio::task::block_in_place(|| fleet.redis.restart());

    // Newcomers start knocking at once: sport (nobody publishes it) and news (held by edge-a).
    let sport_newcomer = tokio::spawn({
        let (addr, key) = (fleet.edges[1].rtmp, sport_key.clone());
        async move { publish_until_admitted(addr, &key, Duration::from_millis(50), TTL * 3).await }
    });
    let news_newcomer = tokio::spawn({
        let (addr, key) = (fleet.edges[2].rtmp, news_key.clone());
        async move {
            let mut c = RtmpClient::connect(addr).await.map_err(Refusal::Protocol)?;
            c.publish(&key).await.map(|()| c)
        }
    });

    for edge in &fleet.edges {
        edge.wait_readyz(200, Duration::from_secs(10)).await;
    }
    let ready_again = restarted_at.elapsed();
    let sync = fleet.sync_watch.as_ref().expect("sync --watch");
    sync.wait_passes(2, Duration::from_secs(10)).await;
    let after = wait_until("edge-a to reclaim news", TTL, || async {
        fleet.live_status("news").await?.holder.filter(|h| h.edge == "edge-a")
    })
    .await;
    let reclaimed = restarted_at.elapsed();
    assert!(after.fence > before.fence, "the reclaimed grant has a larger fence ({} ≤ {})", after.fence, before.fence);
    assert!(fleet.edges[0].metric("streamfleet_edge_lease_losses_total{reason=\"expired\"}").await == 0.0);

    // The same encoder, on the same connection, still streams through edge-a.
    let frames = fleet.edges[0].live_frames("news").await.expect("news still live on edge-a");
    fleet.edges[0].wait_live("news", frames + 15, Duration::from_secs(10)).await;
    assert!(ffmpeg::running(&mut encoder), "the encoder was never disconnected");

    let refused = news_newcomer.await.expect("task");
    match refused {
        // Any refusal: the restarted Redis does not know the key until the operator's sync
        // rewrites the records (Publish.Denied, "unknown stream key", what this run sees on an
        // idle machine), it is quarantined or unreachable (NetStream.Failed), or edge-a has
        // reclaimed the stream (Publish.BadName).
        Err(Refusal::Status(code)) => assert!(
            matches!(code.as_str(), "NetStream.Publish.Denied" | "NetStream.Publish.BadName" | "NetStream.Failed"),
            "{code}"
        ),
        Err(other) => panic!("the news newcomer must be told with an onStatus: {other:?}"),
        Ok(_) => panic!("a second publisher was admitted for news after the restart"),
    }
    let sport = sport_newcomer.await.expect("task").unwrap_or_else(|r| panic!("sport never admitted: {r:?}"));
    let sport_after = sport.at.duration_since(restarted_at);
    eprintln!(
        "redis restart: all edges not ready {} after the kill; ready again {} after the restart; news reclaimed by edge-a {} after the restart (fence {} -> {}); \
         sport newcomer admitted {} after the restart (quarantine = TTL {TTL:?})",
        ms(all_unready),
        ms(ready_again),
        ms(reclaimed),
        before.fence,
        after.fence,
        ms(sport_after),
    );
    // The quarantine held newcomers back for one TTL from the restart, and not much longer.
    assert!(sport_after + Duration::from_millis(300) >= TTL, "sport admitted during the quarantine");
    assert!(sport_after <= TTL + Duration::from_secs(3), "sport admitted late");
    assert_eq!(fleet.holder_edge("sport").await.as_deref(), Some("edge-b"));

    let report = census.finish().await;
    assert!(report.samples > 20, "census sampled {} times", report.samples);
    for (name, (most, on)) in &report.max_publishers {
        assert!(*most <= 1, "{name} had publishers on {on:?} at once");
    }
    for (edge, pid) in fleet.edges.iter_mut().zip(pids) {
        assert!(edge.is_running() && edge.pid == pid, "{} was not restarted", edge.id);
    }
    drop(sport);
}
