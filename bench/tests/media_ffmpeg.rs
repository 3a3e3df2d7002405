//! The generated benchmark media, made by the real ffmpeg: it must parse, start on a keyframe,
//! keep the requested keyframe spacing and frame rate, and carry the marker round trip.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use streamfleet_bench::media::flv::{self, TagKind};
use streamfleet_bench::media::generate::{self, GenerateSpec};
use streamfleet_bench::media::marker::{self, Marker};
use streamfleet_bench::media::plan::MediaPlan;

#[tokio::test]
async fn generated_media_has_the_requested_shape() {
    streamfleet_testkit::require_tool("ffmpeg");
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("sf-bench-media-{}-{nanos}", std::process::id()));
    let spec = GenerateSpec { width: 320, height: 180, fps: 30, video_kbps: 400, gop_seconds: 1, seconds: 3 };
    let path = generate::cached(&spec, &dir).await.expect("ffmpeg generates the media");
    let again = generate::cached(&spec, &dir).await.unwrap();
    assert_eq!(path, again);

    let tags = flv::parse(Bytes::from(std::fs::read(&path).unwrap())).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let plan = MediaPlan::from_tags(&tags).unwrap();
    assert!(plan.audio_header.is_some());
    assert!(plan.frames[0].keyframe);
    assert_eq!(plan.gop_ms, 1000, "keyframe every second");
    assert!((plan.fps - 30.0).abs() < 1.0, "{}", plan.fps);
    assert!((2900..=3100).contains(&plan.loop_ms), "{}", plan.loop_ms);
    let kbps = plan.bitrate_bps() / 1000.0;
    assert!((300.0..700.0).contains(&kbps), "{kbps} kbit/s");

    // Every coded frame of real encoder output takes a marker and gives it back.
    for (i, f) in plan.frames.iter().filter(|f| f.kind == TagKind::Video).enumerate() {
        let m = Marker { stream: 3, seq: i as u64, sent_ns: 1_000_000 + i as u64 };
        let stamped = marker::stamp(&f.data, &m);
        assert_eq!(marker::read(&stamped[..marker::PREFIX_LEN]), Some(m));
        assert_eq!(flv::is_video_keyframe(&stamped), f.keyframe);
    }
}
