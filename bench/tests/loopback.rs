//! End-to-end runs of the load tool against an in-process RTMP relay built on rml_rtmp's
//! `ServerSession`: a short fan-out (2 players, 3 s window), the refusal reason of a second
//! publisher, and admission round trips. Everything binds 127.0.0.1 and is bounded in time.

mod support;

use std::sync::Arc;
use std::time::Duration;

use streamfleet_bench::admission::{self, AdmissionConfig};
use streamfleet_bench::media::synthetic::{self, SyntheticSpec};
use streamfleet_bench::publisher::{self, PublisherConfig};
use streamfleet_bench::rtmp::RtmpUrl;
use streamfleet_bench::scenario::{self, LoadSpec};
use support::mini_server::MiniServer;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

const BOUND: Duration = Duration::from_secs(30);

fn spec(server: &MiniServer, publish: &str, play: &str) -> LoadSpec {
    LoadSpec {
        scenario: "fanout".into(),
        server_label: "mini".into(),
        tag: String::new(),
        publish_url: server.url(publish),
        play_url: server.url(play),
        publishers: 1,
        players: 2,
        publisher_interval: Duration::from_millis(1),
        player_interval: Duration::from_millis(10),
        warmup: Duration::from_millis(300),
        settle: Duration::from_millis(300),
        window: Duration::from_secs(3),
        join_timeout: Duration::from_secs(5),
        server_pid: Some(std::process::id()),
        read_buffer: 32 * 1024,
        media_name: "synthetic".into(),
        first_index: 0,
    }
}

fn media() -> Arc<streamfleet_bench::media::plan::MediaPlan> {
    Arc::new(synthetic::plan(SyntheticSpec { video_bps: 1_000_000, fps: 30, gop_frames: 30, frames: 60, audio: true }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_measures_every_frame_for_every_player() {
    let server = MiniServer::start().await;
    let report = tokio::time::timeout(BOUND, scenario::run_load(&spec(&server, "s1", "s1"), media()))
        .await
        .expect("run bounded in time")
        .expect("run succeeds");
    let players = report.players.as_ref().unwrap();
    assert_eq!((players.connected, players.failed, players.dropped), (2, 0, 0), "{:?}", players.reasons);
    // 30 fps for a 3 s window for 2 players, allowing for scheduling slack at the edges.
    let frames = report.frames.received;
    assert!((150..=190).contains(&frames), "window frames {frames}");
    assert_eq!(report.frames.missing, 0);
    assert_eq!(report.frames.foreign, 0);
    let lat = report.latency_window_ms.unwrap();
    assert_eq!(lat.n as u64, frames);
    assert!(lat.p50 > 0.0 && lat.p99 < 500.0, "{lat:?}");
    assert!(report.latency_all_ms.unwrap().n as u64 >= frames);
    let start = report.play_start_ms.unwrap();
    let first = report.first_frame_ms.unwrap();
    assert_eq!((start.n, first.n), (2, 2));
    assert!(first.p50 >= start.p50, "a frame cannot arrive before the play start: {first:?} {start:?}");
    // About 1.1 Mbit/s per player (video + audio + chunk headers).
    let per_player = report.per_player_mbps.unwrap();
    assert!((0.8..1.6).contains(&per_player), "{per_player} Mbit/s");
    // The "server" is this process here, so its CPU must show the work.
    let server_stats = report.server_stats.as_ref().unwrap();
    assert!(server_stats.cpu_s > 0.0 && server_stats.cpu_s_per_gb.is_some());
    // The density figures: the one publisher's admission, idle and per-publisher RSS, and the
    // stream arriving whole at both players.
    assert_eq!(report.publish_start_ms.map(|s| s.n), Some(1));
    assert!(server_stats.rss_idle_kib.is_some_and(|k| k > 0) && server_stats.rss_per_publisher_kib.is_some());
    assert_eq!(report.streams.map(|s| (s.live, s.intact)), Some((1, 1)));
    assert!(report.table().contains("KiB/publisher"));
    let json = serde_json::to_string(&report).unwrap();
    // The JSON line reads back (floats may differ in the last bit, so compare counts).
    let back: streamfleet_bench::stats::RunReport = serde_json::from_str(&json).unwrap();
    assert_eq!((back.players.as_ref(), back.frames.received), (report.players.as_ref(), frames));
    assert_eq!(back.latency_window_ms.map(|s| s.n), report.latency_window_ms.map(|s| s.n));
    assert!(report.table().contains("2 connected"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_publisher_is_reported_with_the_servers_reason() {
    let server = MiniServer::start().await;
    let mut s = spec(&server, "same", "same");
    s.publishers = 2; // no {i}: both publish the same name, the second is refused
    s.players = 1;
    s.window = Duration::from_millis(500);
    let report = tokio::time::timeout(BOUND, scenario::run_load(&s, media())).await.unwrap().unwrap();
    let pubs = report.publishers.unwrap();
    assert_eq!((pubs.connected, pubs.failed), (1, 1));
    assert_eq!(pubs.reasons.get("NetStream.Publish.BadName: Already publishing"), Some(&1), "{:?}", pubs.reasons);
    assert_eq!(report.players.unwrap().connected, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_round_trips_and_refusals() {
    let server = MiniServer::start().await;
    let cfg = AdmissionConfig {
        url_template: server.url("key-{i}"),
        count: 20,
        timeout: Duration::from_secs(5),
        first_index: 100,
    };
    let out = tokio::time::timeout(BOUND, admission::run(&cfg)).await.unwrap().unwrap();
    assert_eq!(out.accepted_ms.len(), 20, "{:?}", out.failures);
    assert!(out.accepted_ms.iter().all(|ms| *ms > 0.0 && *ms < 5000.0));

    // While a publisher holds "busy", every admission attempt on it is refused with the reason.
    let cancel = CancellationToken::new();
    let (ready_tx, ready_rx) = oneshot::channel();
    let holder_cfg = PublisherConfig {
        url: RtmpUrl::parse(&server.url("busy")).unwrap(),
        stream: 0,
        plan: media(),
        start_timeout: Duration::from_secs(5),
        // Set up as the scenarios do: on another task, the connection then moved to this one.
        setup: Some(tokio::runtime::Handle::current()),
    };
    let holder = tokio::spawn(publisher::run(holder_cfg, cancel.clone(), ready_tx));
    tokio::time::timeout(BOUND, ready_rx).await.unwrap().unwrap().expect("the holder publishes");
    let cfg =
        AdmissionConfig { url_template: server.url("busy"), count: 3, timeout: Duration::from_secs(5), first_index: 0 };
    let out = tokio::time::timeout(BOUND, admission::run(&cfg)).await.unwrap().unwrap();
    assert!(out.accepted_ms.is_empty());
    assert_eq!(out.failures.get("NetStream.Publish.BadName: Already publishing"), Some(&3), "{:?}", out.failures);
    cancel.cancel();
    let held = tokio::time::timeout(BOUND, holder).await.unwrap().unwrap();
    assert!(held.failure.is_none() && held.dropped.is_none(), "{held:?}");
    assert!(held.video_frames > 0);
}
