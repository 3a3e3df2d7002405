//! A small FLV reader: splits a file into its audio, video and script tags. Only what a publisher
//! needs (tag kind, timestamp, payload as a shared `Bytes` slice of the file) is parsed; codec
//! payloads are left untouched because RTMP carries FLV tag bodies verbatim.

use bytes::Bytes;

/// Why a byte string is not a usable FLV file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    #[error("not an FLV file (no \"FLV\" signature)")]
    NotFlv,
    #[error("FLV header is shorter than its declared size {0}")]
    ShortHeader(u32),
    #[error("tag at byte {offset} is truncated: needs {needed} bytes, {available} left")]
    Truncated { offset: usize, needed: usize, available: usize },
    #[error("tag at byte {offset} is encrypted/filtered, which is not supported")]
    Filtered { offset: usize },
}

/// What an FLV tag carries (and the RTMP message type it becomes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    Audio,
    Video,
    Script,
}

impl TagKind {
    /// RTMP message type id for this kind of tag.
    pub fn rtmp_type(self) -> u8 {
        match self {
            TagKind::Audio => 8,
            TagKind::Video => 9,
            TagKind::Script => 18,
        }
    }
}

/// One tag, its body shared with the file's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    pub kind: TagKind,
    pub timestamp_ms: u32,
    pub data: Bytes,
}

const TAG_HEADER: usize = 11;
const PREV_TAG_SIZE: usize = 4;

/// Parses a whole FLV file. Tags of unknown type are skipped (the format allows them); a file
/// that ends in the middle of a tag is an error rather than a silently shorter stream.
pub fn parse(file: Bytes) -> Result<Vec<FlvTag>, FlvError> {
    if file.len() < 9 || &file[0..3] != b"FLV" {
        return Err(FlvError::NotFlv);
    }
    let header_size = u32::from_be_bytes([file[5], file[6], file[7], file[8]]);
    let mut pos = header_size as usize;
    if file.len() < pos {
        return Err(FlvError::ShortHeader(header_size));
    }
    let mut tags = Vec::new();
    // PreviousTagSize0 follows the header; tolerate a file that is only a header.
    pos += PREV_TAG_SIZE;
    while pos < file.len() {
        let available = file.len() - pos;
        if available < TAG_HEADER {
            return Err(FlvError::Truncated { offset: pos, needed: TAG_HEADER, available });
        }
        let h = &file[pos..pos + TAG_HEADER];
        if h[0] & 0x20 != 0 {
            return Err(FlvError::Filtered { offset: pos });
        }
        let tag_type = h[0] & 0x1f;
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        // The fourth timestamp byte holds the upper 8 bits.
        let timestamp_ms = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let needed = TAG_HEADER + size;
        if available < needed {
            return Err(FlvError::Truncated { offset: pos, needed, available });
        }
        let kind = match tag_type {
            8 => Some(TagKind::Audio),
            9 => Some(TagKind::Video),
            18 => Some(TagKind::Script),
            _ => None,
        };
        if let Some(kind) = kind {
            let start = pos + TAG_HEADER;
            tags.push(FlvTag { kind, timestamp_ms, data: file.slice(start..start + size) });
        }
        // The trailing PreviousTagSize may be missing after the very last tag.
        pos = (pos + needed + PREV_TAG_SIZE).min(file.len());
    }
    Ok(tags)
}

/// Serializes tags back into an FLV file (used to cache synthetic media and in tests).
pub fn write(tags: &[FlvTag], has_audio: bool, has_video: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(13 + tags.iter().map(|t| t.data.len() + 15).sum::<usize>());
    out.extend_from_slice(b"FLV\x01");
    out.push(u8::from(has_audio) << 2 | u8::from(has_video));
    out.extend_from_slice(&9u32.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    for t in tags {
        let size = t.data.len() as u32;
        let ts = t.timestamp_ms.to_be_bytes();
        out.push(match t.kind {
            TagKind::Audio => 8,
            TagKind::Video => 9,
            TagKind::Script => 18,
        });
        out.extend_from_slice(&size.to_be_bytes()[1..]);
        out.extend_from_slice(&[ts[1], ts[2], ts[3], ts[0]]);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&t.data);
        out.extend_from_slice(&(size + TAG_HEADER as u32).to_be_bytes());
    }
    out
}

/// True for an H.264/AVC video tag body that is a keyframe (frame type 1).
pub fn is_video_keyframe(body: &[u8]) -> bool {
    body.first().is_some_and(|b| b >> 4 == 1)
}

/// True for an AVC sequence header (codec 7, AVCPacketType 0).
pub fn is_avc_sequence_header(body: &[u8]) -> bool {
    body.len() >= 2 && body[0] & 0x0f == 7 && body[1] == 0
}

/// True for an AAC sequence header (sound format 10, AACPacketType 0).
pub fn is_aac_sequence_header(body: &[u8]) -> bool {
    body.len() >= 2 && body[0] >> 4 == 10 && body[1] == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(kind: TagKind, ts: u32, data: &[u8]) -> FlvTag {
        FlvTag { kind, timestamp_ms: ts, data: Bytes::copy_from_slice(data) }
    }

    #[test]
    fn round_trips_tags_including_extended_timestamps() {
        let tags = vec![
            tag(TagKind::Script, 0, b"\x02\x00\x0aonMetaData"),
            tag(TagKind::Video, 0, &[0x17, 0, 0, 0, 0, 1, 2, 3]),
            tag(TagKind::Audio, 21, &[0xaf, 1, 9]),
            tag(TagKind::Video, 0x0123_4567, &[0x27, 1, 0, 0, 0]),
        ];
        let file = write(&tags, true, true);
        assert_eq!(parse(Bytes::from(file)).unwrap(), tags);
    }

    #[test]
    fn rejects_non_flv_and_truncated_files() {
        assert_eq!(parse(Bytes::from_static(b"GIF89a....")), Err(FlvError::NotFlv));
        let file = write(&[tag(TagKind::Video, 0, &[0x17; 100])], false, true);
        let cut = Bytes::from(file[..60].to_vec());
        assert!(matches!(parse(cut), Err(FlvError::Truncated { offset: 13, needed: 111, .. })));
    }

    #[test]
    fn skips_unknown_tag_types_and_missing_last_prev_size() {
        let mut file = write(&[tag(TagKind::Audio, 5, &[0xaf, 1])], true, false);
        // An unknown tag type 15 with a 2-byte body, then drop the final PreviousTagSize.
        file.extend_from_slice(&[15, 0, 0, 2, 0, 0, 9, 0, 0, 0, 0, 0xde, 0xad, 0, 0, 0, 13]);
        file.extend_from_slice(&write(&[tag(TagKind::Video, 40, &[0x27, 1])], false, true)[13..]);
        file.truncate(file.len() - 4);
        let tags = parse(Bytes::from(file)).unwrap();
        assert_eq!(
            tags.iter().map(|t| (t.kind, t.timestamp_ms)).collect::<Vec<_>>(),
            [(TagKind::Audio, 5), (TagKind::Video, 40)]
        );
    }

    #[test]
    fn classifies_codec_headers_and_keyframes() {
        assert!(is_avc_sequence_header(&[0x17, 0]));
        assert!(!is_avc_sequence_header(&[0x17, 1]));
        assert!(is_video_keyframe(&[0x17, 1]));
        assert!(!is_video_keyframe(&[0x27, 1]));
        assert!(is_aac_sequence_header(&[0xaf, 0]));
        assert!(!is_aac_sequence_header(&[0xaf, 1]));
    }
}
