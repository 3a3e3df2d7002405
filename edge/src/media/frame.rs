//! The frame every player of a stream shares: one media message serialised into RTMP chunks
//! once (full header, absolute timestamp, the edge's chunk size) and handed to each player as
//! reference-counted bytes. A player on another message stream id gets its own copy.
//!
//! The frame keeps only the chunk bytes, not the payload it was made from: the GOP cache holds
//! every frame of the current GOP, and keeping both would hold each GOP twice and keep the
//! publisher's read buffers alive until the next keyframe (so the reader could not reuse them).

use bytes::{Bytes, BytesMut};

use crate::rtmp::{OUT_CHUNK_SIZE, chunk_writer::serialize_message, csid, msg_type};

/// The message stream id nearly every client gets from `createStream` (rml_rtmp numbers them
/// from 1 per connection). Frames are pre-serialized for it; other ids are serialized per player.
pub(crate) const DEFAULT_STREAM_ID: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameKind {
    Audio,
    Video,
    /// Script data (onMetaData and others).
    Data,
    /// A status notification to players (onStatus): never dropped.
    Status,
}

/// One media message, serialized once and shared by every player of a stream.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) kind: FrameKind,
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) timestamp: u32,
    pub(crate) keyframe: bool,
    /// Sequence headers, metadata and status messages are never dropped for slow players.
    pub(crate) essential: bool,
    /// Length of the message payload (the chunk bytes add headers).
    pub(crate) payload_len: usize,
    /// Chunk bytes for message stream [`DEFAULT_STREAM_ID`].
    pub(crate) chunks: Bytes,
}

/// Where the message stream id sits in the chunks [`serialize_message`] writes: after the
/// one-byte basic header, 3 bytes of timestamp, 3 of length and 1 of type, little-endian. Only
/// the first chunk carries it (the continuation chunks are format 3).
const STREAM_ID_AT: std::ops::Range<usize> = 8..12;

impl Frame {
    pub(crate) fn new(kind: FrameKind, timestamp: u32, keyframe: bool, essential: bool, payload: &[u8]) -> Frame {
        let chunks = serialize_for(kind, timestamp, payload, DEFAULT_STREAM_ID);
        Frame { kind, timestamp, keyframe, essential, payload_len: payload.len(), chunks }
    }

    /// The chunk bytes for a player on `stream_id` (shared for the default id, a copy with the
    /// id rewritten otherwise).
    pub(crate) fn chunks_for(&self, stream_id: u32) -> Bytes {
        if stream_id == DEFAULT_STREAM_ID {
            return self.chunks.clone();
        }
        let mut copy = BytesMut::from(&self.chunks[..]);
        if let Some(field) = copy.get_mut(STREAM_ID_AT) {
            field.copy_from_slice(&stream_id.to_le_bytes());
        }
        copy.freeze()
    }

    /// The payload, taken back out of the chunks (tests only: the edge never needs it again).
    #[cfg(test)]
    pub(crate) fn payload(&self) -> Bytes {
        let extended = if self.timestamp >= 0x00FF_FFFF { 4 } else { 0 };
        let mut rest = &self.chunks[12 + extended..];
        let mut out = BytesMut::with_capacity(self.payload_len);
        loop {
            let take = rest.len().min(OUT_CHUNK_SIZE as usize);
            out.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if rest.is_empty() {
                return out.freeze();
            }
            rest = &rest[1 + extended..];
        }
    }

    /// Bytes this frame occupies in a player's queue.
    pub(crate) fn wire_len(&self) -> usize {
        self.chunks.len()
    }
}

fn serialize_for(kind: FrameKind, timestamp: u32, payload: &[u8], stream_id: u32) -> Bytes {
    let (csid, type_id) = match kind {
        FrameKind::Audio => (csid::AUDIO, msg_type::AUDIO),
        FrameKind::Video => (csid::VIDEO, msg_type::VIDEO),
        FrameKind::Data => (csid::DATA, msg_type::AMF0_DATA),
        FrameKind::Status => (csid::CONTROL, msg_type::AMF0_COMMAND),
    };
    serialize_message(csid, type_id, stream_id, timestamp, payload, OUT_CHUNK_SIZE as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A player on another message stream id gets exactly what serializing the payload for that
    /// id gives, for one chunk, several chunks and an extended timestamp.
    #[test]
    fn chunks_for_another_stream_id_match_a_fresh_serialization() {
        for (len, ts) in [(10, 40), (4096 * 2 + 7, 1000), (5000, 0x0100_0000)] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
            let f = Frame::new(FrameKind::Video, ts, true, false, &payload);
            assert_eq!(f.payload_len, len);
            assert_eq!(f.payload(), payload, "len {len}");
            for id in [DEFAULT_STREAM_ID, 3, 0x0102_0304] {
                assert_eq!(f.chunks_for(id), serialize_for(FrameKind::Video, ts, &payload, id), "len {len}, id {id}");
            }
        }
    }
}
