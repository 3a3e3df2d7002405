//! Owner killed with SIGKILL: the edge holding a stream's lease dies without a word, so its
//! lease stays in Redis until its TTL runs out. A new publisher on another edge is admitted no
//! earlier than that (the lease is honoured) and no later than TTL + 1 s after the kill.

use std::time::Duration;

use streamfleet_testkit::{
    rtmp_client::{Ending, RtmpClient, publish_until_admitted},
    wait::{ms, wait_until},
};
use streamfleet_tests::{
    ffmpeg,
    fleet::{Fleet, FleetConfig},
    manifest::StreamSpec,
};

const TTL: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_publisher_gets_in_within_ttl_plus_one_second_after_the_owner_is_sigkilled() {
    let mut fleet =
        Fleet::start(FleetConfig { lease_ttl: TTL, ..FleetConfig::default() }, &[StreamSpec::new("news")]).await;
    let key = fleet.key("news");
    let encoder = ffmpeg::publish(&fleet.edges[0].url(&key), 60);
    fleet.edges[0].wait_live("news", 15, Duration::from_secs(20)).await;
    let owner = fleet.edges[0].id.clone();
    wait_until("the owner's lease in the registry", Duration::from_secs(5), || async {
        (fleet.holder_edge("news").await.as_deref() == Some(owner.as_str())).then_some(())
    })
    .await;
    // Let at least one renew happen, so the kill lands at an arbitrary point of the lease.
    wait_until("a lease renewal", Duration::from_secs(5), || async {
        (fleet.edges[0].metric("streamfleet_edge_lease_renewals_total").await >= 1.0).then_some(())
    })
    .await;

    let killed_at = fleet.edges[0].sigkill().await;
    let admission = publish_until_admitted(fleet.edges[1].rtmp, &key, Duration::from_millis(20), TTL * 3)
        .await
        .unwrap_or_else(|refusals| panic!("never admitted after the owner died: {refusals:?}"));
    let took = admission.at.duration_since(killed_at);
    eprintln!(
        "SIGKILL takeover: new publisher on {} admitted {} after the owner was killed (TTL {TTL:?}, {} refusals before)",
        fleet.edges[1].id,
        ms(took),
        admission.refusals.len()
    );
    assert!(took <= TTL + Duration::from_secs(1), "admitted {} after the kill, more than TTL + 1 s", ms(took));
    // The dead owner's lease was honoured: renewed at most TTL/3 before the kill, it could not
    // expire sooner than TTL − TTL/3 after it.
    let earliest = TTL - TTL / 3;
    assert!(
        took + Duration::from_millis(100) >= earliest,
        "admitted after {} while the lease was still valid",
        ms(took)
    );
    for r in &admission.refusals {
        assert_eq!(
            r.code(),
            "NetStream.Publish.BadName",
            "refusals while the lease was held: {:?}",
            admission.refusals
        );
    }

    // The encoder of the dead edge lost its connection; the fleet now serves the new publisher.
    let exit = ffmpeg::wait_exit(encoder, Duration::from_secs(15)).await;
    assert!(exit.is_some_and(|e| !e.success), "the dead edge's encoder must notice");
    assert_eq!(fleet.holder_edge("news").await.as_deref(), Some(fleet.edges[1].id.as_str()));
    fleet.edges[1].wait_live("news", 5, Duration::from_secs(5)).await;
    let mut player = RtmpClient::connect(fleet.edges[1].rtmp).await.expect("player connects");
    player.play("news").await.expect("the stream plays on the new owner's edge");
    let player = player.into_player();
    assert!(player.wait_frames(10, Duration::from_secs(5)).await, "player receives the new publisher's frames");
    assert!(admission.publisher.ended().is_none(), "the new publisher is still live");
    let active: f64 = fleet.publishers_active().await.iter().sum();
    assert_eq!(active, 1.0, "one publisher on the surviving edges");
}

/// Players on the surviving edges pull the stream from its owner through the relay; when the
/// owner is SIGKILLed and the publisher comes back through another edge, they get the new
/// stream on the same connection (or, where RTMP does not allow that, a clean `onStatus` end,
/// never a bare disconnect).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn players_on_surviving_edges_follow_the_new_publisher_after_a_sigkill() {
    let mut fleet =
        Fleet::start(FleetConfig { lease_ttl: TTL, ..FleetConfig::default() }, &[StreamSpec::new("news")]).await;
    let key = fleet.key("news");
    let mut first = RtmpClient::connect(fleet.edges[0].rtmp).await.expect("connect");
    first.publish(&key).await.expect("first publisher admitted on edge-a");
    let first = first.into_publisher();
    fleet.edges[0].wait_live("news", 10, Duration::from_secs(10)).await;

    // A viewer on edge-c, which does not hold the stream: it is relayed from edge-a.
    let mut viewer = RtmpClient::connect(fleet.edges[2].rtmp).await.expect("viewer connects");
    viewer.play("news").await.expect("play through the relay");
    let viewer = viewer.into_player();
    assert!(viewer.wait_frames(10, Duration::from_secs(10)).await, "relayed frames reach edge-c's viewer");

    let killed_at = fleet.edges[0].sigkill().await;
    let admission = publish_until_admitted(fleet.edges[1].rtmp, &key, Duration::from_millis(20), TTL * 3)
        .await
        .unwrap_or_else(|refusals| panic!("never admitted after the owner died: {refusals:?}"));
    eprintln!("relay: new publisher admitted {} after the SIGKILL", ms(admission.at.duration_since(killed_at)));
    let before = viewer.frames();
    let followed = viewer.wait_frames(before + 25, Duration::from_secs(10)).await;
    eprintln!("relay after SIGKILL: viewer followed: {followed}, ended: {:?}", viewer.ended().map(|e| e.how));
    match viewer.ended() {
        None => assert!(followed, "the viewer neither got the new stream nor a clean end"),
        Some(end) => assert!(
            matches!(end.how, Ending::Status(_)),
            "a viewer must be told with an onStatus, not dropped: {end:?}"
        ),
    }
    drop(first);
}
