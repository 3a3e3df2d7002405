//! FLV tag inspection: just enough of each audio/video message to know whether it is a keyframe
//! or a decoder configuration packet (what fast start and the slow-player drop policy need).
//! Payloads are never modified: unknown codecs and packet types are passed through as ordinary
//! frames.
//!
//! Video: legacy FLV (`[frame type:4][codec id:4]`, AVC/HEVC packet type in byte 1) and
//! Enhanced RTMP (`IsExHeader` bit, `[frame type:3][packet type:4]` + FourCC: `avc1`, `hvc1`,
//! `av01`, `vp09`, ...). Audio: AAC (`AACPacketType` 0 = AudioSpecificConfig) and Enhanced RTMP
//! audio (sound format 9, `[packet type:4]` + FourCC: `Opus`, `fLaC`, `ac-3`, ...). Enhanced
//! RTMP multitrack packets (one or many tracks per message) carry their inner packet type and
//! the first track id in a fixed place, which is all the configuration slot needs.

/// What the fan-out needs to know about one media message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TagInfo {
    /// A random access point: a player can start decoding here.
    pub(crate) keyframe: bool,
    /// Decoder configuration (AVCDecoderConfigurationRecord, AudioSpecificConfig, OpusHead, a
    /// multichannel config, ...): cached per slot and sent to every new player before any frame.
    pub(crate) config: Option<ConfigSlot>,
    pub(crate) codec: Codec,
}

/// Which configuration packet a message is. A stream can need several at once (Opus over
/// Enhanced RTMP sends its OpusHead as a sequence start, then a multichannel config; a multitrack
/// stream sends one per track), and a late player needs every one of them, so each kind is kept
/// in its own slot: a new packet of the same kind replaces only its own predecessor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ConfigSlot {
    pub(crate) audio: bool,
    /// The (inner, for multitrack) packet type: 0 sequence start, 4 multichannel config (audio)
    /// or metadata such as HDR colour info (video), 5 MPEG-2 TS sequence start (video).
    pub(crate) packet_type: u8,
    /// Multitrack messages: (multitrack type, first track id).
    pub(crate) track: Option<(u8, u8)>,
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

    fn at(tag: &[u8], from: usize) -> Codec {
        tag.get(from..from + 4).map_or(Codec::Unknown, |f| Codec::from_fourcc([f[0], f[1], f[2], f[3]]))
    }
}

const VIDEO_FRAME_KEY: u8 = 1;
/// Legacy FLV codec ids with an AVC-style packet type byte (0 = sequence header).
const VIDEO_CODEC_AVC: u8 = 7;
const VIDEO_CODEC_HEVC_LEGACY: u8 = 12;
const VIDEO_CODEC_AV1_LEGACY: u8 = 13;
/// Enhanced RTMP packet types (video and audio share these numbers where both have them).
const EX_SEQUENCE_START: u8 = 0;
/// Video: HDR colour metadata; audio: multichannel config. Both configure the decoder.
const EX_CONFIG_4: u8 = 4;
const EX_VIDEO_MPEG2TS_SEQUENCE_START: u8 = 5;
const EX_AUDIO_MULTITRACK: u8 = 5;
const EX_VIDEO_MULTITRACK: u8 = 6;

/// An Enhanced RTMP message's configuration slot, codec and inner packet type. `multitrack` is
/// the packet type that announces a multitrack message (6 for video, 5 for audio); its layout is
/// `[b0][multitrack type:4 | inner packet type:4][FourCC:4][track id:1]...` (the FourCC of the
/// first track sits there in every multitrack type).
fn enhanced(tag: &[u8], audio: bool, multitrack: u8, is_config: fn(u8) -> bool) -> (Option<ConfigSlot>, Codec, u8) {
    let packet_type = tag.first().map_or(0, |b| b & 0x0f);
    if packet_type == multitrack {
        let Some(&b1) = tag.get(1) else { return (None, Codec::Unknown, packet_type) };
        let inner = b1 & 0x0f;
        let codec = Codec::at(tag, 2);
        let track = tag.get(6).map(|id| (b1 >> 4, *id));
        let config = (is_config(inner) && track.is_some()).then_some(ConfigSlot { audio, packet_type: inner, track });
        return (config, codec, inner);
    }
    let config = is_config(packet_type).then_some(ConfigSlot { audio, packet_type, track: None });
    (config, Codec::at(tag, 1), packet_type)
}

/// Inspects a video message (FLV VIDEODATA).
pub(crate) fn video(tag: &[u8]) -> TagInfo {
    let Some(&b0) = tag.first() else { return TagInfo::default() };
    if b0 & 0x80 != 0 {
        // Enhanced RTMP: [IsExHeader:1][FrameType:3][PacketType:4][FourCC:4]...
        let frame_type = (b0 >> 4) & 0x07;
        let (config, codec, _) = enhanced(tag, false, EX_VIDEO_MULTITRACK, |t| {
            matches!(t, EX_SEQUENCE_START | EX_CONFIG_4 | EX_VIDEO_MPEG2TS_SEQUENCE_START)
        });
        return TagInfo { keyframe: frame_type == VIDEO_FRAME_KEY && config.is_none(), config, codec };
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
    let config = (has_packet_type && tag.get(1) == Some(&0)).then_some(ConfigSlot {
        audio: false,
        packet_type: EX_SEQUENCE_START,
        track: None,
    });
    TagInfo { keyframe: frame_type == VIDEO_FRAME_KEY && config.is_none(), config, codec }
}

const SOUND_FORMAT_MP3: u8 = 2;
const SOUND_FORMAT_AAC: u8 = 10;
const SOUND_FORMAT_EX_HEADER: u8 = 9;

/// Inspects an audio message (FLV AUDIODATA). Audio frames are never keyframes for the GOP cache.
pub(crate) fn audio(tag: &[u8]) -> TagInfo {
    let Some(&b0) = tag.first() else { return TagInfo::default() };
    let format = b0 >> 4;
    match format {
        SOUND_FORMAT_AAC => TagInfo {
            keyframe: false,
            config: (tag.get(1) == Some(&0)).then_some(ConfigSlot {
                audio: true,
                packet_type: EX_SEQUENCE_START,
                track: None,
            }),
            codec: Codec::Aac,
        },
        SOUND_FORMAT_EX_HEADER => {
            let (config, codec, _) =
                enhanced(tag, true, EX_AUDIO_MULTITRACK, |t| matches!(t, EX_SEQUENCE_START | EX_CONFIG_4));
            TagInfo { keyframe: false, config, codec }
        }
        SOUND_FORMAT_MP3 => TagInfo { codec: Codec::Mp3, ..Default::default() },
        other => TagInfo { codec: Codec::LegacyId(other), ..Default::default() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIDEO_SEQ: Option<ConfigSlot> = Some(ConfigSlot { audio: false, packet_type: 0, track: None });

    #[test]
    fn avc_keyframes_and_sequence_headers() {
        assert_eq!(video(&[0x17, 0, 0, 0, 0]), TagInfo { keyframe: false, config: VIDEO_SEQ, codec: Codec::Avc });
        assert_eq!(video(&[0x17, 1, 0, 0, 0]), TagInfo { keyframe: true, config: None, codec: Codec::Avc });
        assert_eq!(video(&[0x27, 1, 0, 0, 0]), TagInfo { keyframe: false, config: None, codec: Codec::Avc });
        // End of sequence is neither.
        assert_eq!(video(&[0x17, 2]).config, None);
    }

    #[test]
    fn enhanced_rtmp_fourcc_video() {
        // IsExHeader | key frame (1<<4) | SequenceStart, "hvc1"
        let seq = [0x80 | 0x10, b'h', b'v', b'c', b'1', 1, 2];
        assert_eq!(video(&seq), TagInfo { keyframe: false, config: VIDEO_SEQ, codec: Codec::Hevc });
        // key frame, CodedFramesX (3), "av01"
        let key = [0x80 | 0x10 | 3, b'a', b'v', b'0', b'1', 9];
        assert_eq!(video(&key), TagInfo { keyframe: true, config: None, codec: Codec::Av1 });
        // inter frame (2<<4), CodedFrames, "vp09"
        let inter = [0x80 | 0x20 | 1, b'v', b'p', b'0', b'9'];
        assert_eq!(video(&inter), TagInfo { keyframe: false, config: None, codec: Codec::Vp9 });
        // HDR colour metadata (4) is configuration too, in its own slot.
        let hdr = [0x80 | 0x10 | 4, b'h', b'v', b'c', b'1', 2];
        assert_eq!(video(&hdr).config, Some(ConfigSlot { audio: false, packet_type: 4, track: None }));
        // Unknown FourCC: still classified by frame type, passed through.
        let other = [0x80 | 0x10 | 1, b'x', b'y', b'z', b'w'];
        assert_eq!(video(&other).codec, Codec::Other(*b"xyzw"));
        assert!(video(&other).keyframe);
    }

    #[test]
    fn multitrack_configuration_has_a_slot_per_track() {
        // Video multitrack (6), OneTrack (0) wrapping SequenceStart (0), "avc1", track 1.
        let t1 = [0x80 | 0x10 | 6, 0x00, b'a', b'v', b'c', b'1', 1, 0xAA];
        let t2 = [0x80 | 0x10 | 6, 0x00, b'a', b'v', b'c', b'1', 2, 0xBB];
        let (s1, s2) = (video(&t1).config, video(&t2).config);
        assert_eq!(s1, Some(ConfigSlot { audio: false, packet_type: 0, track: Some((0, 1)) }));
        assert!(s2.is_some() && s1 != s2, "two tracks, two slots");
        assert_eq!(video(&t1).codec, Codec::Avc);
        // Coded frames of a track (inner packet type 1) are not configuration.
        assert_eq!(video(&[0x80 | 0x10 | 6, 0x01, b'a', b'v', b'c', b'1', 1, 0]).config, None);
        // Audio multitrack (5), ManyTracks (1) wrapping SequenceStart, "Opus", track 0.
        let a = [0x90 | 5, 0x10, b'O', b'p', b'u', b's', 0, 0, 0, 19];
        assert_eq!(audio(&a).config, Some(ConfigSlot { audio: true, packet_type: 0, track: Some((1, 0)) }));
        assert_eq!(audio(&a).codec, Codec::Opus);
        // Truncated before the track id: no slot (passed through as a frame).
        assert_eq!(audio(&[0x90 | 5, 0x10, b'O', b'p']).config, None);
    }

    #[test]
    fn unknown_and_truncated_video_pass_through() {
        assert_eq!(video(&[]), TagInfo::default());
        // Sorenson H.263 key frame: a keyframe, no sequence header.
        assert_eq!(video(&[0x12, 0]), TagInfo { keyframe: true, config: None, codec: Codec::LegacyId(2) });
        // Truncated enhanced header.
        assert_eq!(video(&[0x90]).codec, Codec::Unknown);
    }

    #[test]
    fn audio_configuration_packets_each_have_their_slot() {
        let aac = audio(&[0xAF, 0, 0x12, 0x10]).config;
        assert_eq!(aac, Some(ConfigSlot { audio: true, packet_type: 0, track: None }));
        assert_eq!(audio(&[0xAF, 1, 0x21]).config, None);
        assert_eq!(audio(&[0xAF, 1]).codec, Codec::Aac);
        // Opus: the sequence start (OpusHead) and the multichannel config are both kept, apart.
        let head = audio(&[0x90, b'O', b'p', b'u', b's', 1]).config;
        let multichannel = audio(&[0x94, b'O', b'p', b'u', b's', 0, 2]).config;
        assert!(head.is_some() && multichannel.is_some() && head != multichannel);
        assert_eq!(audio(&[0x91, b'O', b'p', b'u', b's']).codec, Codec::Opus);
        assert_eq!(audio(&[0x91, b'O', b'p', b'u', b's']).config, None);
        assert_eq!(audio(&[0x2F, 0]).config, None);
        assert_eq!(audio(&[]), TagInfo::default());
    }
}
