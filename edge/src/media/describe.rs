//! What a stream's own packets say about it, read from headers only: the decoder configuration
//! (H.264 profile, level and resolution from the SPS; AAC and Opus sample rate and channels),
//! the composition-time offset that reveals B-frames, and what the encoder announced in
//! `onMetaData` (frame rate, resolution, bitrates). Everything here is best effort: a field that
//! cannot be read is `None`, never an error, since the bytes are passed on unchanged anyway.

use h264_reader::avcc::AvcDecoderConfigurationRecord;

/// What a video configuration packet describes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct VideoConfig {
    pub(crate) profile: Option<String>,
    pub(crate) level: Option<String>,
    pub(crate) width: Option<u32>,
    pub(crate) height: Option<u32>,
}

/// What an audio configuration packet describes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct AudioConfig {
    pub(crate) sample_rate: Option<u32>,
    pub(crate) channels: Option<u8>,
}

/// What `onMetaData` announced (encoders send what they were configured with, not what they
/// achieve: the measured figures are kept apart).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub(crate) struct Announced {
    pub(crate) fps: Option<f64>,
    pub(crate) width: Option<u32>,
    pub(crate) height: Option<u32>,
    pub(crate) video_kbps: Option<f64>,
    pub(crate) audio_kbps: Option<f64>,
}

/// The AVCDecoderConfigurationRecord of a legacy AVC sequence header (`[0x17, 0, cts:3, record]`)
/// or an Enhanced RTMP `avc1` sequence start (`[ex header, "avc1", record]`).
pub(crate) fn video_config(tag: &[u8]) -> VideoConfig {
    let record = match tag.first() {
        Some(b) if b & 0x80 != 0 && tag.get(1..5) == Some(b"avc1") => tag.get(5..),
        Some(b) if b & 0x0f == 7 => tag.get(5..),
        _ => None,
    };
    let Some(record) = record else { return VideoConfig::default() };
    let Ok(avcc) = AvcDecoderConfigurationRecord::try_from(record) else { return VideoConfig::default() };
    let Ok(ctx) = avcc.create_context() else { return VideoConfig::default() };
    let Some(sps) = ctx.sps().next() else { return VideoConfig::default() };
    let (width, height) = sps.pixel_dimensions().map_or((None, None), |(w, h)| (Some(w), Some(h)));
    let level = sps.level_idc;
    VideoConfig {
        profile: Some(format!("{:?}", sps.profile())),
        level: Some(format!("{}.{}", level / 10, level % 10)),
        width,
        height,
    }
}

/// AAC's AudioSpecificConfig (`[0xAF, 0, asc...]`) or an Enhanced RTMP `Opus` sequence start
/// carrying OpusHead (`[0x90, "Opus", "OpusHead", version, channels, pre-skip:2, rate:4]`).
pub(crate) fn audio_config(tag: &[u8]) -> AudioConfig {
    match tag.first().map(|b| b >> 4) {
        Some(10) => {
            let (Some(&a), Some(&b)) = (tag.get(2), tag.get(3)) else { return AudioConfig::default() };
            // 5 bits object type, 4 bits sampling frequency index, 4 bits channel configuration.
            let index = ((a & 0x07) << 1) | (b >> 7);
            const RATES: [u32; 13] =
                [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];
            AudioConfig { sample_rate: RATES.get(usize::from(index)).copied(), channels: Some((b >> 3) & 0x0f) }
        }
        Some(9) if tag.get(1..5) == Some(b"Opus") && tag.get(5..13) == Some(b"OpusHead") => {
            let rate = tag.get(17..21).map(|r| u32::from_le_bytes([r[0], r[1], r[2], r[3]]));
            AudioConfig { sample_rate: rate.filter(|r| *r > 0).or(Some(48000)), channels: tag.get(14).copied() }
        }
        _ => AudioConfig::default(),
    }
}

/// Whether a coded video frame has a non-zero composition-time offset, which only B-frames (or
/// reordered frames) need: legacy AVC/HEVC (`[type, 1, cts:3]`) and Enhanced RTMP `CodedFrames`
/// for `avc1`/`hvc1` (`[ex header | 1, fourcc:4, cts:3]`).
pub(crate) fn has_composition_offset(tag: &[u8]) -> bool {
    let cts = match tag.first() {
        Some(b) if b & 0x80 != 0 => {
            let codec = tag.get(1..5);
            (b & 0x0f == 1 && (codec == Some(b"avc1") || codec == Some(b"hvc1"))).then(|| tag.get(5..8)).flatten()
        }
        Some(b) if matches!(b & 0x0f, 7 | 12) && tag.get(1) == Some(&1) => tag.get(2..5),
        _ => None,
    };
    cts.is_some_and(|c| c != [0, 0, 0])
}

/// Reads the announced figures from an `onMetaData` payload without an AMF parser: each property
/// of its ECMA array is `[name length:2][name][0x00 number marker][f64]`, so a name followed by a
/// number marker is enough, and nesting cannot matter.
pub(crate) fn announced(metadata: &[u8]) -> Announced {
    let number = |name: &str| -> Option<f64> {
        let mut needle = Vec::with_capacity(name.len() + 3);
        needle.extend_from_slice(&(name.len() as u16).to_be_bytes());
        needle.extend_from_slice(name.as_bytes());
        needle.push(0x00);
        let at = metadata.windows(needle.len()).position(|w| w == needle.as_slice())? + needle.len();
        let bytes: [u8; 8] = metadata.get(at..at + 8)?.try_into().ok()?;
        Some(f64::from_be_bytes(bytes)).filter(|v| v.is_finite() && *v > 0.0)
    };
    let int = |name: &str| number(name).filter(|v| *v < 100_000.0).map(|v| v as u32);
    Announced {
        fps: number("framerate").or_else(|| number("fps")),
        width: int("width"),
        height: int("height"),
        video_kbps: number("videodatarate"),
        audio_kbps: number("audiodatarate"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real AVCDecoderConfigurationRecord (x264 `-preset ultrafast -level 1.3`, 320×240), as
    /// ffmpeg sends it.
    const AVCC_320X240: &[u8] = &[
        0x01, 0x42, 0xc0, 0x0d, 0xff, 0xe1, 0x00, 0x16, 0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x07, 0xec, 0x04, 0x40,
        0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0c, 0x83, 0xc5, 0x0a, 0xa8, 0x01, 0x00, 0x04, 0x68, 0xce, 0x0f,
        0xc8,
    ];

    #[test]
    fn h264_resolution_profile_and_level_come_from_the_sps() {
        let tag = [&[0x17, 0, 0, 0, 0][..], AVCC_320X240].concat();
        let v = video_config(&tag);
        assert_eq!((v.width, v.height), (Some(320), Some(240)), "{v:?}");
        assert_eq!(v.profile.as_deref(), Some("ConstrainedBaseline"));
        assert_eq!(v.level.as_deref(), Some("1.3"));
        // The same record in an Enhanced RTMP sequence start.
        let ex = [&[0x90, b'a', b'v', b'c', b'1'][..], AVCC_320X240].concat();
        assert_eq!(video_config(&ex), v);
        // Garbage and truncation read as unknown.
        assert_eq!(video_config(&[0x17, 0, 0, 0, 0, 1, 2, 3]), VideoConfig::default());
        assert_eq!(video_config(&[]), VideoConfig::default());
    }

    #[test]
    fn aac_and_opus_configurations() {
        // AAC LC, 44100 Hz (index 4), stereo: 0x12 0x10.
        assert_eq!(audio_config(&[0xAF, 0, 0x12, 0x10]), AudioConfig { sample_rate: Some(44100), channels: Some(2) });
        // AAC LC, 48000 Hz (index 3), mono: 0x11 0x88.
        assert_eq!(audio_config(&[0xAF, 0, 0x11, 0x88]), AudioConfig { sample_rate: Some(48000), channels: Some(1) });
        let mut opus = vec![0x90, b'O', b'p', b'u', b's'];
        opus.extend_from_slice(b"OpusHead");
        opus.extend_from_slice(&[1, 2, 0x38, 0x01]);
        opus.extend_from_slice(&44100u32.to_le_bytes());
        assert_eq!(audio_config(&opus), AudioConfig { sample_rate: Some(44100), channels: Some(2) });
        assert_eq!(audio_config(&[0xAF, 0]), AudioConfig::default());
    }

    #[test]
    fn composition_offsets_reveal_b_frames() {
        assert!(has_composition_offset(&[0x27, 1, 0, 0, 0x28]));
        assert!(!has_composition_offset(&[0x17, 1, 0, 0, 0]));
        assert!(has_composition_offset(&[0x80 | 0x20 | 1, b'h', b'v', b'c', b'1', 0, 0, 0x50]));
        // CodedFramesX has no offset field.
        assert!(!has_composition_offset(&[0x80 | 0x20 | 3, b'h', b'v', b'c', b'1', 0, 0, 0x50]));
        assert!(!has_composition_offset(&[0x27]));
    }

    #[test]
    fn announced_figures_are_read_from_on_metadata() {
        let mut m = vec![0x02, 0x00, 0x0a];
        m.extend_from_slice(b"onMetaData");
        m.extend_from_slice(&[0x08, 0, 0, 0, 3]);
        for (name, v) in [("width", 1280.0f64), ("height", 720.0), ("framerate", 29.97)] {
            m.extend_from_slice(&(name.len() as u16).to_be_bytes());
            m.extend_from_slice(name.as_bytes());
            m.push(0x00);
            m.extend_from_slice(&v.to_be_bytes());
        }
        m.extend_from_slice(&[0, 0, 9]);
        let a = announced(&m);
        assert_eq!((a.width, a.height), (Some(1280), Some(720)));
        assert_eq!(a.fps, Some(29.97));
        assert_eq!(a.video_kbps, None);
        assert_eq!(announced(&[]), Announced::default());
    }
}
