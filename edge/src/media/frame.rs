//! The frame every player of a stream shares: one media message, its payload kept as the
//! publisher's connection handed it over, and the RTMP chunk headers (full header, absolute
//! timestamp, the edge's chunk size) that frame it on the wire. A write hands the headers and
//! the payload's pieces to `writev` side by side ([`Frame::pieces`]), so the payload is never
//! copied into a serialized form: copying each message into its chunks was 7 % of the edge's
//! CPU at 3 Mbit/s ingest (docs/benchmarks.md, "Frames that keep their payload").
//!
//! The payload is held for as long as the GOP cache keeps the frame, so it must be an
//! allocation of its own ([`crate::media::Media::payload`] says who guarantees that).

use bytes::Bytes;

use crate::rtmp::{
    OUT_CHUNK_SIZE,
    chunk_writer::{ChunkHeaders, MAX_MESSAGE_LEN, serialize_message, serialized_len},
    csid, msg_type,
};

/// The message stream id nearly every client gets from `createStream` (rml_rtmp numbers them
/// from 1 per connection). Frames carry headers for it; other ids are serialized per player.
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

/// One media message, shared by every player of a stream.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) kind: FrameKind,
    pub(crate) timestamp: u32,
    pub(crate) keyframe: bool,
    /// Sequence headers, metadata and status messages are never dropped for slow players.
    pub(crate) essential: bool,
    /// The message payload, as received.
    pub(crate) payload: Bytes,
    /// Its chunk headers for message stream [`DEFAULT_STREAM_ID`].
    headers: ChunkHeaders,
}

impl Frame {
    pub(crate) fn new(kind: FrameKind, timestamp: u32, keyframe: bool, essential: bool, payload: Bytes) -> Frame {
        let (csid, type_id) = ids(kind);
        let payload = if payload.len() > MAX_MESSAGE_LEN { payload.slice(..MAX_MESSAGE_LEN) } else { payload };
        let headers = ChunkHeaders::new(csid, type_id, DEFAULT_STREAM_ID, timestamp, payload.len());
        Frame { kind, timestamp, keyframe, essential, payload, headers }
    }

    /// The frame's wire bytes for message stream [`DEFAULT_STREAM_ID`], in order: the header,
    /// then the payload in chunks of the edge's chunk size with a continuation header between
    /// them. Every piece borrows from the frame.
    pub(crate) fn pieces(&self) -> Pieces<'_> {
        Pieces {
            head: Some(self.headers.first()),
            rest: &self.payload,
            continuation: self.headers.continuation(),
            separator_due: false,
        }
    }

    /// The chunk bytes for a player on another message stream id than the default (a copy
    /// with that id in the header).
    pub(crate) fn chunks_for(&self, stream_id: u32) -> Bytes {
        let (csid, type_id) = ids(self.kind);
        serialize_message(csid, type_id, stream_id, self.timestamp, &self.payload, OUT_CHUNK_SIZE as usize)
    }

    /// The wire bytes [`pieces`](Self::pieces) hands out, in one buffer (tests only: the edge
    /// writes the pieces).
    #[cfg(test)]
    pub(crate) fn wire(&self) -> Bytes {
        self.pieces().collect::<Vec<&[u8]>>().concat().into()
    }

    /// Bytes this frame occupies in a player's queue.
    pub(crate) fn wire_len(&self) -> usize {
        serialized_len(self.payload.len(), self.timestamp, OUT_CHUNK_SIZE as usize)
    }
}

fn ids(kind: FrameKind) -> (u32, u8) {
    match kind {
        FrameKind::Audio => (csid::AUDIO, msg_type::AUDIO),
        FrameKind::Video => (csid::VIDEO, msg_type::VIDEO),
        FrameKind::Data => (csid::DATA, msg_type::AMF0_DATA),
        FrameKind::Status => (csid::CONTROL, msg_type::AMF0_COMMAND),
    }
}

/// The slices of one queued item's wire bytes: a frame's headers and payload chunks
/// ([`Frame::pieces`]), or one buffer ([`Pieces::single`]).
pub(crate) struct Pieces<'a> {
    head: Option<&'a [u8]>,
    rest: &'a [u8],
    continuation: &'a [u8],
    separator_due: bool,
}

impl<'a> Pieces<'a> {
    pub(crate) fn single(bytes: &'a [u8]) -> Pieces<'a> {
        Pieces { head: Some(bytes), rest: &[], continuation: &[], separator_due: false }
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if let Some(head) = self.head.take() {
            return Some(head);
        }
        if self.rest.is_empty() {
            return None;
        }
        if self.separator_due {
            self.separator_due = false;
            return Some(self.continuation);
        }
        let (chunk, rest) = self.rest.split_at(self.rest.len().min(OUT_CHUNK_SIZE as usize));
        self.rest = rest;
        self.separator_due = !rest.is_empty();
        Some(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame's pieces are exactly what serializing its payload gives, for the default
    /// message stream id and any other, for no payload, one chunk, several chunks, a payload
    /// that ends on a chunk boundary and an extended timestamp.
    #[test]
    fn pieces_match_a_fresh_serialization() {
        let chunk = OUT_CHUNK_SIZE as usize;
        for (len, ts) in
            [(0, 0), (10, 40), (chunk, 7), (chunk * 2 + 7, 1000), (5000, 0x0100_0000), (chunk * 3, 0x00FF_FFFF)]
        {
            let payload: Bytes = (0..len).map(|i| (i * 31) as u8).collect::<Vec<u8>>().into();
            let f = Frame::new(FrameKind::Video, ts, true, false, payload.clone());
            let fresh = serialize_message(csid::VIDEO, msg_type::VIDEO, DEFAULT_STREAM_ID, ts, &payload, chunk);
            assert_eq!(f.wire(), fresh, "len {len}, ts {ts}");
            assert_eq!(f.wire_len(), fresh.len(), "len {len}, ts {ts}");
            assert_eq!(f.pieces().count(), 1 + (2 * len.div_ceil(chunk)).saturating_sub(1), "len {len}");
            for id in [3, 0x0102_0304] {
                let other = serialize_message(csid::VIDEO, msg_type::VIDEO, id, ts, &payload, chunk);
                assert_eq!(f.chunks_for(id), other, "len {len}, id {id}");
            }
        }
    }

    /// The frame holds the payload it was given, not a copy.
    #[test]
    fn frames_keep_their_payload() {
        let payload = Bytes::from(vec![7u8; 10_000]);
        let f = Frame::new(FrameKind::Audio, 40, false, false, payload.clone());
        assert_eq!(f.payload.as_ptr(), payload.as_ptr());
        let pieces: Vec<&[u8]> = f.pieces().collect();
        assert_eq!(pieces[1].as_ptr(), payload.as_ptr(), "the first chunk is the payload itself");
    }
}
