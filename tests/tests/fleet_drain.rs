//! Edge SIGTERM (a rolling update, a scale-down): the edge stops accepting, tells its
//! publishers (`NetStream.Unpublish.Success`) and players (`NetStream.Play.Stop`), releases
//! its leases at once, and exits within `--drain-timeout`. Encoders reconnecting through other
//! edges get in immediately, not after the lease TTL.

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

/// Long enough that "released at once" and "expired" cannot be confused.
const TTL: Duration = Duration::from_secs(6);
const DRAIN: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_tells_clients_releases_leases_at_once_and_exits_within_the_drain_timeout() {
    let config = FleetConfig { lease_ttl: TTL, drain_timeout: DRAIN, ..FleetConfig::default() };
    let mut fleet = Fleet::start(config, &[StreamSpec::new("news"), StreamSpec::new("sport")]).await;
    let (news_key, sport_key) = (fleet.key("news"), fleet.key("sport"));
    let a = &fleet.edges[0];

    // news: a light publisher and a light player; sport: ffmpeg both ways. All on edge-a.
    let mut c = RtmpClient::connect(a.rtmp).await.expect("connect");
    c.publish(&news_key).await.expect("news publisher admitted on edge-a");
    let news_publisher = c.into_publisher();
    let sport_encoder = ffmpeg::publish(&a.url(&sport_key), 60);
    a.wait_live("news", 10, Duration::from_secs(10)).await;
    a.wait_live("sport", 15, Duration::from_secs(20)).await;
    let mut c = RtmpClient::connect(a.rtmp).await.expect("connect");
    c.play("news").await.expect("news plays on edge-a");
    let news_player = c.into_player();
    assert!(news_player.wait_frames(5, Duration::from_secs(5)).await, "news player receives frames");
    let sport_player = ffmpeg::play(&a.url("sport"), 60);
    wait_until("the ffmpeg player on edge-a", Duration::from_secs(10), || async {
        (a.metric("streamfleet_edge_players_active").await >= 2.0).then_some(())
    })
    .await;
    for name in ["news", "sport"] {
        assert_eq!(fleet.holder_edge(name).await.as_deref(), Some("edge-a"), "{name} held by edge-a");
    }

    let term_at = a.sigterm();
    // The encoders reconnect through the other edges (as a load balancer would send them).
    let news_next = tokio::spawn({
        let (addr, key) = (fleet.edges[1].rtmp, news_key.clone());
        async move { publish_until_admitted(addr, &key, Duration::from_millis(20), TTL * 2).await }
    });
    let sport_next = tokio::spawn({
        let (addr, key) = (fleet.edges[2].rtmp, sport_key.clone());
        async move { publish_until_admitted(addr, &key, Duration::from_millis(20), TTL * 2).await }
    });

    // Everyone on edge-a is told.
    let told = news_publisher.wait_ended(DRAIN).await.expect("the publisher is told within the drain");
    assert_eq!(told.how, Ending::Status("NetStream.Unpublish.Success".into()), "publisher told with an onStatus");
    let stopped = news_player.wait_ended(DRAIN).await.expect("the player is told within the drain");
    assert_eq!(stopped.how, Ending::Status("NetStream.Play.Stop".into()), "player told with an onStatus");
    let encoder_exit = ffmpeg::wait_exit(sport_encoder, DRAIN).await.expect("ffmpeg publisher disconnected");
    let player_exit = ffmpeg::wait_exit(sport_player, DRAIN).await.expect("ffmpeg player disconnected");

    // The leases were released, not left to expire.
    let news_admission =
        news_next.await.expect("task").unwrap_or_else(|r| panic!("news never admitted on edge-b: {r:?}"));
    let sport_admission =
        sport_next.await.expect("task").unwrap_or_else(|r| panic!("sport never admitted on edge-c: {r:?}"));
    let news_handoff = news_admission.at.duration_since(term_at);
    let sport_handoff = sport_admission.at.duration_since(term_at);

    let (status, exited_at) = fleet.edges[0].wait_exit(DRAIN + Duration::from_secs(2)).await.expect("edge-a exits");
    let exit_after = exited_at.duration_since(term_at);
    eprintln!(
        "SIGTERM: publisher told after {}, player after {}, ffmpeg publisher exited after {} ({}), ffmpeg player after {} ({}); \
         news admitted on edge-b {} and sport on edge-c {} after the SIGTERM (TTL {TTL:?}); edge-a exited after {} ({status})",
        ms(told.at.duration_since(term_at)),
        ms(stopped.at.duration_since(term_at)),
        ms(encoder_exit.at.duration_since(term_at)),
        if encoder_exit.success { "exit 0" } else { "exit ≠ 0" },
        ms(player_exit.at.duration_since(term_at)),
        if player_exit.success { "exit 0" } else { "exit ≠ 0" },
        ms(news_handoff),
        ms(sport_handoff),
        ms(exit_after),
    );
    let at_once = TTL / 4;
    assert!(news_handoff < at_once, "news handed over after {}: not released at once", ms(news_handoff));
    assert!(sport_handoff < at_once, "sport handed over after {}: not released at once", ms(sport_handoff));
    assert!(status.success(), "edge-a exits cleanly: {status}");
    assert!(exit_after <= DRAIN, "edge-a exited after {}, beyond --drain-timeout", ms(exit_after));

    assert_eq!(fleet.holder_edge("news").await.as_deref(), Some("edge-b"));
    assert_eq!(fleet.holder_edge("sport").await.as_deref(), Some("edge-c"));
    assert!(news_admission.publisher.ended().is_none() && sport_admission.publisher.ended().is_none());
}
