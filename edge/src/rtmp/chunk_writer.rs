//! One RTMP message → chunk bytes, in a single exact-size allocation.
//!
//! Every message starts with a full (format 0) header carrying the absolute timestamp, and the
//! continuation chunks are format 3. No state is shared between messages, so the bytes of one
//! media message can be serialized once and written to any number of players, and any message
//! can be dropped for a slow player without breaking the peer's header decompression.

use bytes::{BufMut, Bytes, BytesMut};

const EXTENDED_TIMESTAMP_MARK: u32 = 0x00FF_FFFF;

/// Bytes [`write_message`] produces for a payload of `len` bytes.
pub(crate) fn serialized_len(len: usize, timestamp: u32, chunk_size: usize) -> usize {
    let chunk_size = chunk_size.max(1);
    let extended = if timestamp >= EXTENDED_TIMESTAMP_MARK { 4 } else { 0 };
    let chunks = len.div_ceil(chunk_size).max(1);
    len + 12 + extended + (chunks - 1) * (1 + extended)
}

/// Appends the chunks of one message to `out`. `csid` must be in 2..=63 (one-byte basic header);
/// the edge only uses its fixed ids from [`super::csid`].
pub(crate) fn write_message(
    out: &mut BytesMut,
    csid: u32,
    type_id: u8,
    stream_id: u32,
    timestamp: u32,
    payload: &[u8],
    chunk_size: usize,
) {
    debug_assert!((2..=63).contains(&csid), "csid {csid} needs a multi-byte basic header");
    let csid = (csid & 0x3f) as u8;
    let chunk_size = chunk_size.max(1);
    let extended = timestamp >= EXTENDED_TIMESTAMP_MARK;
    let len = payload.len().min(0x00FF_FFFF);
    out.reserve(serialized_len(len, timestamp, chunk_size));

    out.put_u8(csid);
    let ts_field = timestamp.min(EXTENDED_TIMESTAMP_MARK);
    out.put_slice(&ts_field.to_be_bytes()[1..]);
    out.put_slice(&(len as u32).to_be_bytes()[1..]);
    out.put_u8(type_id);
    out.put_u32_le(stream_id);
    if extended {
        out.put_u32(timestamp);
    }
    let mut chunks = payload[..len].chunks(chunk_size);
    if let Some(first) = chunks.next() {
        out.put_slice(first);
    }
    for chunk in chunks {
        out.put_u8(0xC0 | csid);
        if extended {
            out.put_u32(timestamp);
        }
        out.put_slice(chunk);
    }
}

/// [`write_message`] into a fresh buffer of exactly the right size.
pub(crate) fn serialize_message(
    csid: u32,
    type_id: u8,
    stream_id: u32,
    timestamp: u32,
    payload: &[u8],
    chunk_size: usize,
) -> Bytes {
    let mut out = BytesMut::with_capacity(serialized_len(payload.len(), timestamp, chunk_size));
    write_message(&mut out, csid, type_id, stream_id, timestamp, payload, chunk_size);
    out.freeze()
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
        let mut out = BytesMut::new();
        write_message(&mut out, 9, 8, 1, 100, &[1, 2, 3], 4096);
        write_message(&mut out, 10, 9, 1, 140, &[4; 5000], 4096);
        write_message(&mut out, 9, 8, 1, 120, &[5], 4096);
        let msgs = rml_parse(&out, 4096);
        assert_eq!(msgs.iter().map(|m| m.timestamp.value).collect::<Vec<_>>(), vec![100, 140, 120]);
        assert_eq!(msgs[1].data.len(), 5000);
    }
}
