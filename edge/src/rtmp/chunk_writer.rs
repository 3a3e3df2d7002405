//! One RTMP message → chunk bytes, in a single exact-size allocation.
//!
//! Every message starts with a full (format 0) header carrying the absolute timestamp, and the
//! continuation chunks are format 3. No state is shared between messages, so the bytes of one
//! media message can be serialized once and written to any number of players, and any message
//! can be dropped for a slow player without breaking the peer's header decompression.

use bytes::Bytes;

pub(crate) const EXTENDED_TIMESTAMP_MARK: u32 = 0x00FF_FFFF;

/// Bytes [`serialize_message`] produces for a payload of `len` bytes.
pub(crate) fn serialized_len(len: usize, timestamp: u32, chunk_size: usize) -> usize {
    let chunk_size = chunk_size.max(1);
    let extended = if timestamp >= EXTENDED_TIMESTAMP_MARK { 4 } else { 0 };
    let chunks = len.div_ceil(chunk_size).max(1);
    len + 12 + extended + (chunks - 1) * (1 + extended)
}

/// The chunks of one message in a fresh buffer of exactly the right size (every publisher's
/// message goes through here once: the header is assembled on the stack and each piece is one
/// `extend_from_slice`).
pub(crate) fn serialize_message(
    csid: u32,
    type_id: u8,
    stream_id: u32,
    timestamp: u32,
    payload: &[u8],
    chunk_size: usize,
) -> Bytes {
    debug_assert!((2..=63).contains(&csid), "csid {csid} needs a multi-byte basic header");
    let csid = (csid & 0x3f) as u8;
    let chunk_size = chunk_size.max(1);
    let payload = &payload[..payload.len().min(0x00FF_FFFF)];
    // Exactly the final length: `Bytes::from` then keeps the allocation as it is.
    let mut out = Vec::with_capacity(serialized_len(payload.len(), timestamp, chunk_size));

    let ts = timestamp.min(EXTENDED_TIMESTAMP_MARK).to_be_bytes();
    let len = (payload.len() as u32).to_be_bytes();
    let id = stream_id.to_le_bytes();
    let header = [csid, ts[1], ts[2], ts[3], len[1], len[2], len[3], type_id, id[0], id[1], id[2], id[3]];
    out.extend_from_slice(&header);
    let extended = (timestamp >= EXTENDED_TIMESTAMP_MARK).then(|| timestamp.to_be_bytes());
    if let Some(ext) = extended {
        out.extend_from_slice(&ext);
    }
    let mut chunks = payload.chunks(chunk_size);
    if let Some(first) = chunks.next() {
        out.extend_from_slice(first);
    }
    for chunk in chunks {
        out.push(0xC0 | csid);
        if let Some(ext) = extended {
            out.extend_from_slice(&ext);
        }
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
