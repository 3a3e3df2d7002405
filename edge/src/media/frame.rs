//! The frame every player of a stream shares: one media message serialised into RTMP chunks
//! once (full header, absolute timestamp, the edge's chunk size) and handed to each player as
//! reference-counted bytes. A player on another message stream id gets its own copy.

use bytes::Bytes;

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
    pub(crate) timestamp: u32,
    pub(crate) keyframe: bool,
    /// Sequence headers, metadata and status messages are never dropped for slow players.
    pub(crate) essential: bool,
    pub(crate) payload: Bytes,
    /// Chunk bytes for message stream [`DEFAULT_STREAM_ID`].
    pub(crate) chunks: Bytes,
}

impl Frame {
    pub(crate) fn new(kind: FrameKind, timestamp: u32, keyframe: bool, essential: bool, payload: Bytes) -> Frame {
        let chunks = serialize_for(kind, timestamp, &payload, DEFAULT_STREAM_ID);
        Frame { kind, timestamp, keyframe, essential, payload, chunks }
    }

    /// The chunk bytes for a player on `stream_id` (shared for the default id, a copy otherwise).
    pub(crate) fn chunks_for(&self, stream_id: u32) -> Bytes {
        if stream_id == DEFAULT_STREAM_ID {
            self.chunks.clone()
        } else {
            serialize_for(self.kind, self.timestamp, &self.payload, stream_id)
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
