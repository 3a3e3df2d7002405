//! SRT ingest with real clients: Debian's ffmpeg (libsrt) publishes MPEG-TS over SRT and
//! ffprobe plays it over RTMP; refusals at the handshake (wrong key, disabled stream, a live
//! publisher on either protocol) come within a second, counted with `protocol="srt"`; the
//! listener's limits and a malformed feed close only what exceeds them.

mod common;

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use common::{Edge, RawClient, STREAMS_YAML, TempFile, ffmpeg_publish, ffmpeg_publish_args, ffprobe, finish};
use futures::{SinkExt, StreamExt};
use srt_tokio::SrtSocket;
use streamfleet_testkit::{rtmp_client::fake_avc, wait::wait_until};
use tokio::{
    process::{Child, Command},
    time::Instant,
};

/// The test streams plus `off`, a disabled stream, `backup` (takeoverPolicy Replace) and
/// `vault`, with its own SRT passphrase in its Secret.
fn streams() -> String {
    format!(
        "{STREAMS_YAML}---
apiVersion: v1
kind: Secret
metadata: {{name: backup-key}}
stringData: {{publishKey: backup-publish-key}}
---
apiVersion: streamfleet.io/v1alpha1
kind: LiveStream
metadata: {{name: backup}}
spec:
  publishKeySecretRef: {{name: backup-key, key: publishKey}}
  takeoverPolicy: Replace
---
apiVersion: v1
kind: Secret
metadata: {{name: off-key}}
stringData: {{publishKey: off-publish-key}}
---
apiVersion: streamfleet.io/v1alpha1
kind: LiveStream
metadata: {{name: off}}
spec:
  publishKeySecretRef: {{name: off-key, key: publishKey}}
  enabled: false
---
apiVersion: v1
kind: Secret
metadata: {{name: vault-key}}
stringData: {{publishKey: vault-publish-key, srtPassphrase: vault-own-passphrase}}
---
apiVersion: streamfleet.io/v1alpha1
kind: LiveStream
metadata: {{name: vault}}
spec:
  publishKeySecretRef: {{name: vault-key, key: publishKey}}
"
    )
}

struct SrtEdge {
    edge: Edge,
    srt: SocketAddr,
    _streams: TempFile,
}

async fn start(extra: &[&str]) -> SrtEdge {
    let file = TempFile::new("srt-streams.yaml", &streams());
    let mut args: Vec<String> =
        vec!["--streams".into(), file.0.display().to_string(), "--srt-listen".into(), "127.0.0.1:0".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let edge = Edge::start_with(args).await;
    let srt = wait_until("the SRT listener's address in the log", Duration::from_secs(10), || async {
        let logs = edge.logs();
        let line = logs.lines().find(|l| l.contains("srt listening"))?;
        let addr = line.split("addr=").nth(1)?.split_whitespace().next()?;
        addr.parse::<SocketAddr>().ok()
    })
    .await;
    SrtEdge { edge, srt, _streams: file }
}

/// ffmpeg publishing H.264 + AAC in MPEG-TS over SRT with `streamid`.
fn srt_publish(srt: SocketAddr, stream_id: &str, seconds: u32, extra_out: &[&str]) -> Child {
    streamfleet_testkit::require_tool("ffmpeg");
    let url = format!("srt://{srt}?streamid={stream_id}&connect_timeout=3000{}", extra_out.concat());
    let t = seconds.to_string();
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "warning", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-b:a", "64k", "-t", &t, "-f", "mpegts", &url])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg")
}

const REJECTED: &str = "streamfleet_edge_publish_rejections_total";

#[tokio::test]
async fn srt_publish_is_played_over_rtmp_with_h264_and_aac() {
    let e = start(&[]).await;
    let publisher = srt_publish(e.srt, "publish:demo-publish-key", 30, &[]);
    let live = e.edge.wait_live("demo", 60, Duration::from_secs(20)).await;
    assert_eq!((&live["video_codec"], &live["audio_codec"]), (&"h264".into(), &"aac".into()), "{live}");

    let (ok, out, err) = ffprobe(
        &["-show_entries", "stream=codec_type,codec_name,width,height", "-of", "compact"],
        &e.edge.url("demo"),
        Duration::from_secs(20),
    )
    .await;
    assert!(ok, "ffprobe failed: {err}\n{}", e.edge.logs());
    assert!(out.contains("codec_name=h264|codec_type=video|width=320|height=180"), "{out}");
    assert!(out.contains("codec_name=aac|codec_type=audio"), "{out}");

    let sessions = e.edge.sessions().await;
    let s = sessions.iter().find(|s| s["role"] == "publisher").expect("the SRT publisher's session");
    assert_eq!(s["playback_name"], "demo");
    assert_eq!(s["protocol"], "srt", "{s}");
    assert_eq!(live["publisher_protocol"], "srt", "{live}");
    assert!(s["bytes_received"].as_u64().unwrap_or(0) > 10_000, "{s}");
    assert_eq!(e.edge.metric("streamfleet_edge_srt_connections_active").await, 1.0);
    // Ingest and viewers by protocol, as the dashboard splits them.
    assert_eq!(e.edge.metric("streamfleet_edge_publishers_active{protocol=\"srt\"}").await, 1.0);
    assert_eq!(e.edge.metric("streamfleet_edge_publish_admission_seconds_count{protocol=\"srt\"}").await, 1.0);
    assert_eq!(e.edge.metric("streamfleet_edge_publishers_active{protocol=\"rtmp\"}").await, 0.0);
    assert!(e.edge.metric("streamfleet_edge_bytes_received_total{protocol=\"srt\"}").await > 10_000.0);
    let srt_player = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-i"])
        .arg(format!("srt://{}?streamid=read:demo", e.srt))
        .args(["-t", "20", "-f", "null", "-"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg player");
    wait_until("one SRT player counted as such", Duration::from_secs(10), || async {
        let srt = e.edge.metric("streamfleet_edge_players_active{protocol=\"srt\"}").await;
        let rtmp = e.edge.metric("streamfleet_edge_players_active{protocol=\"rtmp\"}").await;
        (srt == 1.0 && rtmp == 0.0).then_some(())
    })
    .await;
    drop(srt_player);
    // The stream ID carries the key; nothing logs it (the SRT crates log handshakes in debug).
    assert!(!e.edge.logs().contains("demo-publish-key"), "a publish key in the logs");
    // The link statistics are exported per stream while it publishes.
    wait_until("SRT link statistics for demo", Duration::from_secs(5), || async {
        let (_, body) = e.edge.get("/metrics").await;
        body.contains("streamfleet_edge_srt_loss_reports{stream=\"demo\"}").then_some(())
    })
    .await;
    drop(publisher);
}

/// Runs an ffmpeg SRT publish that must be refused; returns how long the refusal took.
async fn refused(srt: SocketAddr, stream_id: &str) -> Duration {
    let t0 = Instant::now();
    let (ok, stderr) = finish(srt_publish(srt, stream_id, 5, &[]), Duration::from_secs(15)).await;
    assert!(!ok, "the publish of {stream_id} must be refused");
    assert!(stderr.contains("rejected") || stderr.contains("Input/output error"), "{stderr}");
    t0.elapsed()
}

/// Waits until the edge has no SRT connection open (a dropped publisher has gone).
async fn no_srt_connections_left(e: &SrtEdge) {
    wait_until("no SRT connection left", Duration::from_secs(10), || async {
        (e.edge.metric("streamfleet_edge_srt_connections_active").await == 0.0).then_some(())
    })
    .await;
}

/// An ffmpeg publish of `name` (key `<name>-publish-key`) with a wrong `passphrase` is refused
/// and leaves the stream not live.
async fn refused_with_passphrase(e: &SrtEdge, name: &str, passphrase: &str) {
    let stream_id = format!("publish:{name}-publish-key");
    let extra = format!("&passphrase={passphrase}");
    let (ok, _) = finish(srt_publish(e.srt, &stream_id, 5, &[&extra]), Duration::from_secs(15)).await;
    assert!(!ok, "a wrong passphrase must be refused");
    assert!(e.edge.stream(name).await.is_none_or(|s| s["live"] == false));
}

#[tokio::test]
async fn wrong_key_disabled_stream_and_live_stream_are_refused_at_the_handshake() {
    let e = start(&[]).await;
    let took = refused(e.srt, "publish:not-a-key").await;
    assert!(took < Duration::from_secs(1), "wrong key refused after {took:?}");
    assert_eq!(e.edge.metric(&format!("{REJECTED}{{protocol=\"srt\",reason=\"unknown_key\"}}")).await, 1.0);

    let took = refused(e.srt, "#!::r=off-publish-key,m=publish").await;
    assert!(took < Duration::from_secs(1), "disabled stream refused after {took:?}");
    assert_eq!(e.edge.metric(&format!("{REJECTED}{{protocol=\"srt\",reason=\"disabled\"}}")).await, 1.0);

    // An RTMP publisher live on `solo` (takeoverPolicy Reject): SRT is refused, RTMP untouched.
    let rtmp = ffmpeg_publish(&e.edge.url("solo-publish-key"), 30, 30);
    let before = e.edge.wait_live("solo", 30, Duration::from_secs(20)).await;
    let took = refused(e.srt, "solo-publish-key").await;
    assert!(took < Duration::from_secs(1), "live stream refused after {took:?}");
    assert_eq!(e.edge.metric(&format!("{REJECTED}{{protocol=\"srt\",reason=\"already_active\"}}")).await, 1.0);
    let after = e.edge.stream("solo").await.expect("solo");
    assert_eq!(after["publisher_since"], before["publisher_since"], "the live RTMP publisher was not disturbed");
    assert!(after["frames_in"].as_u64() > before["frames_in"].as_u64());
    // No SRT connection was opened for any refused caller.
    assert_eq!(e.edge.metric("streamfleet_edge_srt_connections_active").await, 0.0);
    drop(rtmp);
}

#[tokio::test]
async fn an_srt_publisher_live_refuses_an_rtmp_publisher_of_the_same_stream() {
    let e = start(&[]).await;
    let srt = srt_publish(e.srt, "publish:solo-publish-key", 30, &[]);
    e.edge.wait_live("solo", 30, Duration::from_secs(20)).await;
    let (ok, stderr) = finish(ffmpeg_publish(&e.edge.url("solo-publish-key"), 5, 30), Duration::from_secs(15)).await;
    assert!(!ok);
    // The live publisher's protocol comes from the registry's holder record, filled at admission.
    assert!(stderr.contains("already being published (over srt on edge"), "{stderr}");
    assert_eq!(e.edge.metric(&format!("{REJECTED}{{protocol=\"rtmp\",reason=\"already_active\"}}")).await, 1.0);
    drop(srt);
}

/// A raw SRT caller (srt-tokio) with a stream ID.
async fn call(srt: SocketAddr, stream_id: &str) -> std::io::Result<SrtSocket> {
    SrtSocket::builder().call(srt, Some(stream_id)).await
}

#[tokio::test]
async fn listener_limits_and_malformed_input_close_only_their_own_connection() {
    let e = start(&["--srt-max-connections-per-ip", "1"]).await;
    // Unreadable stream IDs are refused at the handshake and counted.
    assert!(call(e.srt, "#!::m=publish").await.is_err());
    assert!(call(e.srt, "#!::r=demo-publish-key,m=bidirectional").await.is_err());
    assert_eq!(e.edge.metric("streamfleet_edge_protocol_errors_total{kind=\"srt_stream_id\"}").await, 2.0);

    // An admitted caller that sends garbage instead of MPEG-TS is closed, and counted.
    let mut garbage = call(e.srt, "publish:demo-publish-key").await.expect("admitted");
    e.edge.wait_live("demo", 0, Duration::from_secs(5)).await;
    // Per-address limit: a second caller from 127.0.0.1 is refused while the first is open.
    assert!(call(e.srt, "publish:solo-publish-key").await.is_err());
    assert_eq!(
        e.edge.metric("streamfleet_edge_connections_refused_total{reason=\"srt_max_connections_per_ip\"}").await,
        1.0
    );
    for _ in 0..8 {
        garbage.send((std::time::Instant::now(), Bytes::from(vec![0x55u8; 1316]))).await.expect("send");
    }
    wait_until("the garbage publisher closed", Duration::from_secs(5), || async {
        (e.edge.metric("streamfleet_edge_protocol_errors_total{kind=\"mpegts\"}").await == 1.0).then_some(())
    })
    .await;
    wait_until("the stream free again", Duration::from_secs(5), || async {
        (e.edge.metric("streamfleet_edge_srt_connections_active").await == 0.0).then_some(())
    })
    .await;
    drop(garbage);
    // The edge still admits publishers on both protocols.
    let mut rtmp = RawClient::connect(e.edge.rtmp).await;
    rtmp.publish("demo-publish-key").await.expect("RTMP publish after the broken SRT one");
    rtmp.send_video(Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F, 0xFF]), 0).await;
    e.edge.wait_live("demo", 1, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn encryption_interoperates_with_libsrt_and_a_wrong_or_missing_passphrase_is_refused() {
    let pass = TempFile::new("srt-passphrase", "correct-horse-battery\n");
    let e = start(&["--srt-passphrase-file", pass.0.to_str().expect("utf-8 path")]).await;
    // Without pbkeylen (libsrt announces no key length) and with AES-256.
    for opts in ["&passphrase=correct-horse-battery", "&passphrase=correct-horse-battery&pbkeylen=32"] {
        let publisher = srt_publish(e.srt, "publish:demo-publish-key", 30, &[opts]);
        e.edge.wait_live("demo", 30, Duration::from_secs(20)).await;
        let (ok, out, err) = ffprobe(
            &["-show_entries", "stream=codec_name", "-of", "compact"],
            &e.edge.url("demo"),
            Duration::from_secs(20),
        )
        .await;
        assert!(ok && out.contains("codec_name=h264") && out.contains("codec_name=aac"), "{opts}: {out}{err}");
        drop(publisher);
        no_srt_connections_left(&e).await;
    }
    refused(e.srt, "publish:solo-publish-key").await;
    assert_eq!(e.edge.metric(&format!("{REJECTED}{{protocol=\"srt\",reason=\"unencrypted\"}}")).await, 1.0);
    refused_with_passphrase(&e, "solo", "wrong-horse-battery").await;
    assert!(!e.edge.logs().contains("horse-battery"), "a passphrase in the logs");
}

#[tokio::test]
async fn a_streams_own_passphrase_is_required_of_its_srt_callers_and_only_of_them() {
    let e = start(&[]).await;
    // Right passphrase (libsrt announces no key length; AES-128 then): published and played.
    let publisher = srt_publish(e.srt, "publish:vault-publish-key", 30, &["&passphrase=vault-own-passphrase"]);
    e.edge.wait_live("vault", 30, Duration::from_secs(20)).await;
    let (ok, out, err) = ffprobe(
        &["-show_entries", "stream=codec_name", "-of", "compact"],
        &format!("srt://{}?streamid=read:vault&passphrase=vault-own-passphrase", e.srt),
        Duration::from_secs(20),
    )
    .await;
    assert!(ok && out.contains("codec_name=h264"), "{out}{err}");
    // A plain player of it is refused at the handshake, before anything is reserved.
    let (ok, _, _) = srt_probe(e.srt, "vault").await;
    assert!(!ok, "a plain player of a stream with a passphrase");
    assert_eq!(e.edge.metric("streamfleet_edge_play_rejections_total{reason=\"unencrypted\"}").await, 1.0);
    drop(publisher);
    no_srt_connections_left(&e).await;

    // A plain publisher is refused before the lease is taken (libsrt's "unsecure"), quickly.
    let took = refused(e.srt, "publish:vault-publish-key").await;
    assert!(took < Duration::from_secs(1), "refused after {took:?}");
    assert_eq!(e.edge.metric(&format!("{REJECTED}{{protocol=\"srt\",reason=\"unencrypted\"}}")).await, 1.0);
    // A wrong one is refused when the handshake completes, and its lease released at once.
    refused_with_passphrase(&e, "vault", "not-the-vault-passphrase").await;
    // The passphrase is the stream's, not the edge's: other streams stay plain.
    let plain = srt_publish(e.srt, "publish:demo-publish-key", 30, &[]);
    e.edge.wait_live("demo", 30, Duration::from_secs(20)).await;
    drop(plain);
    // And right again after the refusals.
    let publisher =
        srt_publish(e.srt, "publish:vault-publish-key", 30, &["&passphrase=vault-own-passphrase&pbkeylen=32"]);
    e.edge.wait_live("vault", 30, Duration::from_secs(20)).await;
    drop(publisher);
    assert!(!e.edge.logs().contains("own-passphrase"), "a passphrase in the logs");
}

#[tokio::test]
async fn an_encrypted_caller_against_a_plain_listener_is_refused_and_the_listener_keeps_serving() {
    // Unpatched srt-protocol panicked here, in the task serving every SRT connection.
    let e = start(&[]).await;
    let (ok, _) = finish(
        srt_publish(e.srt, "publish:solo-publish-key", 3, &["&passphrase=correct-horse-battery"]),
        Duration::from_secs(15),
    )
    .await;
    assert!(!ok);
    let publisher = srt_publish(e.srt, "publish:demo-publish-key", 30, &[]);
    e.edge.wait_live("demo", 30, Duration::from_secs(20)).await;
    drop(publisher);
}

/// ffprobe over SRT (`read:<name>`): (success, stdout, stderr).
async fn srt_probe(srt: SocketAddr, name: &str) -> (bool, String, String) {
    ffprobe(
        &["-show_entries", "stream=codec_type,codec_name", "-of", "compact"],
        &format!("srt://{srt}?streamid=read:{name}"),
        Duration::from_secs(20),
    )
    .await
}

#[tokio::test]
async fn srt_players_get_h264_and_aac_from_rtmp_and_srt_publishers() {
    let e = start(&[]).await;
    let rtmp = ffmpeg_publish(&e.edge.url("demo-publish-key"), 30, 30);
    e.edge.wait_live("demo", 30, Duration::from_secs(20)).await;
    let (ok, out, err) = srt_probe(e.srt, "demo").await;
    assert!(ok, "ffprobe over SRT failed: {err}\n{}", e.edge.logs());
    assert!(out.contains("codec_name=h264|codec_type=video"), "{out}");
    assert!(out.contains("codec_name=aac|codec_type=audio"), "{out}");
    drop(rtmp);

    let srt = srt_publish(e.srt, "publish:solo-publish-key", 30, &[]);
    e.edge.wait_live("solo", 30, Duration::from_secs(20)).await;
    let (ok, out, err) = srt_probe(e.srt, "solo").await;
    assert!(ok && out.contains("codec_name=h264") && out.contains("codec_name=aac"), "{out}{err}");
    // Unknown names are refused at the handshake.
    let (ok, _, _) = srt_probe(e.srt, "no-such-stream").await;
    assert!(!ok);
    assert_eq!(e.edge.metric("streamfleet_edge_play_rejections_total{reason=\"not_found\"}").await, 1.0);
    drop(srt);
}

#[tokio::test]
async fn a_late_srt_player_starts_from_the_cached_keyframe_not_the_next_one() {
    let e = start(&[]).await;
    // One keyframe every 10 s (no scene-cut ones): a player that joins a second in waits about
    // 9 s for the next one unless the cached GOP reaches it. A second of this stream is ~100 KB,
    // more than srt-tokio's default send buffer (32 packets) took in one burst.
    let rtmp =
        ffmpeg_publish_args(&e.edge.url("demo-publish-key"), 40, 300, &["-keyint_min", "300", "-sc_threshold", "0"]);
    e.edge.wait_live("demo", 30, Duration::from_secs(20)).await;
    let t0 = Instant::now();
    // 60 frames: the cached second at once, then live frames, with no stall after the burst.
    // A shorter analysis than ffmpeg's default 5 s of stream, which only a live wait can give.
    let player = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "info", "-analyzeduration", "1000000"])
        .args(["-i", &format!("srt://{}?streamid=read:demo", e.srt), "-frames:v", "60", "-f", "null", "-"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg player");
    let (ok, stderr) = finish(player, Duration::from_secs(20)).await;
    let took = t0.elapsed();
    eprintln!("60 frames over SRT {took:?} after the player started");
    assert!(ok, "the SRT player failed: {stderr}\n{}", e.edge.logs());
    assert!(stderr.contains("frame=   60"), "{stderr}");
    assert!(!stderr.contains("error while decoding"), "decoding errors: {stderr}");
    // Measured 1.9 s on loopback (debug build; the first frame alone: 0.24 s); the next
    // keyframe is 8 s or more away.
    assert!(took < Duration::from_secs(4), "60 frames took {took:?}: the player waited for the next keyframe");
    drop(rtmp);
}

/// srt-protocol's sender with its default send buffer (32 packets, what srt-tokio callers get):
/// a burst that overflows it loses packets, and the connection goes on sending. Before the
/// patch (third_party/srt-protocol/PATCHES.md, item 6) it never sent data again.
#[tokio::test]
async fn an_srt_send_buffer_overflow_drops_packets_and_the_connection_goes_on() {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("local address");
    let (receiver, sender) =
        tokio::join!(SrtSocket::builder().local_port(addr.port()).socket(socket).listen(), call(addr, "overflow"));
    let (mut receiver, mut sender) = (receiver.expect("listen"), sender.expect("call"));
    let message = |tag: u32| {
        let mut m = vec![0u8; 1316];
        m[..4].copy_from_slice(&tag.to_be_bytes());
        Bytes::from(m)
    };
    // 200 messages at once: six times what the buffer holds.
    for tag in 0..200 {
        sender.feed((std::time::Instant::now(), message(tag))).await.expect("queued");
    }
    sender.flush().await.expect("flushed");
    // Then a live pace, tagged from 1000 on: they must arrive.
    let pacer = tokio::spawn(async move {
        for tag in 1000..2000 {
            if sender.send((std::time::Instant::now(), message(tag))).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let after_the_burst = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok((_, m))) = receiver.next().await {
            if m.len() >= 4 && u32::from_be_bytes([m[0], m[1], m[2], m[3]]) >= 1000 {
                return true;
            }
        }
        false
    })
    .await;
    pacer.abort();
    assert_eq!(after_the_burst, Ok(true), "nothing sent after the overflow: the sender is wedged");
}

/// ffmpeg playing `name` over SRT until it has `frames` video frames (stderr at `info`).
fn srt_player(srt: SocketAddr, name: &str, frames: u32) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "info", "-analyzeduration", "1000000"])
        .args(["-i", &format!("srt://{srt}?streamid=read:{name}"), "-frames:v", &frames.to_string()])
        .args(["-f", "null", "-"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg player")
}

#[tokio::test]
async fn a_second_srt_player_joining_mid_stream_decodes_cleanly_as_does_the_first() {
    let e = start(&[]).await;
    let rtmp = ffmpeg_publish(&e.edge.url("demo-publish-key"), 40, 60);
    e.edge.wait_live("demo", 30, Duration::from_secs(20)).await;
    // A first player, then a second that joins while the first plays: each player's TS starts
    // with PAT and PMT and the cached GOP, and neither disturbs the other.
    let first = srt_player(e.srt, "demo", 150);
    wait_until("the first SRT player receiving", Duration::from_secs(10), || async {
        let sessions = e.edge.sessions().await;
        sessions
            .iter()
            .any(|s| s["protocol"] == "srt" && s["role"] == "player" && s["bytes_sent"].as_u64() > Some(100_000))
            .then_some(())
    })
    .await;
    let second = srt_player(e.srt, "demo", 60);
    let (ok2, err2) = finish(second, Duration::from_secs(20)).await;
    let (ok1, err1) = finish(first, Duration::from_secs(20)).await;
    for (ok, err, frames) in [(ok1, &err1, 150), (ok2, &err2, 60)] {
        assert!(ok, "an SRT player failed: {err}\n{}", e.edge.logs());
        assert!(err.contains(&format!("frame={frames:>5}")), "{err}");
        assert!(!err.contains("error while decoding") && !err.contains("corrupt"), "decoding errors: {err}");
    }
    drop(rtmp);
}

/// The recent static ffmpeg (Enhanced RTMP `hvc1` needs ffmpeg 6.1+; Debian 12 has 5.1):
/// `$STREAMFLEET_MODERN_FFMPEG`, or the one `imageio-ffmpeg` ships in the workspace's `.venv`
/// (scripts/test installs it; missing is a setup error, as in edge_enhanced_rtmp.rs).
fn modern_ffmpeg() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("STREAMFLEET_MODERN_FFMPEG") {
        return p.into();
    }
    let venv_lib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/lib");
    std::fs::read_dir(&venv_lib)
        .ok()
        .and_then(|pythons| {
            pythons.flatten().find_map(|py| {
                std::fs::read_dir(py.path().join("site-packages/imageio_ffmpeg/binaries"))
                    .ok()?
                    .flatten()
                    .map(|e| e.path())
                    .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("ffmpeg-")))
            })
        })
        .unwrap_or_else(|| panic!("no recent ffmpeg: run scripts/test, or set STREAMFLEET_MODERN_FFMPEG"))
}

#[tokio::test]
async fn hevc_over_srt_reaches_rtmp_players_as_enhanced_rtmp_hvc1() {
    let e = start(&[]).await;
    let url = format!("srt://{}?streamid=publish:demo-publish-key", e.srt);
    let publisher = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error:keyint=25"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-t", "30", "-f", "mpegts", &url])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg");
    let live = e.edge.wait_live("demo", 50, Duration::from_secs(20)).await;
    assert_eq!(live["video_codec"], "hevc", "{live}");
    let player = Command::new(modern_ffmpeg())
        .args(["-hide_banner", "-nostdin", "-i", &e.edge.url("demo"), "-t", "2", "-f", "null", "-"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg player");
    let (ok, stderr) = finish(player, Duration::from_secs(20)).await;
    assert!(ok, "{stderr}");
    assert!(stderr.contains("Video: hevc (Main)") && stderr.contains("320x240"), "{stderr}");
    assert!(stderr.contains("Audio: aac"), "{stderr}");
    assert!(!stderr.to_lowercase().contains("error"), "decoding errors: {stderr}");
    // And to SRT players, muxed back into MPEG-TS.
    let (ok, out, err) = srt_probe(e.srt, "demo").await;
    assert!(ok, "ffprobe over SRT failed: {err}");
    assert!(out.contains("codec_name=hevc|codec_type=video"), "{out}");
    assert!(out.contains("codec_name=aac|codec_type=audio"), "{out}");
    drop(publisher);
}

#[tokio::test]
async fn over_a_lossy_link_retransmission_keeps_playback_clean_and_the_loss_shows_in_the_metrics() {
    use std::sync::atomic::Ordering;
    use streamfleet_testkit::udp_relay::{Impairment, UdpRelay};
    let e = start(&["--srt-latency", "300ms"]).await;
    // 3 % of datagrams dropped and 2 % reordered, each way (acknowledgements and loss reports too).
    let relay = UdpRelay::start(e.srt, Impairment { drop_per_mille: 30, reorder_per_mille: 20, seed: 19 })
        .await
        .expect("relay");
    let publisher = srt_publish(relay.addr, "publish:demo-publish-key", 30, &["&latency=300000"]);
    e.edge.wait_live("demo", 60, Duration::from_secs(20)).await;
    let player = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            &e.edge.url("demo"),
            "-t",
            "4",
            "-f",
            "null",
            "-",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg player");
    let (ok, stderr) = finish(player, Duration::from_secs(20)).await;
    assert!(ok && stderr.trim().is_empty(), "decoding errors over the lossy link: {stderr}");
    assert!(relay.counts.dropped.load(Ordering::Relaxed) > 10, "the link was not lossy: {:?}", relay.counts);
    let lost = wait_until("the loss in the SRT link metrics", Duration::from_secs(5), || async {
        let naks = e.edge.metric("streamfleet_edge_srt_loss_reports{stream=\"demo\"}").await;
        let retransmitted = e.edge.metric("streamfleet_edge_srt_packets_retransmitted{stream=\"demo\"}").await;
        (naks > 0.0 && retransmitted > 0.0).then_some(retransmitted)
    })
    .await;
    let dropped = e.edge.metric("streamfleet_edge_srt_packets_dropped{stream=\"demo\"}").await;
    assert_eq!(dropped, 0.0, "{lost} packets retransmitted, {dropped} not recovered within the latency");
    // What the receiver found missing, and the link's round trip (patch 7 of srt-protocol).
    let missing = e.edge.metric("streamfleet_edge_srt_packets_lost{stream=\"demo\"}").await;
    assert!(missing > 0.0, "no lost packets counted over a link that dropped {:?}", relay.counts);
    let rtt = e.edge.metric("streamfleet_edge_srt_rtt_seconds{stream=\"demo\"}").await;
    assert!(rtt > 0.0 && rtt < 1.0, "round-trip time {rtt} s");
    drop(publisher);
}

/// The takeover counter reaches `n`. An SRT caller's handshake completes before the edge's
/// publisher task counts the takeover, so the count is awaited rather than read at once.
async fn takeover_count_reaches(e: &SrtEdge, n: f64) {
    let counted = wait_until("the takeover counted", Duration::from_secs(5), || async {
        let c = e.edge.metric("streamfleet_edge_takeovers_total").await;
        (c >= n).then_some(c)
    })
    .await;
    assert_eq!(counted, n);
}

#[tokio::test]
async fn takeover_policies_apply_across_protocols() {
    let e = start(&[]).await;
    // ReplaceIdle: an RTMP encoder gone silent (its connection still open) is replaced by an
    // SRT one within a second of the SRT connect, and its connection is closed.
    let mut dead = RawClient::connect(e.edge.rtmp).await;
    dead.publish("demo-publish-key").await.expect("RTMP publish");
    dead.send_video(fake_avc(true, 200), 0).await;
    e.edge.wait_live("demo", 1, Duration::from_secs(5)).await;
    wait_until("the RTMP publisher marked idle", Duration::from_secs(5), || async {
        e.edge.stream("demo").await.filter(|s| s["publisher_idle"] == true)
    })
    .await;
    let t0 = Instant::now();
    let mut srt = call(e.srt, "publish:demo-publish-key").await.expect("SRT caller admitted over the silent holder");
    let took = t0.elapsed();
    eprintln!("ReplaceIdle: SRT admitted {took:?} after connecting");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    takeover_count_reaches(&e, 1.0).await;
    assert!(dead.closed_within(Duration::from_secs(2)).await, "the replaced RTMP publisher is still connected");
    drop(srt.close().await);

    // Replace: a live SRT publisher of `backup` is replaced by an RTMP one at once, and the other
    // way round.
    let first = srt_publish(e.srt, "publish:backup-publish-key", 30, &[]);
    e.edge.wait_live("backup", 30, Duration::from_secs(20)).await;
    let mut rtmp = RawClient::connect(e.edge.rtmp).await;
    rtmp.publish("backup-publish-key").await.expect("RTMP replaces the live SRT publisher");
    let (ok, _) = finish(first, Duration::from_secs(10)).await;
    assert!(!ok, "the replaced SRT publisher (ffmpeg) ends with an error");
    assert_eq!(e.edge.metric("streamfleet_edge_takeovers_total").await, 2.0);
    rtmp.send_video(fake_avc(true, 200), 0).await;
    wait_until("the takeover cooldown over", Duration::from_secs(10), || async {
        // --takeover-cooldown (5 s) stops a second takeover right after the first.
        (call(e.srt, "publish:backup-publish-key").await.ok()).map(|s| (s, ()))
    })
    .await;
    takeover_count_reaches(&e, 3.0).await;
    assert!(rtmp.closed_within(Duration::from_secs(2)).await, "the replaced RTMP publisher is still connected");
}

#[tokio::test]
async fn sigterm_ends_srt_publishers_and_players_and_releases_the_lease() {
    use futures::StreamExt;
    let mut e = start(&[]).await;
    let mut publisher = call(e.srt, "publish:demo-publish-key").await.expect("SRT publisher admitted");
    e.edge.wait_live("demo", 0, Duration::from_secs(5)).await;
    let mut player = call(e.srt, "read:demo").await.expect("SRT player admitted");
    wait_until("the SRT player counted", Duration::from_secs(5), || async {
        (e.edge.metric("streamfleet_edge_players_active").await == 1.0).then_some(())
    })
    .await;

    let status = Command::new("kill").args(["-TERM", &e.edge.pid.to_string()]).status().await.expect("kill");
    assert!(status.success());
    // Both connections end (SRT has no status message: the caller sees its stream end).
    // A player receives nothing before the drain (the stream has no media): its next item is the end.
    let end = tokio::time::timeout(Duration::from_secs(5), player.next()).await;
    assert!(end.as_ref().is_ok_and(|r| r.as_ref().is_none_or(|r| r.is_err())), "SRT player not ended: {end:?}");
    let end = tokio::time::timeout(Duration::from_secs(5), publisher.next()).await;
    assert!(end.as_ref().is_ok_and(|r| r.as_ref().is_none_or(|r| r.is_err())), "SRT publisher not ended: {end:?}");
    let exit =
        tokio::time::timeout(Duration::from_secs(10), e.edge.child.wait()).await.expect("edge exits").expect("wait");
    assert!(exit.success(), "{exit}");
    // Its last lines reach the test through a pipe the test reads on its own, maybe after the exit.
    e.edge.wait_log("lease released", Duration::from_secs(5)).await;
}
