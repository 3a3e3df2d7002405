//! A live fleet on a Sentinel-managed registry (three Redis, three Sentinels on loopback,
//! `down-after-milliseconds` 1500): two edges and `streamfleet-operator sync --watch`, all through
//! `redis+sentinel://`. The primary is killed (`kill -9`) under a live publisher on edge-a with
//! players on edge-a and edge-b: Sentinel promotes a replica, the publisher is not dropped, both
//! players keep receiving, a second publisher for the stream on edge-b is refused throughout,
//! and new publishes work again as soon as the failover is over (the promoted replica holds
//! every replica-acknowledged grant, so no quarantine).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use streamfleet_testkit::{
    SentinelTiming,
    rtmp_client::{RtmpClient, publish_until_admitted},
    wait::{ms, wait_until},
};
use streamfleet_tests::{
    ffmpeg,
    fleet::{Fleet, FleetConfig},
    manifest::StreamSpec,
};
use tokio::time::Instant;

/// The edges' default lease (renew every 5 s, stop 10 s after the last good renew was sent):
/// a failover must be over within TTL/3 of the kill in the worst renew phase.
const TTL: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn primary_killed_under_a_live_stream_publisher_and_players_carry_on_and_nobody_else_publishes() {
    let timing = SentinelTiming::default();
    let config =
        FleetConfig { edges: 2, lease_ttl: TTL, watch_sync: true, sentinel: Some(timing), ..FleetConfig::default() };
    let mut fleet = Fleet::start(config, &[StreamSpec::new("news"), StreamSpec::new("sport")]).await;
    let (news_key, sport_key) = (fleet.key("news"), fleet.key("sport"));
    let (a_rtmp, b_rtmp) = (fleet.edges[0].rtmp, fleet.edges[1].rtmp);

    let mut encoder = ffmpeg::publish(&fleet.edges[0].url(&news_key), 180);
    fleet.edges[0].wait_live("news", 15, Duration::from_secs(20)).await;
    let before = wait_until("news held by edge-a", Duration::from_secs(5), || async {
        fleet.live_status("news").await?.holder.filter(|h| h.edge == "edge-a")
    })
    .await;
    let mut players = Vec::new();
    for edge in [a_rtmp, b_rtmp] {
        let mut c = RtmpClient::connect(edge).await.expect("player connects");
        c.play("news").await.expect("play starts");
        let p = c.into_player();
        assert!(p.wait_frames(5, Duration::from_secs(10)).await, "player on {edge} receives");
        players.push(p);
    }
    let census = fleet.census();

    // A second publisher for news on edge-b, knocking every 200 ms throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let (admitted, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let contender = tokio::spawn({
        let (stop, admitted, refused, key) = (stop.clone(), admitted.clone(), refused.clone(), news_key.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut c) = RtmpClient::connect(b_rtmp).await {
                    match c.publish(&key).await {
                        Ok(()) => {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });

    let renewals = fleet.edges[0].metric("streamfleet_edge_lease_renewals_total").await;
    let old = tokio::task::block_in_place(|| fleet.redis.sentinel().wait_primary(Duration::from_secs(5)));
    let killed_at = Instant::now();
    tokio::task::block_in_place(|| fleet.redis.sentinel().kill_redis(old));
    let new = tokio::task::block_in_place(|| fleet.redis.sentinel().wait_failover_from(old, Duration::from_secs(20)));
    let failover = killed_at.elapsed();
    // New publishes: sport on edge-b, knocking from the moment the failover is over.
    let sport = tokio::spawn({
        let key = sport_key.clone();
        async move { publish_until_admitted(b_rtmp, &key, Duration::from_millis(100), TTL * 2).await }
    });

    // edge-a renews on the new primary before its deadline (10 s after its last good renew).
    wait_until("edge-a renews on the new primary", TTL, || async {
        // Counts renewals and reclaims.
        (fleet.edges[0].metric("streamfleet_edge_lease_renewals_total").await > renewals).then_some(())
    })
    .await;
    let renewed = killed_at.elapsed();
    assert!(ffmpeg::running(&mut encoder), "the encoder was dropped");
    for (p, edge) in players.iter().zip(["edge-a", "edge-b"]) {
        assert!(p.ended().is_none(), "the player on {edge} was cut: {:?}", p.ended());
        assert!(p.wait_frames(p.frames() + 30, Duration::from_secs(10)).await, "the player on {edge} stalled");
    }

    let sport = sport
        .await
        .expect("sport task")
        .unwrap_or_else(|r| panic!("sport never admitted after the failover: {:?}", r.last()));
    let sport_after = sport.at.duration_since(killed_at);

    stop.store(true, Ordering::Relaxed);
    contender.await.expect("contender task");
    let after = wait_until("news still held by edge-a", Duration::from_secs(5), || async {
        fleet.live_status("news").await?.holder.filter(|h| h.edge == "edge-a")
    })
    .await;
    let frames = fleet.edges[0].live_frames("news").await.expect("news still live on edge-a");
    fleet.edges[0].wait_live("news", frames + 15, Duration::from_secs(10)).await;
    assert!(ffmpeg::running(&mut encoder), "the encoder was never disconnected");
    let (admitted, refused) = (admitted.load(Ordering::Relaxed), refused.load(Ordering::Relaxed));
    eprintln!(
        "fleet on Sentinel, primary redis {old} killed: redis {new} promoted {} after the kill; edge-a renewed {} \
         after the kill; sport admitted on edge-b {} after the kill; news fence {} -> {}; \
         second news publisher refused {refused} times, admitted {admitted}",
        ms(failover),
        ms(renewed),
        ms(sport_after),
        before.fence,
        after.fence,
    );
    assert_eq!(admitted, 0, "a second publisher for news was admitted on edge-b");
    assert!(refused > 0, "the contender was never refused: nothing was tested");
    // A verified promotion with replica-acknowledged grants and renewals: no quarantine.
    assert!(sport_after <= failover + Duration::from_secs(5), "new publishes resumed late");
    assert_eq!(fleet.edges[0].metric("streamfleet_edge_lease_losses_total{reason=\"expired\"}").await, 0.0);

    let report = census.finish().await;
    assert!(report.samples > 20, "census sampled {} times", report.samples);
    for (name, (most, on)) in &report.max_publishers {
        assert!(*most <= 1, "{name} had publishers on {on:?} at once");
    }
    drop(sport);
}
