//! SRT across a fleet, with real edge processes on one redis-server: a stream published over
//! SRT on one edge plays on another through the relay, over RTMP and over SRT, and no edge
//! admits a second publisher of it over RTMP.

use std::{net::SocketAddr, process::Stdio, time::Duration};

use streamfleet_testkit::{
    rtmp_client::{Refusal, RtmpClient},
    wait::wait_until,
};
use streamfleet_tests::{
    edge::EdgeProcess,
    ffmpeg,
    fleet::{Fleet, FleetConfig},
    manifest::StreamSpec,
};
use tokio::process::Command;

/// The SRT listener's address, from the edge's start-up log.
async fn srt_addr(edge: &EdgeProcess) -> SocketAddr {
    wait_until("the SRT listener's address in the log", Duration::from_secs(10), || async {
        let logs = edge.logs();
        let line = logs.lines().find(|l| l.contains("srt listening"))?;
        line.split("addr=").nth(1)?.split_whitespace().next()?.parse().ok()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_srt_published_stream_plays_on_another_edge_over_rtmp_and_srt() {
    let config =
        FleetConfig { edges: 2, edge_args: vec!["--srt-listen".into(), "127.0.0.1:0".into()], ..Default::default() };
    let fleet = Fleet::start(config, &[StreamSpec::new("news")]).await;
    let (a, b) = (&fleet.edges[0], &fleet.edges[1]);
    let (srt_a, srt_b) = (srt_addr(a).await, srt_addr(b).await);
    let key = fleet.key("news");
    streamfleet_testkit::require_tool("ffmpeg");
    let _encoder = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "warning", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=160x90:rate=15"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "15", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-b:a", "32k", "-t", "60", "-f", "mpegts"])
        .arg(format!("srt://{srt_a}?streamid=publish:{key}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg");
    a.wait_live("news", 30, Duration::from_secs(20)).await;

    // Over RTMP on edge-b, through the relay: both codecs, the first video packet a keyframe.
    let (codecs, flags) = ffmpeg::probe(&b.url("news"), Duration::from_secs(20)).await.expect("ffprobe on edge-b");
    assert!(codecs.contains(&"h264".to_string()) && codecs.contains(&"aac".to_string()), "codecs {codecs:?}");
    assert!(flags.starts_with('K'), "first relayed video packet is not a keyframe: flags {flags:?}");
    // Over SRT on edge-b.
    let (codecs, _) = ffmpeg::probe(&format!("srt://{srt_b}?streamid=read:news"), Duration::from_secs(20))
        .await
        .expect("ffprobe over SRT on edge-b");
    assert!(codecs.contains(&"h264".to_string()) && codecs.contains(&"aac".to_string()), "codecs {codecs:?}");

    // The SRT publisher holds the stream's lease for the whole fleet: RTMP on edge-b is refused.
    let mut rtmp = RtmpClient::connect(b.rtmp).await.expect("RTMP connect");
    match rtmp.publish(&key).await {
        Err(Refusal::Status(code)) => assert_eq!(code, "NetStream.Publish.BadName"),
        other => panic!("RTMP publish on edge-b while SRT publishes on edge-a: {other:?}"),
    }
}
