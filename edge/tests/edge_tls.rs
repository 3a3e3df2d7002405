//! RTMPS (`--rtmps-listen`): real clients (ffmpeg, whose TLS is GnuTLS, and GStreamer's
//! rtmp2) over TLS, the wrong protocol on each port, the handshake's limits, and certificate
//! rotation while clients are live. Certificates are made at test time.

mod common;

use std::{process::Stdio, time::Duration};

use common::{
    Edge, TempFile, ffmpeg_publish, ffprobe, finish,
    tls::{PairFiles, connect_from, make_pair, rtmps_url, start_tls_edge, tls_connect},
};
use streamfleet_testkit::wait::wait_until;
use tokio::{io::AsyncWriteExt, process::Command, time::Instant};

/// ffmpeg recording a stream for `seconds` into an FLV file.
fn ffmpeg_record(url: &str, seconds: u32, out: &TempFile) -> tokio::process::Child {
    streamfleet_testkit::require_tool("ffmpeg");
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "warning", "-y", "-rw_timeout", "15000000", "-i", url])
        .args(["-t", &seconds.to_string(), "-c", "copy", "-f", "flv"])
        .arg(&out.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg")
}

async fn duration_of(file: &TempFile) -> f64 {
    let (ok, out, err) = ffprobe(
        &["-show_entries", "format=duration", "-of", "csv=p=0"],
        &file.0.display().to_string(),
        Duration::from_secs(20),
    )
    .await;
    assert!(ok, "ffprobe of the recording failed: {err}");
    out.trim().parse().unwrap_or(0.0)
}

async fn frames_in(edge: &Edge) -> u64 {
    edge.stream("demo").await.and_then(|s| s["frames_in"].as_u64()).unwrap_or(0)
}

#[tokio::test]
async fn ffmpeg_publishes_and_plays_over_rtmps() {
    let (edge, rtmps, _files, _) = start_tls_edge(&[]).await;
    let publisher = ffmpeg_publish(&rtmps_url(rtmps, "demo-publish-key"), 8, 30);
    edge.wait_live("demo", 30, Duration::from_secs(20)).await;

    let sessions = edge.sessions().await;
    let publisher_session = sessions.iter().find(|s| s["role"] == "publisher").expect("a publisher session");
    assert_eq!(publisher_session["transport"], "rtmps", "{sessions:?}");
    assert!(publisher_session["tc_url"].as_str().unwrap_or("").starts_with("rtmps://"), "{sessions:?}");

    // Played over TLS and over plain RTMP at once: same stream, same admission.
    let (ok, out, err) = ffprobe(
        &["-select_streams", "v", "-show_entries", "packet=pts", "-read_intervals", "%+#30", "-of", "csv=p=0"],
        &rtmps_url(rtmps, "demo"),
        Duration::from_secs(20),
    )
    .await;
    assert!(ok, "ffprobe over rtmps failed: {err}\n{}", edge.logs());
    assert!(out.lines().count() >= 30, "expected 30 video packets over rtmps, got:\n{out}");
    let (ok, out, err) = ffprobe(
        &["-select_streams", "v", "-show_entries", "packet=pts", "-read_intervals", "%+#10", "-of", "csv=p=0"],
        &edge.url("demo"),
        Duration::from_secs(20),
    )
    .await;
    assert!(ok && out.lines().count() >= 10, "plain RTMP player beside the TLS publisher: {err}\n{out}");

    let (ok, err) = finish(publisher, Duration::from_secs(30)).await;
    assert!(ok, "ffmpeg publisher over rtmps failed: {err}");
    let handshakes = edge.metric("streamfleet_edge_tls_handshake_seconds_count").await;
    let seconds = edge.metric("streamfleet_edge_tls_handshake_seconds_sum").await;
    assert!(handshakes >= 2.0, "the publisher's and the player's handshakes are measured");
    eprintln!("TLS handshakes: {handshakes}, mean {:.2} ms (debug build)", seconds / handshakes * 1000.0);
    assert_eq!(edge.metric("streamfleet_edge_connections_accepted_total{transport=\"rtmps\"}").await, handshakes);
}

/// GStreamer's rtmp2src (GLib's TLS stack) plays what ffmpeg publishes over RTMPS.
#[tokio::test]
async fn gstreamer_plays_over_rtmps() {
    let gst = streamfleet_testkit::require_tool("gst-launch-1.0");
    let (edge, rtmps, _files, _) = start_tls_edge(&[]).await;
    let publisher = ffmpeg_publish(&rtmps_url(rtmps, "demo-publish-key"), 8, 30);
    edge.wait_live("demo", 30, Duration::from_secs(20)).await;
    // GLib checks the certificate and has no way to trust a test one but this.
    let play = format!(
        "rtmp2src location={} tls-validation-flags=0 ! flvdemux ! fakesink sync=false",
        rtmps_url(rtmps, "demo")
    );
    let _player = Command::new(&gst)
        .arg("-q")
        .args(play.split(' '))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn gst-launch-1.0");
    wait_until("a GStreamer player receiving over rtmps", Duration::from_secs(20), || async {
        edge.sessions()
            .await
            .iter()
            .any(|s| {
                s["role"] == "player" && s["transport"] == "rtmps" && s["bytes_sent"].as_u64().unwrap_or(0) > 20_000
            })
            .then_some(())
    })
    .await;
    let (ok, err) = finish(publisher, Duration::from_secs(30)).await;
    assert!(ok, "ffmpeg publisher failed: {err}");
}

#[tokio::test]
async fn the_wrong_protocol_on_either_port_fails_cleanly_and_disturbs_no_one() {
    let (edge, rtmps, _files, _) = start_tls_edge(&[]).await;
    let publisher = ffmpeg_publish(&rtmps_url(rtmps, "demo-publish-key"), 10, 30);
    edge.wait_live("demo", 30, Duration::from_secs(20)).await;

    // A plain RTMP client on the TLS port: its C0+C1 is no ClientHello.
    let plain_on_tls = tokio::net::TcpStream::connect(rtmps).await.unwrap();
    let refused =
        streamfleet_testkit::rtmp_client::handshake(plain_on_tls, Instant::now() + Duration::from_secs(5)).await;
    assert!(refused.is_err(), "an RTMP handshake on the TLS port must fail");
    // Garbage: the same.
    let mut garbage = tokio::net::TcpStream::connect(rtmps).await.unwrap();
    garbage.write_all(&[0x42; 600]).await.unwrap();
    assert!(common::socket_closed_within(&mut garbage, Duration::from_secs(3)).await, "garbage closes the connection");
    wait_until("two not_tls failures counted", Duration::from_secs(5), || async {
        (edge.metric("streamfleet_edge_tls_handshake_failures_total{reason=\"not_tls\"}").await == 2.0).then_some(())
    })
    .await;

    // A TLS client on the plain port: its ClientHello is no RTMP handshake.
    let tls_on_plain = tls_connect(edge.rtmp, None).await;
    assert!(tls_on_plain.is_err(), "TLS on the plain RTMP port must fail");
    wait_until("the RTMP handshake failure counted", Duration::from_secs(5), || async {
        (edge.metric("streamfleet_edge_handshake_failures_total").await >= 1.0).then_some(())
    })
    .await;

    // The publisher never noticed.
    let before = frames_in(&edge).await;
    wait_until("the TLS publisher still sending", Duration::from_secs(5), || async {
        (frames_in(&edge).await > before + 30).then_some(())
    })
    .await;
    let (ok, err) = finish(publisher, Duration::from_secs(30)).await;
    assert!(ok, "the publisher was disturbed: {err}");
}

#[tokio::test]
async fn a_slow_loris_tls_handshake_times_out() {
    let (edge, rtmps, _files, _) = start_tls_edge(&["--tls-handshake-timeout", "1s"]).await;
    let mut socket = tokio::net::TcpStream::connect(rtmps).await.unwrap();
    // A TLS record header announcing a ClientHello, then nothing.
    socket.write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01]).await.unwrap();
    let started = Instant::now();
    assert!(common::socket_closed_within(&mut socket, Duration::from_secs(5)).await, "the edge must close it");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(3), "closed after {took:?}, not ~1 s");
    assert_eq!(edge.metric("streamfleet_edge_tls_handshake_failures_total{reason=\"timeout\"}").await, 1.0);
    // And a real client is served meanwhile and after.
    assert!(tls_connect(rtmps, None).await.is_ok());
}

#[tokio::test]
async fn the_per_ip_limit_applies_before_the_tls_handshake() {
    let (edge, rtmps, _files, _) =
        start_tls_edge(&["--max-connections-per-ip", "2", "--tls-handshake-timeout", "20s"]).await;
    // Two connections from 127.0.0.1 that never start a handshake hold both slots.
    let _a = connect_from(rtmps, Some("127.0.0.1")).await.unwrap();
    let _b = connect_from(rtmps, Some("127.0.0.1")).await.unwrap();
    wait_until("two connections accepted", Duration::from_secs(5), || async {
        (edge.metric("streamfleet_edge_connections_accepted_total{transport=\"rtmps\"}").await == 2.0).then_some(())
    })
    .await;
    // The third is closed at once, long before the 20 s handshake timeout.
    let mut third = connect_from(rtmps, Some("127.0.0.1")).await.unwrap();
    assert!(common::socket_closed_within(&mut third, Duration::from_secs(2)).await, "refused at accept");
    assert_eq!(edge.metric("streamfleet_edge_connections_refused_total{reason=\"max_connections_per_ip\"}").await, 1.0);
    assert_eq!(edge.metric("streamfleet_edge_tls_handshake_seconds_count").await, 0.0, "no TLS work for them");
    // Another address is not affected.
    assert!(tls_connect(rtmps, Some("127.0.0.2")).await.is_ok());
}

#[tokio::test]
async fn certificate_rotation_keeps_live_clients_and_new_handshakes_get_the_new_pair() {
    let (edge, rtmps, files, first_der) = start_tls_edge(&["--tls-reload-interval", "200ms"]).await;
    let publisher = ffmpeg_publish(&rtmps_url(rtmps, "demo-publish-key"), 14, 30);
    edge.wait_live("demo", 30, Duration::from_secs(20)).await;
    let recording = TempFile::new("rotation.flv", "");
    let player = ffmpeg_record(&rtmps_url(rtmps, "demo"), 8, &recording);
    wait_until("the player over rtmps", Duration::from_secs(15), || async {
        edge.sessions().await.iter().any(|s| s["role"] == "player").then_some(())
    })
    .await;
    assert_eq!(tls_connect(rtmps, None).await.unwrap().1, first_der, "the first pair is served");

    // Rotation: serial 2. New handshakes see it once the edge has polled.
    let (cert, key, second_der) = make_pair(2);
    files.replace(&cert, &key);
    let seen = wait_until("a handshake with the new certificate", Duration::from_secs(5), || async {
        tls_connect(rtmps, None).await.ok().map(|(_, der)| der).filter(|der| *der == second_der)
    })
    .await;
    assert_eq!(seen, second_der);
    assert_eq!(edge.metric("streamfleet_edge_tls_certificate_reloads_total{result=\"ok\"}").await, 1.0);
    // The files were written one after the other (key first): a poll between the two saw a
    // mismatched pair, which is not an error until it stays.
    assert_eq!(edge.metric("streamfleet_edge_tls_certificate_reloads_total{result=\"error\"}").await, 0.0);

    // A bad pair (a key that belongs to another certificate) is refused; serial 2 keeps serving.
    let (_, other_key, _) = make_pair(3);
    files.replace(&cert, &other_key);
    edge.wait_log("new TLS certificate refused", Duration::from_secs(5)).await;
    assert_eq!(edge.metric("streamfleet_edge_tls_certificate_reloads_total{result=\"error\"}").await, 1.0);
    assert_eq!(edge.metric("streamfleet_edge_tls_certificate_stale").await, 1.0);
    assert_eq!(tls_connect(rtmps, None).await.unwrap().1, second_der, "the previous pair keeps serving");
    assert!(!edge.logs().contains("PRIVATE KEY"), "no key material in the logs");

    // The clients that were live through both changes kept going.
    let (ok, err) = finish(player, Duration::from_secs(30)).await;
    assert!(ok, "the rtmps player broke: {err}");
    let recorded = duration_of(&recording).await;
    assert!(recorded >= 7.0, "the player recorded {recorded} s of 8 across the rotation");
    let (ok, err) = finish(publisher, Duration::from_secs(30)).await;
    assert!(ok, "the rtmps publisher broke: {err}");
    // A good pair again clears the stale flag.
    let (cert, key, third_der) = make_pair(4);
    files.replace(&cert, &key);
    wait_until("the fixed pair served", Duration::from_secs(5), || async {
        tls_connect(rtmps, None).await.ok().filter(|(_, der)| *der == third_der).map(|_| ())
    })
    .await;
    assert_eq!(edge.metric("streamfleet_edge_tls_certificate_stale").await, 0.0);
}

#[tokio::test]
async fn a_bad_pair_at_start_stops_the_edge_with_a_clear_error() {
    let (cert, _, _) = make_pair(1);
    let (_, other_key, _) = make_pair(2);
    let files = PairFiles { cert: TempFile::new("cert.pem", &cert), key: TempFile::new("key.pem", &other_key) };
    let streams = TempFile::new("streams.yaml", common::STREAMS_YAML);
    let out = Command::new(env!("CARGO_BIN_EXE_streamfleet-edge"))
        .args(["--streams", &streams.0.display().to_string(), "--rtmp-listen", "127.0.0.1:0"])
        .args(["--http-listen", "127.0.0.1:0", "--rtmps-listen", "127.0.0.1:0"])
        .args([
            "--tls-cert-file",
            &files.cert.0.display().to_string(),
            "--tls-key-file",
            &files.key.0.display().to_string(),
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out).await.expect("the edge exits").expect("run the edge");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("RTMPS certificate") && stderr.contains("does not belong"), "{stderr}");
}

/// `--rtmp-enabled false`: TLS only. Nothing listens on the plain port; RTMPS works.
#[tokio::test]
async fn a_tls_only_edge_has_no_plain_port() {
    let (files, _) = PairFiles::new(1);
    let streams = TempFile::new("streams.yaml", common::STREAMS_YAML);
    let plain_port = streamfleet_testkit::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamfleet-edge"))
        .args(["--streams", &streams.0.display().to_string(), "--rtmp-enabled", "false"])
        .args(["--rtmp-listen", &format!("127.0.0.1:{plain_port}"), "--http-listen", "127.0.0.1:0"])
        .args(["--rtmps-listen", "127.0.0.1:0", "--tls-cert-file", &files.cert.0.display().to_string()])
        .args(["--tls-key-file", &files.key.0.display().to_string()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the edge");
    let logs = streamfleet_testkit::child_output::OutputLines::capture(&mut child);
    let [rtmps, http] = logs
        .wait_addrs(&mut child, "edge", ["rtmps listening addr=", "http listening addr="], Duration::from_secs(20))
        .await;
    assert_eq!(logs.count("rtmp listening"), 0, "no plain RTMP listener is announced");
    let plain = tokio::net::TcpStream::connect(("127.0.0.1", plain_port)).await;
    assert!(plain.is_err(), "nothing listens on the plain port");
    let publisher = ffmpeg_publish(&rtmps_url(rtmps, "demo-publish-key"), 3, 30);
    let (ok, err) = finish(publisher, Duration::from_secs(30)).await;
    assert!(ok, "ffmpeg over rtmps to a TLS-only edge: {err}\n{}", logs.text());
    let (_, metrics) = common::http_get(http, "/metrics").await;
    let published = streamfleet_testkit::http::metric_value(
        &metrics,
        "streamfleet_edge_connections_accepted_total{transport=\"rtmps\"}",
    );
    assert!(published >= 1.0, "{metrics}");
}
