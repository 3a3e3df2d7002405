//! What third-party clients print when the edge refuses them, run as processes against a real
//! edge: each refusal must read as what it is (docs/edge.md, "Refusals as clients report
//! them"). ffmpeg is required; GStreamer (`rtmp2sink`) and rtmpdump (librtmp) are used when
//! installed and skipped with a message otherwise.

mod common;

use std::{process::Stdio, time::Duration};

use common::{Edge, RawClient};
use streamfleet_testkit::{rtmp_client::fake_avc, wait::wait_until};
use tokio::{
    process::Command,
    time::{Instant, timeout},
};

/// A bound on a hang; every client here is refused or stopped within a second or two.
const CLIENT_LIMIT: Duration = Duration::from_secs(20);

/// Runs `program` to completion (killed at `CLIENT_LIMIT`): (exit success, stdout and stderr).
async fn run(program: &str, args: &[&str]) -> (bool, String) {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    match timeout(CLIENT_LIMIT, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            (out.status.success(), text)
        }
        Ok(Err(e)) => panic!("waiting for {program}: {e}"),
        Err(_) => panic!("{program} {args:?} did not finish within {CLIENT_LIMIT:?}"),
    }
}

/// ffmpeg publishing one second of a test pattern to `url`.
async fn ffmpeg_publish(url: &str) -> (bool, String) {
    streamfleet_testkit::require_tool("ffmpeg");
    let pattern = "-hide_banner -nostdin -loglevel warning -re -f lavfi -i testsrc2=size=160x90:rate=30 -t 1 \
                   -c:v libx264 -preset ultrafast -f flv";
    let args: Vec<&str> = pattern.split_whitespace().chain([url]).collect();
    run("ffmpeg", &args).await
}

/// Holds `solo` (takeover policy Reject) live with a raw publisher.
async fn hold_solo(edge: &Edge) -> RawClient {
    let mut live = RawClient::connect(edge.rtmp).await;
    live.publish("solo-publish-key").await.expect("first publisher admitted");
    live.send_video(fake_avc(true, 100), 0).await;
    live
}

fn wrong_app_url(edge: &Edge) -> String {
    format!("rtmp://{}/foo/demo-publish-key", edge.rtmp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_prints_each_refusal_as_the_server_s_error() {
    let edge = Edge::start(&[]).await;

    let (ok, out) = ffmpeg_publish(&edge.url("a-wrong-key")).await;
    assert!(!ok, "a wrong key must fail ffmpeg: {out}");
    assert!(out.contains("Server error: unknown stream key: no LiveStream uses this publish key"), "{out}");

    // A wrong application used to read "Unknown connect error (unsupported authentication
    // method?)" first: ffmpeg takes an `_error` answering connect for an auth challenge.
    let (ok, out) = ffmpeg_publish(&wrong_app_url(&edge)).await;
    assert!(!ok, "a wrong application must fail ffmpeg: {out}");
    assert!(
        out.contains(r#"Server error: unknown application "foo"; publish and play on rtmp://HOST/live/..."#),
        "{out}"
    );
    assert!(!out.contains("Unknown connect error"), "{out}");
    assert!(!out.contains("authentication"), "{out}");

    let _live = hold_solo(&edge).await;
    let (ok, out) = ffmpeg_publish(&edge.url("solo-publish-key")).await;
    assert!(!ok, "a second publisher must fail ffmpeg: {out}");
    assert!(out.contains("Server error: stream default/solo is already being published"), "{out}");
}

/// Whether GStreamer's `gst-launch-1.0` and the element `element` are installed.
async fn gstreamer_has(element: &str) -> bool {
    if streamfleet_testkit::which("gst-launch-1.0").is_none() || streamfleet_testkit::which("gst-inspect-1.0").is_none()
    {
        return false;
    }
    run("gst-inspect-1.0", &[element]).await.0
}

/// `gst-launch-1.0` publishing a second of raw audio in FLV through `sink` (flvmux takes raw
/// S16LE audio, so no encoder plugin is needed; the refusal comes before any media anyway).
async fn gst_publish(sink: &str, url: &str) -> (bool, String) {
    let location = format!("location={url}");
    let pipeline =
        "audiotestsrc num-buffers=50 ! audio/x-raw,format=S16LE,rate=44100,channels=1 ! flvmux streamable=true !";
    let args: Vec<&str> = pipeline.split_whitespace().chain([sink, &location]).collect();
    run("gst-launch-1.0", &args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_rtmp2sink_reports_each_refusal_by_its_meaning() {
    if !gstreamer_has("rtmp2sink").await {
        eprintln!(
            "SKIPPED: GStreamer's rtmp2sink is not installed (apt-get install gstreamer1.0-tools gstreamer1.0-plugins-bad gstreamer1.0-plugins-base)"
        );
        return;
    }
    let edge = Edge::start(&[]).await;

    // rtmp2sink maps Publish.BadName to "stream already exists": a wrong key must not read so.
    let (ok, out) = gst_publish("rtmp2sink", &edge.url("a-wrong-key")).await;
    assert!(!ok, "{out}");
    assert!(out.contains("publish denied: "), "{out}");
    assert!(out.contains("unknown stream key: no LiveStream uses this publish key"), "{out}");
    assert!(!out.contains("already exists"), "{out}");

    let (ok, out) = gst_publish("rtmp2sink", &wrong_app_url(&edge)).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains(r#"'connect' cmd returned 'NetConnection.Connect.Rejected': unknown application "foo""#),
        "{out}"
    );

    let _live = hold_solo(&edge).await;
    let (ok, out) = gst_publish("rtmp2sink", &edge.url("solo-publish-key")).await;
    assert!(!ok, "{out}");
    assert!(out.contains("publish denied; stream already exists"), "{out}");
    assert!(out.contains("is already being published"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmpdump_stops_a_live_download_at_its_stop_time_and_reads_a_wrong_app() {
    if streamfleet_testkit::which("rtmpdump").is_none() {
        eprintln!("SKIPPED: rtmpdump is not installed (apt-get install rtmpdump)");
        return;
    }
    // One worker thread: the single-threaded scheduler serves real clients too.
    let edge = Edge::start(&["--worker-threads", "1"]).await;

    let (ok, out) = run("rtmpdump", &["-v", "-r", &format!("rtmp://{}/foo/demo", edge.rtmp), "-o", "/dev/null"]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("Closing connection: NetConnection.Connect.InvalidApp"), "{out}");

    let publisher = common::ffmpeg_publish(&edge.url("demo-publish-key"), 30, 30);
    edge.wait_live("demo", 10, Duration::from_secs(15)).await;
    let file = common::TempFile::new("stop.flv", "");
    let path = file.0.display().to_string();
    let t0 = Instant::now();
    // --stop 2 on a live stream: play's len argument, 2000 ms.
    let (_, out) = run("rtmpdump", &["-v", "-r", &edge.url("demo"), "-B", "2", "-o", &path]).await;
    let took = t0.elapsed();
    // Exit status 2 ("may be incomplete") when the metadata's duration (ffmpeg's -t) is longer
    // than what was asked for; the point is that the edge ended the play.
    assert!(out.contains("Download complete") || out.contains("Download may be incomplete"), "{out}");
    assert!(took < Duration::from_secs(6), "rtmpdump --stop 2 ran for {took:?} on a 30 s stream: {out}");
    let size = std::fs::metadata(&file.0).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "{size} bytes recorded: {out}");
    // The edge logs the end once the connection is gone, which can be after rtmpdump exits.
    wait_until("the edge to log why the play ended", Duration::from_secs(5), || async {
        edge.logs().contains("play duration reached").then_some(())
    })
    .await;
    drop(publisher);
}
