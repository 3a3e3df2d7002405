//! FLV tag inspection: just enough of each audio/video message to know whether it is a keyframe
//! or a sequence header (what fast start and the slow-player drop policy need). Payloads are
//! never modified: unknown codecs and packet types are passed through as ordinary frames.
//!
//! Video: legacy FLV (`[frame type:4][codec id:4]`, AVC/HEVC packet type in byte 1) and
//! Enhanced RTMP (`IsExHeader` bit, `[frame type:3][packet type:4]` + FourCC: `avc1`, `hvc1`,
//! `av01`, `vp09`, ...). Audio: AAC (`AACPacketType` 0 = AudioSpecificConfig) and Enhanced RTMP
//! audio (sound format 9, packet type 0 = sequence start).

/// What the fan-out needs to know about one media message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TagInfo {
    /// A random access point: a player can start decoding here.
    pub(crate) keyframe: bool,
    /// Decoder configuration (AVCDecoderConfigurationRecord, AudioSpecificConfig, ...): cached
    /// and sent to every new player before any frame.
    pub(crate) sequence_header: bool,
    pub(crate) codec: Codec,
}

/// Codec names for `/api/v1/streams`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Codec {
    #[default]
    Unknown,
    Avc,
    Hevc,
    Av1,
    Vp9,
    Aac,
    Mp3,
    Opus,
    Other([u8; 4]),
    LegacyId(u8),
}

impl Codec {
    pub(crate) fn name(&self) -> String {
        match self {
            Codec::Unknown => "unknown".into(),
            Codec::Avc => "h264".into(),
            Codec::Hevc => "hevc".into(),
            Codec::Av1 => "av1".into(),
            Codec::Vp9 => "vp9".into(),
            Codec::Aac => "aac".into(),
            Codec::Mp3 => "mp3".into(),
            Codec::Opus => "opus".into(),
            Codec::Other(fourcc) => String::from_utf8_lossy(fourcc).into_owned(),
            Codec::LegacyId(id) => format!("flv-codec-{id}"),
        }
    }

    fn from_fourcc(f: [u8; 4]) -> Codec {
        match &f {
            b"avc1" => Codec::Avc,
            b"hvc1" => Codec::Hevc,
            b"av01" => Codec::Av1,
            b"vp09" => Codec::Vp9,
            b"mp4a" => Codec::Aac,
            b"Opus" => Codec::Opus,
            b".mp3" => Codec::Mp3,
            _ => Codec::Other(f),
        }
    }
}

const VIDEO_FRAME_KEY: u8 = 1;
/// Legacy FLV codec ids with an AVC-style packet type byte (0 = sequence header).
const VIDEO_CODEC_AVC: u8 = 7;
const VIDEO_CODEC_HEVC_LEGACY: u8 = 12;
const VIDEO_CODEC_AV1_LEGACY: u8 = 13;
/// Enhanced RTMP video packet types.
const EX_SEQUENCE_START: u8 = 0;
const EX_MPEG2TS_SEQUENCE_START: u8 = 5;

/// Inspects a video message (FLV VIDEODATA).
pub(crate) fn video(tag: &[u8]) -> TagInfo {
    let Some(&b0) = tag.first() else { return TagInfo::default() };
    if b0 & 0x80 != 0 {
        // Enhanced RTMP: [IsExHeader:1][FrameType:3][PacketType:4][FourCC:4]...
        let frame_type = (b0 >> 4) & 0x07;
        let packet_type = b0 & 0x0f;
        let codec = tag.get(1..5).map_or(Codec::Unknown, |f| Codec::from_fourcc([f[0], f[1], f[2], f[3]]));
        let sequence_header = packet_type == EX_SEQUENCE_START || packet_type == EX_MPEG2TS_SEQUENCE_START;
        return TagInfo { keyframe: frame_type == VIDEO_FRAME_KEY && !sequence_header, sequence_header, codec };
    }
    let frame_type = b0 >> 4;
    let codec_id = b0 & 0x0f;
    let codec = match codec_id {
        VIDEO_CODEC_AVC => Codec::Avc,
        VIDEO_CODEC_HEVC_LEGACY => Codec::Hevc,
        VIDEO_CODEC_AV1_LEGACY => Codec::Av1,
        other => Codec::LegacyId(other),
    };
    let has_packet_type = matches!(codec_id, VIDEO_CODEC_AVC | VIDEO_CODEC_HEVC_LEGACY | VIDEO_CODEC_AV1_LEGACY);
    let sequence_header = has_packet_type && tag.get(1) == Some(&0);
    TagInfo { keyframe: frame_type == VIDEO_FRAME_KEY && !sequence_header, sequence_header, codec }
}

const SOUND_FORMAT_MP3: u8 = 2;
const SOUND_FORMAT_AAC: u8 = 10;
const SOUND_FORMAT_EX_HEADER: u8 = 9;
/// Enhanced RTMP audio packet types that configure the decoder.
const AUDIO_EX_SEQUENCE_START: u8 = 0;
const AUDIO_EX_MULTICHANNEL_CONFIG: u8 = 4;

/// Inspects an audio message (FLV AUDIODATA). Audio frames are never keyframes for the GOP cache.
pub(crate) fn audio(tag: &[u8]) -> TagInfo {
    let Some(&b0) = tag.first() else { return TagInfo::default() };
    let format = b0 >> 4;
    match format {
        SOUND_FORMAT_AAC => TagInfo { keyframe: false, sequence_header: tag.get(1) == Some(&0), codec: Codec::Aac },
        SOUND_FORMAT_EX_HEADER => {
            let packet_type = b0 & 0x0f;
            let codec = tag.get(1..5).map_or(Codec::Unknown, |f| Codec::from_fourcc([f[0], f[1], f[2], f[3]]));
            TagInfo {
                keyframe: false,
                sequence_header: packet_type == AUDIO_EX_SEQUENCE_START || packet_type == AUDIO_EX_MULTICHANNEL_CONFIG,
                codec,
            }
        }
        SOUND_FORMAT_MP3 => TagInfo { codec: Codec::Mp3, ..Default::default() },
        other => TagInfo { codec: Codec::LegacyId(other), ..Default::default() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc_keyframes_and_sequence_headers() {
        assert_eq!(video(&[0x17, 0, 0, 0, 0]), TagInfo { keyframe: false, sequence_header: true, codec: Codec::Avc });
        assert_eq!(video(&[0x17, 1, 0, 0, 0]), TagInfo { keyframe: true, sequence_header: false, codec: Codec::Avc });
        assert_eq!(video(&[0x27, 1, 0, 0, 0]), TagInfo { keyframe: false, sequence_header: false, codec: Codec::Avc });
        // End of sequence is neither.
        assert!(!video(&[0x17, 2]).sequence_header);
    }

    #[test]
    fn enhanced_rtmp_fourcc_video() {
        // IsExHeader | key frame (1<<4) | SequenceStart, "hvc1"
        let seq = [0x80 | 0x10, b'h', b'v', b'c', b'1', 1, 2];
        assert_eq!(video(&seq), TagInfo { keyframe: false, sequence_header: true, codec: Codec::Hevc });
        // key frame, CodedFramesX (3), "av01"
        let key = [0x80 | 0x10 | 3, b'a', b'v', b'0', b'1', 9];
        assert_eq!(video(&key), TagInfo { keyframe: true, sequence_header: false, codec: Codec::Av1 });
        // inter frame (2<<4), CodedFrames, "vp09"
        let inter = [0x80 | 0x20 | 1, b'v', b'p', b'0', b'9'];
        assert_eq!(video(&inter), TagInfo { keyframe: false, sequence_header: false, codec: Codec::Vp9 });
        // Unknown FourCC: still classified by frame type, passed through.
        let other = [0x80 | 0x10 | 1, b'x', b'y', b'z', b'w'];
        assert_eq!(video(&other).codec, Codec::Other(*b"xyzw"));
        assert!(video(&other).keyframe);
    }

    #[test]
    fn unknown_and_truncated_video_pass_through() {
        assert_eq!(video(&[]), TagInfo::default());
        // Sorenson H.263 key frame: a keyframe, no sequence header.
        assert_eq!(video(&[0x12, 0]), TagInfo { keyframe: true, sequence_header: false, codec: Codec::LegacyId(2) });
        // Truncated enhanced header.
        assert_eq!(video(&[0x90]).codec, Codec::Unknown);
    }

    #[test]
    fn audio_sequence_headers() {
        assert!(audio(&[0xAF, 0, 0x12, 0x10]).sequence_header);
        assert!(!audio(&[0xAF, 1, 0x21]).sequence_header);
        assert_eq!(audio(&[0xAF, 1]).codec, Codec::Aac);
        assert!(audio(&[0x90, b'O', b'p', b'u', b's']).sequence_header);
        assert_eq!(audio(&[0x91, b'O', b'p', b'u', b's']).codec, Codec::Opus);
        assert!(!audio(&[0x2F, 0]).sequence_header);
        assert_eq!(audio(&[]), TagInfo::default());
    }
}
