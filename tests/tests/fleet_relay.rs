//! Cross-edge play through the relay, with real edge processes: a viewer on an edge that does
//! not hold the stream gets it pulled from the owner (one pull per stream per edge, shared,
//! fast start through the relay, dropped after the idle timeout); the relay listener refuses
//! unauthenticated plays and the public listener never serves the relay application; and when
//! the publisher moves to another edge, relayed players continue on the same connection.

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

const IDLE: Duration = Duration::from_secs(1);
const PULLS: &str = "streamfleet_edge_relay_pulls_active";
const SERVED: &str = "streamfleet_edge_relay_served_active";

fn config(edges: usize) -> FleetConfig {
    FleetConfig {
        edges,
        edge_args: vec!["--relay-idle-timeout".into(), format!("{}ms", IDLE.as_millis())],
        ..FleetConfig::default()
    }
}

/// Time from `connect` to the player's first video frame (polled every 20 ms).
async fn first_frame(
    edge: std::net::SocketAddr,
    name: &str,
) -> (streamfleet_testkit::rtmp_client::LivePlayer, Duration) {
    let t0 = Instant::now();
    let mut c = RtmpClient::connect(edge).await.expect("player connects");
    c.play(name).await.expect("play starts");
    let p = c.into_player();
    assert!(p.wait_frames(1, Duration::from_secs(10)).await, "first frame on {edge}");
    (p, t0.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_published_on_one_edge_plays_on_another_through_one_shared_pull() {
    let fleet = Fleet::start(config(2), &[StreamSpec::new("news")]).await;
    let (a, b) = (&fleet.edges[0], &fleet.edges[1]);
    let _encoder = ffmpeg::publish(&a.url(&fleet.key("news")), 60);
    a.wait_live("news", 30, Duration::from_secs(20)).await;

    // A real player (ffprobe) on edge-b sees both codecs, and its first video packet is a
    // keyframe: the owner's GOP cache reaches it through the relay.
    let (codecs, flags) = ffmpeg::probe(&b.url("news"), Duration::from_secs(20)).await.expect("ffprobe on edge-b");
    assert!(codecs.contains(&"h264".to_string()) && codecs.contains(&"aac".to_string()), "codecs {codecs:?}");
    assert!(flags.starts_with('K'), "first relayed video packet is not a keyframe: flags {flags:?}");

    // Two players on edge-b share one pull; edge-a serves exactly one relay pull.
    let (direct, direct_ttff) = first_frame(a.rtmp, "news").await;
    let (p1, warm1) = first_frame(b.rtmp, "news").await;
    let (p2, warm2) = first_frame(b.rtmp, "news").await;
    eprintln!(
        "relay TTFF (connect → first video frame, 20 ms polling): direct on owner {}, relayed {} / {}",
        ms(direct_ttff),
        ms(warm1),
        ms(warm2)
    );
    assert_eq!(b.metric(PULLS).await, 1.0, "one pull for two players");
    assert_eq!(a.metric(SERVED).await, 1.0, "the owner serves one relay pull to edge-b");
    assert_eq!(a.metric(PULLS).await, 0.0, "the owner pulls nothing");
    let stream = b.stream("news").await.expect("news on edge-b");
    assert_eq!(stream["relay_source"], a.relay.to_string(), "{stream}");
    assert!(stream["publisher_remote_addr"].is_null(), "a relayed stream is not a local publisher: {stream}");
    assert_eq!(stream["players"], 2, "{stream}");
    // Viewers add up across edges; the relay pull is not a viewer.
    wait_until("3 viewers in the registry (1 on edge-a, 2 on edge-b)", Duration::from_secs(5), || async {
        fleet.live_status("news").await.filter(|s| s.viewers == 3).map(|_| ())
    })
    .await;
    assert_eq!(a.stream("news").await.expect("news on edge-a")["players"], 1);

    // Last player on edge-b leaves: the pull stays for the idle timeout, then goes.
    p1.close().await;
    assert!(p2.wait_frames(p2.frames() + 10, Duration::from_secs(5)).await, "the other player keeps playing");
    p2.close().await;
    let left = Instant::now();
    wait_until("edge-b's pull stopped", IDLE + Duration::from_secs(5), || async {
        (b.metric(PULLS).await == 0.0 && a.metric(SERVED).await == 0.0).then_some(())
    })
    .await;
    let after = left.elapsed();
    eprintln!("relay pull dropped {} after the last player left (idle timeout {IDLE:?})", ms(after));
    assert!(after + Duration::from_millis(50) >= IDLE, "pull dropped after {} (< idle timeout)", ms(after));
    assert!(direct.ended().is_none(), "the owner's own player is unaffected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_relay_refuses_unauthenticated_plays_and_the_public_port_never_serves_it() {
    let fleet = Fleet::start(config(1), &[StreamSpec::new("news")]).await;
    let a = &fleet.edges[0];
    let mut publisher = RtmpClient::connect(a.rtmp).await.expect("connect");
    publisher.publish(&fleet.key("news")).await.expect("publisher admitted");
    let publisher = publisher.into_publisher();
    a.wait_live("news", 5, Duration::from_secs(10)).await;

    for (name, why) in [
        ("news".to_string(), "no token"),
        (format!("news?auth={}", "0".repeat(64)), "wrong token"),
        ("news?auth=not-hex".to_string(), "malformed token"),
    ] {
        let mut c = RtmpClient::connect_app(a.relay, "relay").await.expect("relay connect");
        let refusal = c.play(&name).await.expect_err(why);
        assert_eq!(refusal, Refusal::Status("NetStream.Play.Failed".into()), "{why}");
    }
    assert_eq!(a.metric("streamfleet_edge_relay_auth_failures_total").await, 3.0);
    assert_eq!(a.metric(SERVED).await, 0.0);

    // Publishing on the relay listener is refused outright.
    let mut c = RtmpClient::connect_app(a.relay, "relay").await.expect("relay connect");
    assert!(c.publish(&fleet.key("news")).await.is_err(), "publish on the relay listener");

    // The public listener rejects the relay application at connect.
    let err = RtmpClient::connect_app(a.rtmp, "relay").await.err().expect("public port must reject app relay");
    assert!(err.contains("refused") || err.contains("rejected"), "{err}");
    // And the relay listener does not serve the public application.
    assert!(RtmpClient::connect_app(a.relay, "live").await.is_err(), "relay port must reject app live");
    assert!(publisher.ended().is_none(), "the publisher is undisturbed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relayed_players_follow_the_publisher_to_another_edge_on_the_same_connection() {
    let fleet = Fleet::start(config(3), &[StreamSpec::new("news")]).await;
    let (a, b, c) = (&fleet.edges[0], &fleet.edges[1], &fleet.edges[2]);
    let key = fleet.key("news");
    let mut first = RtmpClient::connect(a.rtmp).await.expect("connect");
    first.publish(&key).await.expect("first publisher on edge-a");
    let first = first.into_publisher();
    a.wait_live("news", 5, Duration::from_secs(10)).await;

    let (viewer, cold) = first_frame(b.rtmp, "news").await;
    eprintln!("relay TTFF with a cold pull (connect → first video frame on edge-b): {}", ms(cold));
    assert!(viewer.wait_frames(10, Duration::from_secs(10)).await, "relayed frames from edge-a");

    // The encoder disconnects from edge-a and reconnects through edge-c.
    first.close().await;
    let moved_at = Instant::now();
    let admission = publish_until_admitted(c.rtmp, &key, Duration::from_millis(20), Duration::from_secs(10))
        .await
        .unwrap_or_else(|r| panic!("publisher not admitted on edge-c: {r:?}"));
    let before = viewer.frames();
    assert!(viewer.wait_frames(before + 1, Duration::from_secs(10)).await, "the viewer gets edge-c's stream");
    eprintln!(
        "relay follow: publisher re-admitted on edge-c {} after leaving edge-a; first frame from edge-c on edge-b's viewer {} after admission",
        ms(admission.at.duration_since(moved_at)),
        ms(admission.at.elapsed())
    );
    assert!(viewer.wait_frames(before + 25, Duration::from_secs(10)).await, "and keeps getting it");
    assert!(viewer.ended().is_none(), "same connection: {:?}", viewer.ended());
    let stream = b.stream("news").await.expect("news on edge-b");
    assert_eq!(stream["relay_source"], c.relay.to_string(), "edge-b now pulls from edge-c: {stream}");
    assert_eq!(b.metric(PULLS).await, 1.0);
    wait_until("edge-a serves no relay pull", Duration::from_secs(5), || async {
        (a.metric(SERVED).await == 0.0).then_some(())
    })
    .await;
}
