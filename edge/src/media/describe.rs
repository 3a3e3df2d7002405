//! What a stream's own packets say about it, read from headers only: the decoder configuration
//! (H.264 profile, level and resolution from the SPS; AAC and Opus sample rate and channels),
//! the composition-time offset that reveals B-frames, and what the encoder announced in
//! `onMetaData` (frame rate, resolution, bitrates). Everything here is best effort: a field that
//! cannot be read is `None`, never an error, since the bytes are passed on unchanged anyway.

use h264_reader::avcc::AvcDecoderConfigurationRecord;

use super::bits::{Bits, unescape};

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

/// The decoder configuration record of a video sequence header: legacy FLV
/// (`[type | codec id, 0, cts:3, record]`: AVC 7, HEVC 12, AV1 13) or Enhanced RTMP
/// (`[ex header, fourcc, record]`: `avc1`, `hvc1`, `av01`).
pub(crate) fn video_config(tag: &[u8]) -> VideoConfig {
    let (codec, record) = match tag.first() {
        Some(b) if b & 0x80 != 0 => match tag.get(1..5) {
            Some(b"avc1") => (7, tag.get(5..)),
            Some(b"hvc1") => (12, tag.get(5..)),
            Some(b"av01") => (13, tag.get(5..)),
            _ => (0, None),
        },
        Some(b) if matches!(b & 0x0f, 7 | 12 | 13) => (b & 0x0f, tag.get(5..)),
        _ => (0, None),
    };
    let Some(record) = record else { return VideoConfig::default() };
    match codec {
        7 => avc_config(record),
        12 => hevc_config(record).unwrap_or_default(),
        13 => av1_config(record).unwrap_or_default(),
        _ => VideoConfig::default(),
    }
}

fn avc_config(record: &[u8]) -> VideoConfig {
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

/// Profile, level and the cropped picture size from the SPS inside an
/// HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3; H.265 7.3.2.2).
fn hevc_config(record: &[u8]) -> Option<VideoConfig> {
    let arrays = *record.get(22)?;
    let mut at = 23;
    let mut sps = None;
    'arrays: for _ in 0..arrays {
        let nal_type = record.get(at)? & 0x3f;
        let count = u16::from_be_bytes([*record.get(at + 1)?, *record.get(at + 2)?]);
        at += 3;
        for _ in 0..count {
            let len = usize::from(u16::from_be_bytes([*record.get(at)?, *record.get(at + 1)?]));
            let nal = record.get(at + 2..at + 2 + len)?;
            at += 2 + len;
            if nal_type == 33 {
                sps = Some(nal);
                break 'arrays;
            }
        }
    }
    let rbsp = unescape(sps?.get(2..)?);
    let mut r = Bits::new(&rbsp);
    r.skip(4)?; // sps_video_parameter_set_id
    let sub_layers = r.bits(3)?;
    r.skip(1)?; // sps_temporal_id_nesting_flag
    // profile_tier_level(1, sub_layers): profile space, tier, profile idc, 32 compatibility
    // flags, 48 constraint bits, level idc.
    r.skip(3)?;
    let profile_idc = r.bits(5)?;
    r.skip(32 + 48)?;
    let level_idc = r.bits(8)?;
    let mut present = Vec::new();
    for _ in 0..sub_layers {
        present.push((r.bit()?, r.bit()?));
    }
    if sub_layers > 0 {
        r.skip(2 * (8 - sub_layers as usize))?;
    }
    for (profile, level) in present {
        r.skip(88 * profile as usize + 8 * level as usize)?;
    }
    r.ue()?; // sps_seq_parameter_set_id
    let chroma = r.ue()?;
    if chroma == 3 {
        r.skip(1)?; // separate_colour_plane_flag
    }
    let (mut width, mut height) = (r.ue()?, r.ue()?);
    if r.bit()? == 1 {
        let (sub_w, sub_h) = match chroma {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        width = width.checked_sub(sub_w * (left.checked_add(right)?))?;
        height = height.checked_sub(sub_h * (top.checked_add(bottom)?))?;
    }
    let profile = match profile_idc {
        1 => "Main".to_string(),
        2 => "Main10".to_string(),
        3 => "MainStillPicture".to_string(),
        4 => "RExt".to_string(),
        other => format!("profile {other}"),
    };
    Some(VideoConfig {
        profile: Some(profile),
        level: Some(format!("{}.{}", level_idc / 30, level_idc % 30 / 3)),
        width: Some(width),
        height: Some(height),
    })
}

/// Profile, level and the maximum frame size from the sequence header OBU of an
/// AV1CodecConfigurationRecord (AV1 ISOBMFF binding 2.3; AV1 spec 5.5).
fn av1_config(record: &[u8]) -> Option<VideoConfig> {
    let profile = (record.get(1)? >> 5) & 0x07;
    let mut at = 4;
    let header = loop {
        let obu = *record.get(at)?;
        let has_size = obu & 0x02 != 0;
        at += 1 + usize::from(obu & 0x04 != 0); // extension header
        let mut size = record.len().checked_sub(at)?;
        if has_size {
            size = 0;
            for i in 0..8 {
                let b = *record.get(at)?;
                at += 1;
                size |= usize::from(b & 0x7f) << (7 * i);
                if b & 0x80 == 0 {
                    break;
                }
            }
        }
        let payload = record.get(at..at.checked_add(size)?)?;
        if (obu >> 3) & 0x0f == 1 {
            break payload;
        }
        at += size;
    };
    let mut r = Bits::new(header);
    r.skip(3)?; // seq_profile (also in the record)
    r.skip(1)?; // still_picture
    let level;
    if r.bit()? == 1 {
        level = r.bits(5)?; // reduced_still_picture_header
    } else {
        let timing = r.bit()? == 1;
        let mut decoder_model = false;
        let mut buffer_delay_bits = 0;
        if timing {
            r.skip(64)?;
            if r.bit()? == 1 {
                // num_ticks_per_picture_minus_1: uvlc()
                let mut zeros = 0;
                while r.bit()? == 0 {
                    zeros += 1;
                    if zeros >= 32 {
                        return None;
                    }
                }
                r.skip(zeros)?;
            }
            decoder_model = r.bit()? == 1;
            if decoder_model {
                buffer_delay_bits = r.bits(5)? as usize + 1;
                r.skip(32 + 5 + 5)?;
            }
        }
        let display_delay = r.bit()? == 1;
        let points = r.bits(5)? + 1;
        let mut first_level = None;
        for _ in 0..points {
            r.skip(12)?; // operating_point_idc
            let l = r.bits(5)?;
            first_level.get_or_insert(l);
            if l > 7 {
                r.skip(1)?;
            }
            if decoder_model && r.bit()? == 1 {
                r.skip(2 * buffer_delay_bits + 1)?;
            }
            if display_delay && r.bit()? == 1 {
                r.skip(4)?;
            }
        }
        level = first_level?;
    }
    let width_bits = r.bits(4)? + 1;
    let height_bits = r.bits(4)? + 1;
    let width = r.bits(width_bits)? + 1;
    let height = r.bits(height_bits)? + 1;
    let profile = match profile {
        0 => "Main",
        1 => "High",
        2 => "Professional",
        _ => "reserved",
    };
    Some(VideoConfig {
        profile: Some(profile.to_string()),
        level: Some(format!("{}.{}", 2 + (level >> 2), level & 3)),
        width: Some(width),
        height: Some(height),
    })
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

    /// ffmpeg's HEVCDecoderConfigurationRecord for x265 `-preset ultrafast`, 320×240, cut after
    /// the VPS, SPS and PPS arrays (the SEI with x265's settings is left out).
    const HVCC_320X240: &[u8] = &[
        0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3c, 0xf0, 0x00, 0xfc, 0xfd, 0xf8,
        0xf8, 0x00, 0x00, 0x0f, 0x03, 0x20, 0x00, 0x01, 0x00, 0x18, 0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60,
        0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x95, 0x94, 0x09, 0x21, 0x00,
        0x01, 0x00, 0x2a, 0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x3c, 0xa0, 0x0a, 0x08, 0x0f, 0x16, 0x59, 0x59, 0x52, 0x93, 0x0b, 0xc0, 0x5a, 0x02, 0x00, 0x00,
        0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x32, 0x10, 0x22, 0x00, 0x01, 0x00, 0x06, 0x44, 0x01, 0xc0, 0x73,
        0xc1, 0x89,
    ];

    /// ffmpeg's AV1CodecConfigurationRecord for SVT-AV1 `-preset 12`, 352×288.
    const AV1C_352X288: &[u8] =
        &[0x81, 0x00, 0x0c, 0x00, 0x0a, 0x0b, 0x02, 0x00, 0x00, 0x05, 0x22, 0x2b, 0xf1, 0xf0, 0x0b, 0xe0, 0x01];

    #[test]
    fn hevc_and_av1_resolution_profile_and_level() {
        let hevc = video_config(&[&[0x90, b'h', b'v', b'c', b'1'][..], HVCC_320X240].concat());
        assert_eq!((hevc.width, hevc.height), (Some(320), Some(240)), "{hevc:?}");
        assert_eq!((hevc.profile.as_deref(), hevc.level.as_deref()), (Some("Main"), Some("2.0")));
        // Legacy FLV codec id 12 carries the same record.
        assert_eq!(video_config(&[&[0x1c, 0, 0, 0, 0][..], HVCC_320X240].concat()), hevc);
        let av1 = video_config(&[&[0x90, b'a', b'v', b'0', b'1'][..], AV1C_352X288].concat());
        assert_eq!((av1.width, av1.height), (Some(352), Some(288)), "{av1:?}");
        assert_eq!(av1.profile.as_deref(), Some("Main"));
        // A truncated record reads as unknown (or, cut after the size, the right size): never a
        // wrong figure, never a panic.
        for cut in 0..HVCC_320X240.len() {
            let v = video_config(&[&[0x90, b'h', b'v', b'c', b'1'][..], &HVCC_320X240[..cut]].concat());
            assert!(v.width.is_none() || v.width == Some(320), "{cut}: {v:?}");
        }
        for cut in 0..AV1C_352X288.len() {
            let v = video_config(&[&[0x90, b'a', b'v', b'0', b'1'][..], &AV1C_352X288[..cut]].concat());
            assert!(v.width.is_none() || v.width == Some(352), "{cut}: {v:?}");
        }
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
