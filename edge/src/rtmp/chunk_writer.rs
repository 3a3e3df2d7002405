//! One RTMP message → chunk bytes, in a single exact-size allocation.
//!
//! Every message starts with a full (format 0) header carrying the absolute timestamp, and the
//! continuation chunks are format 3. No state is shared between messages, so the bytes of one
//! media message can be serialized once and written to any number of players, and any message
//! can be dropped for a slow player without breaking the peer's header decompression.

use bytes::Bytes;

const EXTENDED_TIMESTAMP_MARK: u32 = 0x00FF_FFFF;
/// The largest payload one message carries (its length field has 24 bits); longer payloads are
/// cut to it.
pub(crate) const MAX_MESSAGE_LEN: usize = 0x00FF_FFFF;

/// The headers of one message's chunks: the first chunk's full (format 0) header, and the
/// format 3 header before each continuation chunk, both with the extended timestamp when the
/// timestamp needs one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkHeaders {
    first: [u8; 16],
    continuation: [u8; 5],
    extended: bool,
}

impl ChunkHeaders {
    /// For a payload of `len` bytes (at most [`MAX_MESSAGE_LEN`]).
    pub(crate) fn new(csid: u32, type_id: u8, stream_id: u32, timestamp: u32, len: usize) -> ChunkHeaders {
        debug_assert!((2..=63).contains(&csid), "csid {csid} needs a multi-byte basic header");
        debug_assert!(len <= MAX_MESSAGE_LEN);
        let basic = (csid & 0x3f) as u8;
        let ts = timestamp.min(EXTENDED_TIMESTAMP_MARK).to_be_bytes();
        let len = (len as u32).to_be_bytes();
        let id = stream_id.to_le_bytes();
        let full = timestamp.to_be_bytes();
        ChunkHeaders {
            first: [
                basic, ts[1], ts[2], ts[3], len[1], len[2], len[3], type_id, id[0], id[1], id[2], id[3], full[0],
                full[1], full[2], full[3],
            ],
            continuation: [0xC0 | basic, full[0], full[1], full[2], full[3]],
            extended: timestamp >= EXTENDED_TIMESTAMP_MARK,
        }
    }

    /// The first chunk's header: 12 bytes, 16 with an extended timestamp.
    pub(crate) fn first(&self) -> &[u8] {
        if self.extended { &self.first } else { &self.first[..12] }
    }

    /// The header before each continuation chunk: 1 byte, 5 with an extended timestamp.
    pub(crate) fn continuation(&self) -> &[u8] {
        if self.extended { &self.continuation } else { &self.continuation[..1] }
    }
}

/// Bytes [`serialize_message`] produces for a payload of `len` bytes.
pub(crate) fn serialized_len(len: usize, timestamp: u32, chunk_size: usize) -> usize {
    let chunk_size = chunk_size.max(1);
    let extended = if timestamp >= EXTENDED_TIMESTAMP_MARK { 4 } else { 0 };
    let chunks = len.div_ceil(chunk_size).max(1);
    len + 12 + extended + (chunks - 1) * (1 + extended)
}

/// The chunks of one message in a fresh buffer of exactly the right size (the headers are
/// assembled on the stack and each piece is one `extend_from_slice`).
pub(crate) fn serialize_message(
    csid: u32,
    type_id: u8,
    stream_id: u32,
    timestamp: u32,
    payload: &[u8],
    chunk_size: usize,
) -> Bytes {
    let chunk_size = chunk_size.max(1);
    let payload = &payload[..payload.len().min(MAX_MESSAGE_LEN)];
    let headers = ChunkHeaders::new(csid, type_id, stream_id, timestamp, payload.len());
    // Exactly the final length: `Bytes::from` then keeps the allocation as it is.
    let mut out = Vec::with_capacity(serialized_len(payload.len(), timestamp, chunk_size));
    out.extend_from_slice(headers.first());
    let mut chunks = payload.chunks(chunk_size);
    if let Some(first) = chunks.next() {
        out.extend_from_slice(first);
    }
    for chunk in chunks {
        out.extend_from_slice(headers.continuation());
        out.extend_from_slice(chunk);
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::chunk_io::ChunkDeserializer;

    /// Round trip through rml_rtmp's own deserializer: what players built on the common
    /// libraries will parse.
    fn rml_parse(bytes: &[u8], chunk_size: usize) -> Vec<rml_rtmp::messages::MessagePayload> {
        let mut d = ChunkDeserializer::new();
        d.set_max_chunk_size(chunk_size).unwrap();
        let mut out = Vec::new();
        let mut input = bytes;
        while let Some(m) = d.get_next_message(input).unwrap() {
            out.push(m);
            input = &[];
        }
        out
    }

    #[test]
    fn round_trips_through_rml_rtmp() {
        let cases: [(usize, u32, usize); 6] =
            [(0, 0, 128), (1, 5, 128), (128, 40, 128), (129, 1000, 128), (10_000, 33, 4096), (5000, 0x0100_0000, 4096)];
        for (len, ts, cs) in cases {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let bytes = serialize_message(9, 9, 1, ts, &payload, cs);
            assert_eq!(bytes.len(), serialized_len(len, ts, cs), "len {len}");
            let msgs = rml_parse(&bytes, cs);
            assert_eq!(msgs.len(), 1, "len {len}");
            assert_eq!(&msgs[0].data[..], &payload[..]);
            assert_eq!(msgs[0].timestamp.value, ts);
            assert_eq!(msgs[0].message_stream_id, 1);
            assert_eq!(msgs[0].type_id, 9);
        }
    }

    #[test]
    fn consecutive_messages_are_independent() {
        let out = [
            serialize_message(9, 8, 1, 100, &[1, 2, 3], 4096),
            serialize_message(10, 9, 1, 140, &[4; 5000], 4096),
            serialize_message(9, 8, 1, 120, &[5], 4096),
        ]
        .concat();
        let msgs = rml_parse(&out, 4096);
        assert_eq!(msgs.iter().map(|m| m.timestamp.value).collect::<Vec<_>>(), vec![100, 140, 120]);
        assert_eq!(msgs[1].data.len(), 5000);
    }
}
