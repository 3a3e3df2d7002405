//! Stream health with a real encoder: ffmpeg publishes known settings and `/api/v1/streams` and
//! `/metrics` report them; a 10 s keyframe interval turns the stream unhealthy with the fix in
//! plain words; a frozen encoder (SIGSTOP) is a stall; every admitted session's end is logged.

mod common;

use std::time::Duration;

use common::{Edge, ffmpeg_publish_args};
use streamfleet_testkit::wait::wait_until;

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
    assert!(ok.is_ok_and(|s| s.success()), "kill -{sig} {pid}");
}

fn close(v: &serde_json::Value, want: f64, tolerance: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() <= tolerance)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_encoder_sends_is_reported_in_the_api_and_the_metrics() {
    let edge = Edge::start(&[]).await;
    // 320×180, 30 fps, a keyframe every 2 s, 300 kbit/s video, AAC 44.1 kHz mono.
    let encoder = ffmpeg_publish_args(
        &edge.url("demo-publish-key"),
        30,
        60,
        &["-b:v", "300k", "-maxrate", "300k", "-bufsize", "300k", "-sc_threshold", "0"],
    );
    // Two keyframe intervals and ten seconds of bitrate.
    let s = wait_until("two keyframe intervals measured", Duration::from_secs(30), || async {
        edge.stream("demo").await.filter(|s| s["media"]["video"]["keyframe_interval_max_s"].is_number())
    })
    .await;
    let (video, audio) = (&s["media"]["video"], &s["media"]["audio"]);
    assert_eq!((video["width"].as_u64(), video["height"].as_u64()), (Some(320), Some(180)), "{s}");
    assert!(video["profile"].is_string() && video["level"].is_string(), "{s}");
    assert!(close(&video["fps"], 30.0, 1.0), "measured fps: {s}");
    assert!(close(&s["media"]["announced"]["fps"], 30.0, 0.01), "announced fps: {s}");
    assert!(close(&video["keyframe_interval_s"], 2.0, 0.1), "keyframe interval: {s}");
    assert_eq!(video["b_frames"], false, "ultrafast has no B-frames: {s}");
    assert_eq!((audio["sample_rate"].as_u64(), audio["channels"].as_u64()), (Some(44100), Some(1)), "{s}");
    assert_eq!(s["health"]["healthy"], true, "{s}");
    let kbps = video["kbps_10s"].as_f64().unwrap_or(0.0);
    assert!((150.0..=450.0).contains(&kbps), "video bitrate {kbps} kbit/s for a 300 kbit/s encoder: {s}");

    let fps = wait_until("the fps gauge", Duration::from_secs(10), || async {
        Some(edge.metric("streamfleet_edge_stream_video_fps{stream=\"demo\"}").await).filter(|v| *v > 0.0)
    })
    .await;
    assert!((29.0..=31.0).contains(&fps), "{fps}");
    assert_eq!(edge.metric("streamfleet_edge_stream_healthy{stream=\"demo\"}").await, 1.0);
    let info = "streamfleet_edge_stream_media_info{audio_codec=\"aac\",resolution=\"320x180\",stream=\"demo\",video_codec=\"h264\"}";
    assert_eq!(edge.metric(info).await, 1.0);
    drop(encoder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_keyframe_interval_makes_the_stream_unhealthy_with_the_fix() {
    let edge = Edge::start(&[]).await;
    // The same encoder on an edge that allows 12 s between keyframes stays healthy.
    let lenient = Edge::start(&["--health-keyframe-interval", "12s"]).await;
    let gop = ["-keyint_min", "300", "-sc_threshold", "0"];
    let encoder = ffmpeg_publish_args(&edge.url("demo-publish-key"), 30, 300, &gop);
    let other = ffmpeg_publish_args(&lenient.url("demo-publish-key"), 30, 300, &gop);
    let health = wait_until("the keyframe rule", Duration::from_secs(20), || async {
        edge.stream("demo").await.map(|s| s["health"].clone()).filter(|h| h["healthy"] == false)
    })
    .await;
    assert_eq!(health["reason"], "KeyframeInterval", "{health}");
    let message = health["message"].as_str().unwrap_or_default();
    assert!(message.contains("keyframe interval is") && message.contains("set 2 s"), "{message}");
    let calm = lenient.stream("demo").await.expect("demo on the lenient edge");
    assert_eq!(calm["health"]["healthy"], true, "--health-keyframe-interval 12s: {calm}");
    wait_until("the healthy gauge at 0", Duration::from_secs(10), || async {
        (edge.metric("streamfleet_edge_stream_healthy{stream=\"demo\"}").await == 0.0
            && edge.metric("streamfleet_edge_stream_media_info{audio_codec=\"aac\",resolution=\"320x180\",stream=\"demo\",video_codec=\"h264\"}").await == 1.0)
            .then_some(())
    })
    .await;
    drop((encoder, other));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_encoder_is_a_stall_and_every_session_end_is_logged() {
    let edge = Edge::start(&[]).await;
    let mut encoder = ffmpeg_publish_args(&edge.url("demo-publish-key"), 30, 60, &[]);
    edge.wait_live("demo", 60, Duration::from_secs(20)).await;
    let pid = encoder.id().expect("encoder pid");
    signal(pid, "STOP");
    let stalled = wait_until("the stall reported", Duration::from_secs(10), || async {
        edge.stream("demo").await.map(|s| s["health"].clone()).filter(|h| h["reason"] == "Stalled")
    })
    .await;
    assert!(stalled["message"].as_str().is_some_and(|m| m.contains("no media from the encoder")), "{stalled}");
    signal(pid, "CONT");
    let health = wait_until("the stall counted after the encoder resumed", Duration::from_secs(10), || async {
        edge.stream("demo").await.map(|s| s["health"].clone()).filter(|h| h["stalls"].as_u64() == Some(1))
    })
    .await;
    assert_eq!(health["timestamps_backwards"], 0, "{health}");
    wait_until("the stall counter", Duration::from_secs(10), || async {
        (edge.metric("streamfleet_edge_stream_stalls_total{stream=\"demo\"}").await == 1.0).then_some(())
    })
    .await;

    // A player comes and goes; then the encoder goes: both ends are logged with what they moved.
    let (ok, _, err) =
        common::ffprobe(&["-show_entries", "stream=codec_name"], &edge.url("demo"), Duration::from_secs(20)).await;
    assert!(ok, "{err}");
    encoder.kill().await.expect("kill the encoder");
    wait_until("both session ends logged", Duration::from_secs(10), || async {
        let logs = edge.logs();
        let ended: Vec<&str> = logs.lines().filter(|l| l.contains("session ended")).collect();
        (ended.iter().any(|l| l.contains("role=\"publisher\"") || l.contains("role=publisher"))
            && ended.iter().any(|l| l.contains("role=\"player\"") || l.contains("role=player"))
            && ended.iter().all(|l| l.contains("bytes_sent") && l.contains("duration_s")))
        .then_some(())
    })
    .await;
}
