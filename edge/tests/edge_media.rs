//! Real-client tests of the edge binary: ffmpeg publishes, ffprobe plays; admission by key,
//! rejection of a second publisher, fast republish, takeover of a silent publisher, fast start
//! on a keyframe, maxViewers, connections packed onto the first of two worker threads.

mod common;

use std::time::Duration;

use common::{Edge, RawClient, ffmpeg_publish, ffprobe, finish};
use streamfleet_testkit::{
    rtmp_client::{fake_aac, fake_avc},
    wait::wait_until,
};
use tokio::time::Instant;

/// The first `count` video packets a new player of `name` gets, as ffprobe prints them
/// (`packet|pts=…|flags=…`, `K` for a keyframe).
async fn first_video_packets(edge: &Edge, name: &str, count: u32) -> Vec<String> {
    let interval = format!("%+#{count}");
    let args = ["-select_streams", "v", "-show_packets", "-read_intervals", &interval];
    let args = [&args[..], &["-show_entries", "packet=pts,flags", "-of", "compact"]].concat();
    let (ok, out, err) = ffprobe(&args, &edge.url(name), Duration::from_secs(20)).await;
    assert!(ok, "ffprobe failed: {err}");
    out.lines().filter(|l| l.starts_with("packet")).map(str::to_string).collect()
}

#[tokio::test]
async fn ffmpeg_publish_is_played_by_ffprobe_with_h264_and_aac() {
    let edge = Edge::start(&[]).await;
    let publisher = ffmpeg_publish(&edge.url("demo-publish-key"), 30, 30);
    edge.wait_live("demo", 30, Duration::from_secs(20)).await;

    let (ok, out, err) = ffprobe(
        &["-show_entries", "stream=codec_type,codec_name", "-of", "compact"],
        &edge.url("demo"),
        Duration::from_secs(20),
    )
    .await;
    assert!(ok, "ffprobe failed: {err}\n{}", edge.logs());
    assert!(out.contains("codec_name=h264|codec_type=video"), "{out}");
    assert!(out.contains("codec_name=aac|codec_type=audio"), "{out}");
    assert_eq!(out.lines().count(), 2, "exactly one video and one audio stream: {out}");

    // The session table records the publisher with its flashVer, the metrics count bytes.
    let sessions = edge.sessions().await;
    let publisher_session = sessions.iter().find(|s| s["role"] == "publisher").expect("publisher session");
    assert!(publisher_session["flash_ver"].as_str().unwrap_or_default().starts_with("FMLE/"), "{publisher_session}");
    assert_eq!(publisher_session["playback_name"], "demo");
    assert!(edge.metric("streamfleet_edge_bytes_received_total").await > 10_000.0);
    assert!(edge.metric("streamfleet_edge_bytes_sent_total").await > 10_000.0);
    assert_eq!(edge.metric("streamfleet_edge_time_to_first_frame_seconds_count").await, 1.0);
    // One admission timed, publish request to live: well under a second on loopback.
    let admission = "streamfleet_edge_publish_admission_seconds";
    assert_eq!(edge.metric(&format!("{admission}_count{{protocol=\"rtmp\"}}")).await, 1.0);
    let took = edge.metric(&format!("{admission}_sum{{protocol=\"rtmp\"}}")).await;
    assert!(took > 0.0 && took < 1.0, "admission took {took} s");
    drop(publisher);
}

#[tokio::test]
async fn with_two_worker_threads_a_light_load_runs_on_the_first_and_plays_intact() {
    let edge = Edge::start(&["--worker-threads", "2"]).await;
    let publisher = ffmpeg_publish(&edge.url("demo-publish-key"), 30, 30);
    edge.wait_live("demo", 30, Duration::from_secs(20)).await;

    let packets = first_video_packets(&edge, "demo", 60).await;
    assert_eq!(packets.len(), 60, "{packets:?}");
    assert!(packets[0].contains("flags=K"), "first video packet is not a keyframe: {packets:?}");
    // The player is gone; the publisher alone is left, on the first worker: one thread carries
    // this load, so the second is never woken for it.
    let worker = |i: u32| format!("streamfleet_edge_worker_connections{{worker=\"{i}\"}}");
    wait_until("the player's connection counted off", Duration::from_secs(5), || async {
        (edge.metric(&worker(0)).await == 1.0).then_some(())
    })
    .await;
    assert_eq!(edge.metric(&worker(1)).await, 0.0);
    let busy = edge.metric("streamfleet_edge_worker_busy_ratio{worker=\"1\"}").await;
    assert!(busy < 0.05, "the second worker was busy {busy} without a connection");
    drop(publisher);
}

#[tokio::test]
async fn second_publisher_and_wrong_key_are_rejected_without_disturbing_the_live_one() {
    let edge = Edge::start(&[]).await;
    let first = ffmpeg_publish(&edge.url("demo-publish-key"), 30, 30);
    let before = edge.wait_live("demo", 30, Duration::from_secs(20)).await;

    let t0 = Instant::now();
    let second = ffmpeg_publish(&edge.url("demo-publish-key"), 5, 30);
    let (ok, stderr) = finish(second, Duration::from_secs(15)).await;
    assert!(!ok, "second publisher must fail");
    assert!(stderr.contains("already being published"), "stderr: {stderr}");
    // ReplaceIdle waits at most --takeover-wait (2 s) for a live holder to go idle.
    assert!(t0.elapsed() < Duration::from_secs(6), "rejection took {:?}", t0.elapsed());
    assert_eq!(edge.metric("streamfleet_edge_publish_rejections_total{reason=\"already_active\"}").await, 1.0);

    let wrong = ffmpeg_publish(&edge.url("not-a-key"), 5, 30);
    let (ok, stderr) = finish(wrong, Duration::from_secs(15)).await;
    assert!(!ok);
    assert!(stderr.contains("unknown stream key"), "stderr: {stderr}");
    assert_eq!(edge.metric("streamfleet_edge_publish_rejections_total{reason=\"unknown_key\"}").await, 1.0);

    // The first publisher kept going: same session, frames still arriving.
    let after = edge.stream("demo").await.expect("stream");
    assert_eq!(after["publisher_remote_addr"], before["publisher_remote_addr"]);
    let frames = after["frames_in"].as_u64().unwrap();
    edge.wait_live("demo", frames + 30, Duration::from_secs(10)).await;
    assert_eq!(edge.metric("streamfleet_edge_publishers_active").await, 1.0);
    drop(first);
}

#[tokio::test]
async fn republish_after_the_publisher_stops_is_admitted_within_a_second() {
    let edge = Edge::start(&[]).await;
    let mut first = ffmpeg_publish(&edge.url("demo-publish-key"), 30, 30);
    edge.wait_live("demo", 30, Duration::from_secs(20)).await;
    first.kill().await.expect("kill first publisher");
    first.wait().await.ok();

    let t0 = Instant::now();
    let second = ffmpeg_publish(&edge.url("demo-publish-key"), 30, 30);
    let old = edge.stream("demo").await.and_then(|s| s["publisher_remote_addr"].as_str().map(String::from));
    let admitted = wait_until("second publisher admitted", Duration::from_secs(5), || async {
        let s = edge.stream("demo").await?;
        let addr = s["publisher_remote_addr"].as_str()?.to_string();
        (s["live"] == true && Some(&addr) != old.as_ref()).then_some(t0.elapsed())
    })
    .await;
    // The edge's part: from the new connection's accept to its admission.
    let stream = edge.stream("demo").await.expect("stream");
    let session = edge
        .sessions()
        .await
        .into_iter()
        .find(|s| s["role"] == "publisher" && s["remote_addr"] == stream["publisher_remote_addr"])
        .expect("publisher session");
    let at = |v: &serde_json::Value| humantime::parse_rfc3339(v.as_str().unwrap_or_default()).expect("timestamp");
    let edge_side = at(&stream["publisher_since"]).duration_since(at(&session["started_at"])).unwrap_or_default();
    eprintln!("republish admitted {admitted:?} after the first publisher stopped ({edge_side:?} from TCP accept)");
    assert!(edge_side < Duration::from_secs(1), "admission took {edge_side:?}");
    // End to end includes ffmpeg's own start-up (encoder init, connect).
    assert!(admitted < Duration::from_secs(2), "took {admitted:?}");
    assert_eq!(edge.metric("streamfleet_edge_publish_rejections_total{reason=\"already_active\"}").await, 0.0);
    drop(second);
}

#[tokio::test]
async fn silently_dead_encoder_is_replaced_within_a_second_of_reconnecting() {
    let edge = Edge::start(&[]).await;
    // An encoder that publishes, then goes silent with its TCP connection still open.
    let mut dead = RawClient::connect(edge.rtmp).await;
    dead.publish("demo-publish-key").await.expect("first publish");
    dead.send_video(fake_avc(true, 200), 0).await;
    dead.send_video(fake_avc(false, 100), 33).await;
    edge.wait_live("demo", 2, Duration::from_secs(5)).await;
    // The edge notices the silence and tells the registry it is idle.
    wait_until("publisher marked idle", Duration::from_secs(5), || async {
        edge.stream("demo").await.filter(|s| s["publisher_idle"] == true)
    })
    .await;

    let t0 = Instant::now();
    let mut fresh = RawClient::connect(edge.rtmp).await;
    fresh.publish("demo-publish-key").await.expect("reconnecting encoder admitted");
    let took = t0.elapsed();
    eprintln!("takeover of a silent publisher took {took:?} from the reconnect");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(edge.metric("streamfleet_edge_takeovers_total").await, 1.0);
    // The old connection is dropped at once.
    assert!(dead.closed_within(Duration::from_secs(2)).await, "old publisher still connected");
    fresh.send_video(fake_avc(true, 200), 0).await;
    wait_until("new publisher's frames", Duration::from_secs(5), || async {
        edge.stream("demo").await.filter(|s| s["live"] == true && s["publisher_idle"] == false)
    })
    .await;
}

#[tokio::test]
async fn reject_policy_refuses_even_a_silent_holder() {
    let edge = Edge::start(&[]).await;
    let mut holder = RawClient::connect(edge.rtmp).await;
    holder.publish("solo-publish-key").await.expect("first publish");
    holder.send_video(fake_avc(true, 100), 0).await;
    wait_until("publisher marked idle", Duration::from_secs(5), || async {
        edge.stream("solo").await.filter(|s| s["publisher_idle"] == true)
    })
    .await;
    let mut second = RawClient::connect(edge.rtmp).await;
    let err = second.publish("solo-publish-key").await.expect_err("Reject policy");
    assert!(err.contains("BadName"), "{err}");
    assert_eq!(edge.metric("streamfleet_edge_takeovers_total").await, 0.0);
    assert!(!holder.closed_within(Duration::from_millis(200)).await, "holder must stay connected");
}

/// An encoder that drops its connection and reconnects at once (same key, Reject policy) can
/// reach admission before the edge has read the old connection's close: it is admitted, every
/// time, because admission waits (briefly, for the event) for the local holder to end.
#[tokio::test]
async fn reject_policy_admits_an_encoder_reconnecting_at_once_every_time() {
    let edge = Edge::start(&[]).await;
    let mut current = RawClient::connect(edge.rtmp).await;
    current.publish("solo-publish-key").await.expect("first publish");
    for round in 0..100 {
        current.send_video(fake_avc(true, 100), round * 33).await;
        drop(current);
        current = RawClient::connect(edge.rtmp).await;
        if let Err(e) = current.publish("solo-publish-key").await {
            panic!("round {round}: immediate reconnect refused: {e}\n{}", edge.logs());
        }
    }
    assert_eq!(edge.metric("streamfleet_edge_publish_rejections_total{reason=\"already_active\"}").await, 0.0);
}

#[tokio::test]
async fn mid_stream_player_gets_a_keyframe_first_without_waiting_for_the_next_one() {
    let edge = Edge::start(&[]).await;
    // 2 s GOP; join at a random point inside a GOP (after > 1 GOP of stream).
    let publisher = ffmpeg_publish(&edge.url("demo-publish-key"), 40, 60);
    edge.wait_live("demo", 200, Duration::from_secs(20)).await;

    let packets = first_video_packets(&edge, "demo", 5).await;
    assert!(packets.len() >= 2, "{packets:?}");
    assert!(packets[0].contains("flags=K"), "first video packet is not a keyframe: {packets:?}");
    // Fast start: the cached GOP is sent at once, so the first frame does not wait for the next
    // keyframe (which can be up to 2 s away); the histogram has the observation.
    assert_eq!(edge.metric("streamfleet_edge_time_to_first_frame_seconds_count").await, 1.0);
    let ttff = edge.metric("streamfleet_edge_time_to_first_frame_seconds_sum").await;
    eprintln!("time to first frame: {:.1} ms", ttff * 1000.0);
    assert!(ttff < 0.5, "time to first frame {ttff} s");
    drop(publisher);
}

/// With `--gop-cache-total-bytes` too small for any GOP the stream keeps none: the metrics say
/// so, and a player still starts cleanly, at the next keyframe.
#[tokio::test]
async fn a_gop_over_the_edges_cache_budget_is_not_kept_and_players_start_at_the_next_keyframe() {
    let edge = Edge::start(&["--gop-cache-total-bytes", "1024"]).await;
    let publisher = ffmpeg_publish(&edge.url("demo-publish-key"), 40, 30);
    edge.wait_live("demo", 60, Duration::from_secs(20)).await;
    assert_eq!(edge.metric("streamfleet_edge_gop_cache_limit_bytes").await, 1024.0);
    assert!(edge.metric("streamfleet_edge_gop_cache_refusals_total").await >= 1.0);
    assert!(edge.metric("streamfleet_edge_gop_cache_bytes").await <= 1024.0);
    assert_eq!(edge.stream("demo").await.expect("stream listed")["gop_cache_frames"], 0);

    let packets = first_video_packets(&edge, "demo", 3).await;
    let first = packets.first().map(String::as_str).unwrap_or_default();
    assert!(first.contains("flags=K"), "first video packet is not a keyframe: {packets:?}");
    drop(publisher);
}

#[tokio::test]
async fn player_waits_for_the_stream_and_unknown_names_are_not_found() {
    let edge = Edge::start(&["--play-wait-timeout", "10s"]).await;
    let mut nope = RawClient::connect(edge.rtmp).await;
    let err = nope.play("no-such-stream").await.expect_err("unknown playback name");
    assert!(err.contains("StreamNotFound"), "{err}");

    // A player that arrives before the publisher is accepted once the stream goes live.
    let mut early = RawClient::connect(edge.rtmp).await;
    let r = early.session.request_playback("demo".into());
    early.one(r).await;
    let publisher = ffmpeg_publish(&edge.url("demo-publish-key"), 30, 30);
    early
        .until("play accepted after publish", |e| {
            matches!(e, rml_rtmp::sessions::ClientSessionEvent::PlaybackRequestAccepted)
        })
        .await
        .expect("early player accepted");
    early
        .until("video", |e| matches!(e, rml_rtmp::sessions::ClientSessionEvent::VideoDataReceived { .. }))
        .await
        .expect("early player receives video");
    assert_eq!(edge.metric("streamfleet_edge_play_rejections_total{reason=\"not_found\"}").await, 1.0);
    drop(publisher);
}

#[tokio::test]
async fn max_viewers_is_enforced() {
    let edge = Edge::start(&[]).await;
    let mut publisher = RawClient::connect(edge.rtmp).await;
    publisher.publish("limited-publish-key").await.unwrap();
    publisher.send_video(fake_avc(true, 100), 0).await;
    let mut first = RawClient::connect(edge.rtmp).await;
    first.play("limited").await.expect("first viewer");
    let mut second = RawClient::connect(edge.rtmp).await;
    let err = second.play("limited").await.expect_err("over maxViewers");
    assert!(err.contains("Failed"), "{err}");
    assert_eq!(edge.metric("streamfleet_edge_play_rejections_total{reason=\"max_viewers\"}").await, 1.0);
    drop(first);
    // The slot frees when the first viewer leaves.
    wait_until("viewer slot freed", Duration::from_secs(5), || async {
        (edge.metric("streamfleet_edge_players_active").await == 0.0).then_some(())
    })
    .await;
    let mut third = RawClient::connect(edge.rtmp).await;
    third.play("limited").await.expect("slot reused");
}

#[tokio::test]
async fn idle_publisher_is_disconnected_and_its_stream_freed() {
    let edge = Edge::start(&["--idle-publisher-timeout", "1s"]).await;
    let mut quiet = RawClient::connect(edge.rtmp).await;
    quiet.publish("demo-publish-key").await.unwrap();
    quiet.send_video(fake_avc(true, 100), 0).await;
    edge.wait_live("demo", 1, Duration::from_secs(5)).await;
    assert!(quiet.closed_within(Duration::from_secs(5)).await, "idle publisher still connected");
    assert!(
        quiet.events.iter().any(
            |e| matches!(e, rml_rtmp::sessions::ClientSessionEvent::UnhandleableOnStatusCode { code } if code == "NetStream.Publish.Idle")
        ),
        "told why: {:?}",
        quiet.events
    );
    // Released at once: the next publisher is admitted without waiting.
    let mut next = RawClient::connect(edge.rtmp).await;
    next.publish("demo-publish-key").await.expect("stream freed");
    assert_eq!(edge.metric("streamfleet_edge_takeovers_total").await, 0.0);
}

#[tokio::test]
async fn enhanced_rtmp_and_unknown_codecs_pass_through_untouched_with_fast_start() {
    use rml_rtmp::sessions::ClientSessionEvent;
    let edge = Edge::start(&[]).await;
    let mut publisher = RawClient::connect(edge.rtmp).await;
    publisher.publish("demo-publish-key").await.unwrap();
    // Enhanced RTMP HEVC: SequenceStart, a key frame (CodedFramesX), an inter frame; then a frame
    // of a codec id nobody knows.
    let frames: Vec<bytes::Bytes> = vec![
        bytes::Bytes::from_static(b"\x90hvc1\x01\x02\x03\x04"),
        bytes::Bytes::from_static(b"\x93hvc1\xAA\xBB\xCC"),
        bytes::Bytes::from_static(b"\xA3hvc1\xDD"),
        bytes::Bytes::from_static(b"\x2F\x11\x22\x33"),
    ];
    for (i, f) in frames.iter().enumerate() {
        publisher.send_video(f.clone(), i as u32 * 33).await;
    }
    let s = edge.wait_live("demo", 4, Duration::from_secs(5)).await;
    assert_eq!(s["video_codec"], "flv-codec-15", "{s}");

    // A player joining now gets the sequence start and the GOP from the key frame, byte for byte.
    let mut player = RawClient::connect(edge.rtmp).await;
    player.play("demo").await.unwrap();
    player
        .until(
            "the last cached frame",
            |e| matches!(e, ClientSessionEvent::VideoDataReceived { data, .. } if data.first() == Some(&0x2F)),
        )
        .await
        .expect("fast start");
    let got: Vec<bytes::Bytes> = player
        .events
        .iter()
        .filter_map(|e| match e {
            ClientSessionEvent::VideoDataReceived { data, .. } => Some(data.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(got, frames, "fast start must replay sequence start + GOP untouched");
}

#[tokio::test]
async fn an_ffmpeg_player_continues_across_a_republish() {
    let edge = Edge::start(&["--play-wait-timeout", "3s"]).await;
    let first = ffmpeg_publish(&edge.url("demo-publish-key"), 3, 30);
    edge.wait_live("demo", 10, Duration::from_secs(20)).await;
    let out = common::TempFile::new("republish.flv", "");
    let player = tokio::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            &edge.url("demo"),
            "-c",
            "copy",
            "-f",
            "flv",
            "-y",
        ])
        .arg(&out.0)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg player");
    let (ok, stderr) = finish(first, Duration::from_secs(20)).await;
    assert!(ok, "first publisher: {stderr}");
    let second = ffmpeg_publish(&edge.url("demo-publish-key"), 3, 30);
    let (ok, stderr) = finish(second, Duration::from_secs(20)).await;
    assert!(ok, "second publisher: {stderr}");
    // After the second publisher ends, the player is told the stream is gone (after
    // --play-wait-timeout) and exits.
    let (_, player_err) = finish(player, Duration::from_secs(20)).await;
    let (ok, packets, err) = ffprobe(
        &["-select_streams", "v", "-show_entries", "packet=pts", "-of", "csv=p=0"],
        &out.0.display().to_string(),
        Duration::from_secs(20),
    )
    .await;
    assert!(ok, "{err}");
    let pts: Vec<i64> = packets.lines().filter_map(|l| l.trim().parse().ok()).collect();
    eprintln!("player recorded {} video packets across the republish", pts.len());
    // Both publishers' frames (2 × ~90 frames), on one continuous timeline.
    assert!(pts.len() > 130, "only {} video packets; player: {player_err}", pts.len());
    let jumps_back = pts.windows(2).filter(|w| w[1] + 100 < w[0]).count();
    assert_eq!(jumps_back, 0, "timestamps jump backwards across the republish");
}

/// Audio held for the next video frame (the default) and a write window (`--write-batch`) only
/// change how writes are grouped: ffprobe still reads every audio and video packet, in order,
/// with audio keeping up with video.
#[tokio::test]
async fn grouped_writes_deliver_every_packet_in_order() {
    for extra in [&[][..], &["--write-batch", "100ms"][..], &["--hold-audio", "false"][..]] {
        let edge = Edge::start(extra).await;
        let publisher = ffmpeg_publish(&edge.url("demo-publish-key"), 30, 30);
        edge.wait_live("demo", 30, Duration::from_secs(20)).await;
        // With audio held, ffmpeg's reads are paced by its socket; without, every byte wakes.
        if extra.contains(&"--hold-audio") {
            assert_eq!(publisher_low_water(&edge).await, Some(1), "{extra:?}");
        } else {
            let mark = wait_until("the publisher's reads paced", Duration::from_secs(10), || async {
                publisher_low_water(&edge).await.filter(|m| *m > 1)
            })
            .await;
            assert!(mark < 4096, "{extra:?}: a video frame must wake the edge, mark {mark}");
        }
        let (ok, out, err) = ffprobe(
            &["-read_intervals", "%+3", "-show_entries", "packet=codec_type,pts_time", "-of", "csv=p=0"],
            &edge.url("demo"),
            Duration::from_secs(20),
        )
        .await;
        assert!(ok, "{extra:?}: ffprobe failed: {err}\n{}", edge.logs());
        let mut last = std::collections::HashMap::<String, f64>::new();
        let mut counts = std::collections::HashMap::<String, usize>::new();
        for line in out.lines() {
            let Some((kind, pts)) = line.split_once(',') else { continue };
            let Ok(pts) = pts.trim().parse::<f64>() else { continue };
            if let Some(prev) = last.insert(kind.to_string(), pts) {
                assert!(pts > prev, "{extra:?}: {kind} pts went from {prev} to {pts}");
            }
            *counts.entry(kind.to_string()).or_default() += 1;
        }
        let (video, audio) = (counts.get("video").copied().unwrap_or(0), counts.get("audio").copied().unwrap_or(0));
        // 3 s at 30 fps and ~46.9 AAC frames per second (the GOP burst at join adds up to 1 s).
        assert!(video >= 80, "{extra:?}: {video} video packets\n{out}");
        assert!(audio as f64 >= video as f64 * 1.3, "{extra:?}: {audio} audio vs {video} video packets");
        let gap = last.get("video").copied().unwrap_or(0.0) - last.get("audio").copied().unwrap_or(0.0);
        assert!(gap.abs() < 0.2, "{extra:?}: audio and video end {gap:.3} s apart");
        drop(publisher);
    }
}

/// The receive low-water mark of the edge's publisher socket, as `/api/v1/sessions` shows it.
async fn publisher_low_water(edge: &Edge) -> Option<u64> {
    let sessions = edge.sessions().await;
    sessions.iter().find(|s| s["role"] == "publisher").and_then(|s| s["read_low_water_bytes"].as_u64())
}

/// Once a publisher sends audio and video its socket gathers more than the held audio before it
/// wakes the edge (docs/edge.md, "Reads paced by the socket"). A last message below that mark
/// (a tiny picture, then silence) still reaches players: at the next quiet tick the mark drops
/// to one byte (and a message read otherwise would leave it raised).
#[tokio::test]
async fn a_paced_publisher_s_last_small_message_still_reaches_players() {
    use rml_rtmp::sessions::ClientSessionEvent;
    let edge = Edge::start(&[]).await;
    let mut publisher = RawClient::connect(edge.rtmp).await;
    publisher.publish("demo-publish-key").await.unwrap();
    // A second of AAC-sized audio and 1 Mbit/s-sized video, interleaved as encoders send them.
    for i in 0..30u32 {
        publisher.send_audio(fake_aac(350), i * 33).await;
        publisher.send_video(fake_avc(i == 0, 4000), i * 33).await;
    }
    let mark = wait_until("the publisher's reads paced", Duration::from_secs(10), || async {
        publisher_low_water(&edge).await.filter(|m| *m > 1)
    })
    .await;
    assert!(mark > 2 * 350 && mark < 4000, "two audio messages wait, a picture wakes the edge: mark {mark}");

    let mut player = RawClient::connect(edge.rtmp).await;
    player.play("demo").await.unwrap();
    let picture_at = |ts: u32| move |e: &ClientSessionEvent| matches!(e, ClientSessionEvent::VideoDataReceived { timestamp, .. } if timestamp.value == ts);
    player.until("the cached GOP", picture_at(29 * 33)).await.unwrap();
    // 100 bytes, far below the mark, and then nothing.
    publisher.send_video(fake_avc(false, 100), 30 * 33).await;
    player.until("the last small frame", picture_at(30 * 33)).await.unwrap();
    // The quiet tick read it: the mark stays at one byte until the stream is steady again.
    assert_eq!(publisher_low_water(&edge).await, Some(1), "the quiet tick dropped the mark");
}

#[tokio::test]
async fn the_streams_api_lists_configured_streams_as_idle_until_they_go_live() {
    let edge = Edge::start(&[]).await;
    // Nothing published yet: every configured stream is listed, idle (an empty list would read
    // as "nothing configured").
    let v = edge.json("/api/v1/streams").await;
    let states: Vec<(String, String)> = v["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| (s["playback_name"].as_str().unwrap_or("").to_string(), s["state"].as_str().unwrap_or("").to_string()))
        .collect();
    for name in ["demo", "solo", "limited"] {
        assert!(states.contains(&(name.to_string(), "idle".to_string())), "{name} not listed idle: {v}");
    }
    assert!(v["incomplete"].is_null(), "{v}");
    let publisher = ffmpeg_publish(&edge.url("demo-publish-key"), 30, 30);
    let live = edge.wait_live("demo", 10, Duration::from_secs(20)).await;
    assert_eq!(live["state"], "live");
    let listed = edge.json("/api/v1/streams").await;
    let demos = listed["streams"].as_array().expect("streams").iter().filter(|s| s["playback_name"] == "demo").count();
    assert_eq!(demos, 1, "a live stream is listed once: {listed}");
    assert_eq!(edge.stream("solo").await.expect("solo listed")["state"], "idle");
    drop(publisher);
}

/// A publisher whose socket hardly ever runs dry is still replaced: the publisher loop takes
/// media before it looks at its kick, lease and drain signals, and must still get to them. The
/// encoder here writes a megabyte of 64 KiB pictures again and again, as one write each, faster
/// than the edge's 8 KiB reads drain it; a newcomer with the key takes the stream over
/// (`takeoverPolicy: Replace`) and the flooding publisher must be dropped.
#[tokio::test]
async fn a_publisher_that_never_pauses_is_still_replaced() {
    use rml_rtmp::{sessions::ClientSessionResult, time::RtmpTimestamp};
    use tokio::io::AsyncWriteExt;
    let streams = common::TempFile::new(
        "flood-streams.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: flood-key}\nstringData: {publishKey: flood-publish-key}\n---\n\
         apiVersion: streamfleet.io/v1alpha1\nkind: LiveStream\nmetadata: {name: flood}\n\
         spec:\n  publishKeySecretRef: {name: flood-key, key: publishKey}\n  takeoverPolicy: Replace\n",
    );
    let edge = Edge::start_with(vec!["--streams".into(), streams.0.display().to_string()]).await;
    let mut flooding = RawClient::connect(edge.rtmp).await;
    flooding.publish("flood-publish-key").await.unwrap();
    flooding.send_video(fake_avc(true, 1000), 0).await;
    // Sixteen pictures serialized once: after the first message their chunk headers only carry
    // deltas, so the same bytes sent again are the next sixteen pictures.
    let mut burst = Vec::new();
    for _ in 0..16 {
        let r = flooding.session.publish_video_data(fake_avc(false, 64 * 1024), RtmpTimestamp::new(33), false);
        if let Ok(ClientSessionResult::OutboundResponse(packet)) = r {
            burst.extend_from_slice(&packet.bytes);
        }
    }
    assert!(burst.len() > 16 * 64 * 1024, "sixteen pictures serialized");
    let flood = tokio::spawn(async move {
        let stop = Instant::now() + Duration::from_secs(30);
        let mut bursts = 0u32;
        while Instant::now() < stop {
            bursts += 1;
            if flooding.socket.write_all(&burst).await.is_err() {
                return Some(bursts);
            }
        }
        None
    });
    edge.wait_live("flood", 100, Duration::from_secs(10)).await;

    let mut newcomer = RawClient::connect(edge.rtmp).await;
    newcomer.publish("flood-publish-key").await.expect("the newcomer takes the stream over");
    let ended = tokio::time::timeout(Duration::from_secs(40), flood).await.expect("flood task ends").unwrap();
    assert!(ended.is_some(), "the flooding publisher was never dropped\n{}", edge.logs());
    // The edge logs before it closes the socket, but its log reaches the test through a pipe
    // the test reads on its own: the close can be seen first.
    edge.wait_log("replaced by a newer publisher", Duration::from_secs(5)).await;
}
