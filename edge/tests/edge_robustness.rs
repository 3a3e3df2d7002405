//! Hostile and broken clients against the edge binary: garbage input closes only the offending
//! connection, and a reader that stops reading neither slows other readers nor grows the
//! edge's memory without bound.

mod common;

use std::time::Duration;

use common::{
    Edge, RawClient, ffmpeg_publish, ffmpeg_publish_args, ffprobe, header, raw_handshake, set_chunk_size,
    socket_closed_within,
};
use rml_rtmp::sessions::ClientSessionEvent;
use streamfleet_testkit::wait::wait_until;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    time::Instant,
};

#[tokio::test]
async fn garbage_closes_only_the_offending_connection() {
    // --max-command-size and --max-message-size-unadmitted raised so the deeply nested
    // command below reaches the AMF0 guard.
    let edge = Edge::start(&[
        "--handshake-timeout",
        "1s",
        "--publish-timeout",
        "3s",
        "--max-message-size",
        "1MiB",
        "--max-message-size-unadmitted",
        "1MiB",
        "--max-command-size",
        "1MiB",
    ])
    .await;
    let publisher = ffmpeg_publish(&edge.url("demo-publish-key"), 40, 30);
    edge.wait_live("demo", 30, Duration::from_secs(20)).await;
    let mut player = RawClient::connect(edge.rtmp).await;
    player.play("demo").await.expect("player");

    // Random bytes instead of a handshake (first byte is not the RTMP version 3).
    let mut s = TcpStream::connect(edge.rtmp).await.unwrap();
    let mut junk: Vec<u8> = (0..4096).map(|_| rand::random::<u8>()).collect();
    junk[0] = 0x42;
    s.write_all(&junk).await.unwrap();
    assert!(socket_closed_within(&mut s, Duration::from_secs(3)).await, "random bytes");

    // A truncated handshake: closed by the handshake timeout.
    let mut s = TcpStream::connect(edge.rtmp).await.unwrap();
    s.write_all(&[3u8; 700]).await.unwrap();
    assert!(socket_closed_within(&mut s, Duration::from_secs(4)).await, "truncated handshake");

    // Chunk size 0 and 2^31.
    for size in [0u32, 1 << 31] {
        let mut s = raw_handshake(edge.rtmp).await;
        s.write_all(&set_chunk_size(size)).await.unwrap();
        assert!(socket_closed_within(&mut s, Duration::from_secs(3)).await, "chunk size {size}");
    }

    // A message announced larger than --max-message-size (rejected from its header alone).
    let mut s = raw_handshake(edge.rtmp).await;
    s.write_all(&header(9, 0x00FF_FFFF)).await.unwrap();
    s.write_all(&[0u8; 128]).await.unwrap();
    assert!(socket_closed_within(&mut s, Duration::from_secs(3)).await, "oversized message");

    // Random bytes after a valid handshake (a continuation chunk with no previous header).
    let mut s = raw_handshake(edge.rtmp).await;
    let mut junk: Vec<u8> = (0..2048).map(|_| rand::random::<u8>()).collect();
    junk[0] = 0xC0 | 17;
    s.write_all(&junk).await.unwrap();
    assert!(socket_closed_within(&mut s, Duration::from_secs(4)).await, "random chunks");

    // A command nested 50 000 objects deep (would overflow the stack of a recursive parser).
    let mut s = raw_handshake(edge.rtmp).await;
    let mut body = vec![2, 0, 7];
    body.extend_from_slice(b"connect");
    body.extend_from_slice(&[0, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0, 3]);
    for _ in 0..50_000 {
        body.extend_from_slice(&[0, 1, b'a', 3]);
    }
    let mut msg = set_chunk_size(65_536);
    msg.extend_from_slice(&header(20, body.len() as u32));
    let mut rest = &body[..];
    let mut first = true;
    while !rest.is_empty() {
        if !first {
            msg.push(0xC3);
        }
        first = false;
        let n = rest.len().min(65_536);
        msg.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
    s.write_all(&msg).await.unwrap();
    assert!(socket_closed_within(&mut s, Duration::from_secs(3)).await, "deep AMF0");

    // Counted, and the edge kept serving: the live player still receives video, a new player
    // starts, the publisher is still the same.
    assert!(edge.metric("streamfleet_edge_handshake_failures_total").await >= 2.0);
    assert!(edge.metric("streamfleet_edge_protocol_errors_total{kind=\"chunk\"}").await >= 3.0);
    assert_eq!(edge.metric("streamfleet_edge_protocol_errors_total{kind=\"message_too_large\"}").await, 1.0);
    assert_eq!(edge.metric("streamfleet_edge_protocol_errors_total{kind=\"amf0\"}").await, 1.0);
    player.events.clear();
    player.until("video after garbage", |e| matches!(e, ClientSessionEvent::VideoDataReceived { .. })).await.unwrap();
    let (ok, out, err) =
        ffprobe(&["-show_entries", "stream=codec_name", "-of", "compact"], &edge.url("demo"), Duration::from_secs(20))
            .await;
    assert!(ok && out.contains("h264"), "{out} {err}");
    assert_eq!(edge.metric("streamfleet_edge_publishers_active").await, 1.0);
    drop(publisher);
}

/// Reads video messages for `window` and returns how many arrived.
async fn count_video(client: &mut RawClient, window: Duration) -> usize {
    let deadline = Instant::now() + window;
    let mut buf = vec![0u8; 64 * 1024];
    let mut frames = 0;
    while let Ok(r) = tokio::time::timeout_at(deadline, client.socket.read(&mut buf)).await {
        let n = r.expect("normal reader read");
        assert!(n > 0, "normal reader disconnected");
        for res in client.session.handle_input(&buf[..n]).expect("normal reader input") {
            match res {
                rml_rtmp::sessions::ClientSessionResult::RaisedEvent(ClientSessionEvent::VideoDataReceived {
                    ..
                }) => frames += 1,
                rml_rtmp::sessions::ClientSessionResult::OutboundResponse(p) => {
                    client.socket.write_all(&p.bytes).await.unwrap()
                }
                _ => {}
            }
        }
    }
    frames
}

#[tokio::test]
async fn a_reader_that_stops_reading_does_not_slow_others_or_grow_memory() {
    let queue = 256 * 1024;
    let edge = Edge::start(&["--player-queue-bytes", "256KiB", "--slow-player-timeout", "3s"]).await;
    // ~2 Mbit/s so the stalled reader's socket buffers fill within a second or two.
    let publisher =
        ffmpeg_publish_args(&edge.url("demo-publish-key"), 60, 30, &["-b:v", "2M", "-minrate", "2M", "-bufsize", "1M"]);
    edge.wait_live("demo", 30, Duration::from_secs(20)).await;
    let rss_before = edge.rss_kib();

    // The slow reader: tiny receive buffer, plays, then never reads again.
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stalled = sock.connect(edge.rtmp).await.unwrap();
    let mut slow = RawClient::connect_socket(stalled).await;
    slow.play("demo").await.expect("slow player accepted");
    let slow_id = edge
        .sessions()
        .await
        .iter()
        .filter(|s| s["role"] == "player")
        .filter_map(|s| s["id"].as_u64())
        .max()
        .expect("slow player session");

    let mut normal = RawClient::connect(edge.rtmp).await;
    normal.play("demo").await.expect("normal player accepted");
    // Skip the fast-start burst, then measure steady delivery while the slow reader is stuck.
    count_video(&mut normal, Duration::from_millis(500)).await;
    let window = Duration::from_secs(3);
    let frames = count_video(&mut normal, window).await;
    eprintln!("normal reader got {frames} video frames in {window:?} (stream: 30 fps)");
    assert!(frames >= 80, "normal reader slowed down: {frames} frames in 3 s");

    // The slow reader's queue stays bounded and it drops frames...
    let max_queued = std::sync::atomic::AtomicU64::new(0);
    wait_until("slow player dropping", Duration::from_secs(10), || async {
        let sessions = edge.sessions().await;
        let s = sessions.iter().find(|s| s["id"].as_u64() == Some(slow_id))?;
        max_queued.fetch_max(s["queued_bytes"].as_u64().unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
        (s["dropped_messages"].as_u64().unwrap_or(0) > 0).then_some(())
    })
    .await;
    let max_queued = max_queued.into_inner();
    eprintln!("slow reader queue peaked at {max_queued} bytes (bound {queue})");
    assert!(max_queued <= queue as u64, "queued {max_queued} > {queue}");
    assert!(edge.metric("streamfleet_edge_slow_player_dropped_messages_total").await > 0.0);
    // ...and is disconnected once it has been too slow for --slow-player-timeout.
    wait_until("slow player disconnected", Duration::from_secs(15), || async {
        (edge.metric("streamfleet_edge_slow_player_disconnects_total").await >= 1.0).then_some(())
    })
    .await;
    let rss_after = edge.rss_kib();
    eprintln!("edge RSS {rss_before} KiB -> {rss_after} KiB");
    assert!(rss_after < rss_before + 32 * 1024, "RSS grew from {rss_before} to {rss_after} KiB");
    // The normal reader is unaffected throughout.
    let frames = count_video(&mut normal, Duration::from_secs(1)).await;
    assert!(frames >= 20, "{frames}");
    drop(publisher);
}

#[tokio::test]
async fn connection_limits_and_timeouts_apply() {
    let edge = Edge::start(&["--max-connections-per-ip", "2", "--publish-timeout", "1s"]).await;
    // A client that connects but never publishes or plays is closed by --publish-timeout.
    let mut idle = RawClient::connect(edge.rtmp).await;
    let mut second = TcpStream::connect(edge.rtmp).await.unwrap();
    // A third connection from the same address is refused at once.
    let mut third = TcpStream::connect(edge.rtmp).await.unwrap();
    assert!(socket_closed_within(&mut third, Duration::from_secs(2)).await, "per-IP limit");
    assert_eq!(edge.metric("streamfleet_edge_connections_refused_total{reason=\"max_connections_per_ip\"}").await, 1.0);
    assert!(idle.closed_within(Duration::from_secs(3)).await, "publish timeout");
    assert!(socket_closed_within(&mut second, Duration::from_secs(8)).await, "handshake timeout");
    // Slots are returned: a new client connects and plays.
    wait_until("connections closed", Duration::from_secs(5), || async {
        (edge.metric("streamfleet_edge_connections_active").await == 0.0).then_some(())
    })
    .await;
    let mut c = RawClient::connect(edge.rtmp).await;
    let err = c.play("no-such").await.expect_err("not found");
    assert!(err.contains("StreamNotFound"), "{err}");
}
