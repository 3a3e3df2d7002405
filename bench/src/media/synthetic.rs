//! Synthetic media: well-formed FLV/AVC framing around filler bytes, at a chosen bitrate, frame
//! rate and keyframe interval. Servers relay RTMP without decoding, so this exercises them like
//! real video; it keeps tests free of an encoder run and lets `--synthetic` sweep bitrates.

use bytes::Bytes;

use super::flv::TagKind;
use super::plan::{MediaPlan, PlanFrame};

/// Shape of the synthetic stream.
#[derive(Debug, Clone, Copy)]
pub struct SyntheticSpec {
    /// Video bits per second (audio adds 128 kbit/s when enabled).
    pub video_bps: u64,
    pub fps: u32,
    pub gop_frames: u32,
    /// Loop length in frames (a multiple of `gop_frames` keeps keyframes evenly spaced).
    pub frames: u32,
    pub audio: bool,
}

/// A keyframe is this many times the size of another frame, roughly like x264 output.
const KEYFRAME_WEIGHT: u64 = 5;

/// Builds the plan. Frame bodies are filler from a fixed generator, so runs are repeatable.
pub fn plan(spec: SyntheticSpec) -> MediaPlan {
    let fps = spec.fps.max(1);
    let gop = spec.gop_frames.max(1);
    let gop_bytes = spec.video_bps * u64::from(gop) / u64::from(fps) / 8;
    let p_size = (gop_bytes / (u64::from(gop) - 1 + KEYFRAME_WEIGHT)).max(16) as usize;
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut frames = Vec::new();
    for i in 0..spec.frames.max(2) {
        let key = i % gop == 0;
        let size = if key { p_size * KEYFRAME_WEIGHT as usize } else { p_size };
        let mut body = Vec::with_capacity(size + 9);
        body.extend_from_slice(&[if key { 0x17 } else { 0x27 }, 1, 0, 0, 0]);
        body.extend_from_slice(&(size as u32).to_be_bytes());
        body.push(if key { 0x65 } else { 0x41 });
        while body.len() < size + 9 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            body.extend_from_slice(&rng.to_le_bytes());
        }
        body.truncate(size + 9);
        frames.push(PlanFrame {
            kind: TagKind::Video,
            offset_ms: i * 1000 / fps,
            data: Bytes::from(body),
            keyframe: key,
        });
    }
    let loop_ms = spec.frames.max(2) * 1000 / fps;
    if spec.audio {
        // AAC at 48 kHz: one 1024-sample frame every 21.33 ms, ~128 kbit/s.
        let mut n = 0u32;
        loop {
            let offset_ms = n * 1024 * 1000 / 48_000;
            if offset_ms >= loop_ms {
                break;
            }
            let mut body = vec![0xaf, 1];
            body.resize(343, 0x5a);
            frames.push(PlanFrame { kind: TagKind::Audio, offset_ms, data: Bytes::from(body), keyframe: false });
            n += 1;
        }
        frames.sort_by_key(|f| f.offset_ms);
    }
    let video_header = Bytes::from_static(&[
        0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2, 0x68, 0xee,
    ]);
    let audio_header = spec.audio.then(|| Bytes::from_static(&[0xaf, 0, 0x11, 0x90]));
    MediaPlan {
        metadata: None,
        video_header,
        audio_header,
        frames,
        loop_ms,
        gop_ms: gop * 1000 / fps,
        fps: f64::from(fps),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_the_requested_bitrate_and_keyframe_spacing() {
        let p = plan(SyntheticSpec { video_bps: 3_000_000, fps: 30, gop_frames: 60, frames: 120, audio: true });
        let video_bps =
            p.frames.iter().filter(|f| f.kind == TagKind::Video).map(|f| f.data.len()).sum::<usize>() as f64 * 8.0
                / 4.0;
        assert!((video_bps / 3_000_000.0 - 1.0).abs() < 0.02, "{video_bps}");
        let keys: Vec<u32> = p.frames.iter().filter(|f| f.keyframe).map(|f| f.offset_ms).collect();
        assert_eq!(keys, [0, 2000]);
        assert_eq!(p.loop_ms, 4000);
        assert!(p.frames.windows(2).all(|w| w[0].offset_ms <= w[1].offset_ms));
        assert!(p.frames.iter().any(|f| f.kind == TagKind::Audio));
    }
}
