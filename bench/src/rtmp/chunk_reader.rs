//! A lean inbound RTMP chunk parser. It tracks the per-chunk-stream header state the protocol's
//! header compression needs and reports each completed message, but keeps only the first
//! `capture` bytes of audio and video payloads: a player needs a frame's arrival time, size and
//! marker, never the picture. Chunk payload bytes are consumed straight from the caller's read
//! buffer; only an incomplete chunk header is left for the caller to keep until more bytes come.
//!
//! It shares no code with the edge's reader (`streamfleet_edge::rtmp`) on purpose, down to the
//! message type numbers from the RTMP specification: a load tool that parsed with the server's
//! own code could not catch a framing bug in it.

/// Message type ids the reader itself acts on or treats specially.
pub mod types {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACKNOWLEDGEMENT: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA_AMF0: u8 = 18;
    pub const COMMAND_AMF0: u8 = 20;
}

/// Largest non-media message we buffer whole; commands and metadata are far smaller.
const MAX_BUFFERED_MESSAGE: u32 = 4 << 20;
const EXTENDED: u32 = 0x00ff_ffff;

/// A protocol violation that makes the rest of the byte stream unreadable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk format {format} on chunk stream {csid} that never had a type 0 header")]
    UnknownChunkStream { csid: u32, format: u8 },
    #[error("message of {length} bytes (type {type_id}) is larger than the {MAX_BUFFERED_MESSAGE} byte limit")]
    TooLarge { type_id: u8, length: u32 },
    #[error("peer set chunk size {0}, outside 1..=2147483647")]
    BadChunkSize(u32),
}

/// A completed message. `data` is the whole payload, except for audio and video where it is at
/// most the reader's `capture` bytes (`length` is always the full size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub csid: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub timestamp: u32,
    pub length: u32,
    pub data: &'a [u8],
}

#[derive(Debug, Default)]
struct ChunkStream {
    csid: u32,
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The last header's timestamp field was 0xFFFFFF, so type 3 chunks carry 4 more bytes.
    extended: bool,
    /// Payload bytes received of the message in progress.
    got: u32,
    in_progress: bool,
    data: Vec<u8>,
}

/// The parser; one per connection.
#[derive(Debug)]
pub struct ChunkReader {
    max_chunk: u32,
    capture: usize,
    streams: Vec<ChunkStream>,
    /// (index into `streams`, payload bytes still to come in the current chunk)
    current: Option<(usize, u32)>,
}

impl ChunkReader {
    /// A reader keeping `capture` bytes of each audio/video message. The peer's chunk size starts
    /// at the protocol default of 128 until it sends `SetChunkSize`.
    pub fn new(capture: usize) -> Self {
        ChunkReader { max_chunk: 128, capture, streams: Vec::new(), current: None }
    }

    /// Parses as much of `input` as possible and returns how many bytes were consumed; the rest
    /// (a partial chunk header, at most 18 bytes) must be passed again with more bytes appended.
    pub fn feed(&mut self, input: &[u8], mut on_message: impl FnMut(Message<'_>)) -> Result<usize, ChunkError> {
        let mut pos = 0;
        loop {
            if let Some((idx, left)) = self.current {
                if pos == input.len() {
                    return Ok(pos);
                }
                let n = (left as usize).min(input.len() - pos);
                let cs = &mut self.streams[idx];
                let want = if is_media(cs.type_id) { self.capture.min(cs.length as usize) } else { cs.length as usize };
                if cs.data.len() < want {
                    let take = (want - cs.data.len()).min(n);
                    cs.data.extend_from_slice(&input[pos..pos + take]);
                }
                // n is at most a chunk size, which fits u32.
                cs.got += n as u32;
                pos += n;
                let left = left - n as u32;
                if left > 0 {
                    self.current = Some((idx, left));
                    return Ok(pos);
                }
                self.current = None;
                if self.streams[idx].got >= self.streams[idx].length {
                    self.complete(idx, &mut on_message)?;
                }
                continue;
            }
            let Some((header_len, idx)) = self.header(&input[pos..])? else {
                return Ok(pos);
            };
            pos += header_len;
            let cs = &self.streams[idx];
            let chunk = (cs.length - cs.got).min(self.max_chunk);
            if chunk == 0 {
                self.complete(idx, &mut on_message)?;
            } else {
                self.current = Some((idx, chunk));
            }
        }
    }

    /// The chunk size the peer uses now.
    pub fn peer_chunk_size(&self) -> u32 {
        self.max_chunk
    }

    fn complete(&mut self, idx: usize, on_message: &mut impl FnMut(Message<'_>)) -> Result<(), ChunkError> {
        let cs = &self.streams[idx];
        let msg = Message {
            csid: cs.csid,
            type_id: cs.type_id,
            stream_id: cs.stream_id,
            timestamp: cs.timestamp,
            length: cs.length,
            data: &cs.data,
        };
        let mut new_chunk_size = None;
        let mut abort_csid = None;
        match msg.type_id {
            types::SET_CHUNK_SIZE if msg.data.len() >= 4 => {
                let size = u32::from_be_bytes([msg.data[0], msg.data[1], msg.data[2], msg.data[3]]) & 0x7fff_ffff;
                if size == 0 {
                    return Err(ChunkError::BadChunkSize(size));
                }
                new_chunk_size = Some(size);
            }
            types::ABORT if msg.data.len() >= 4 => {
                abort_csid = Some(u32::from_be_bytes([msg.data[0], msg.data[1], msg.data[2], msg.data[3]]));
            }
            _ => {}
        }
        on_message(msg);
        let cs = &mut self.streams[idx];
        cs.in_progress = false;
        cs.got = 0;
        cs.data.clear();
        if let Some(size) = new_chunk_size {
            self.max_chunk = size;
        }
        if let Some(csid) = abort_csid
            && let Some(s) = self.streams.iter_mut().find(|s| s.csid == csid)
        {
            s.in_progress = false;
            s.got = 0;
            s.data.clear();
        }
        Ok(())
    }

    /// Parses one chunk header from the start of `buf`: `None` if it is incomplete, else its
    /// length and the chunk stream it belongs to (whose state now describes the chunk).
    fn header(&mut self, buf: &[u8]) -> Result<Option<(usize, usize)>, ChunkError> {
        let Some(&b0) = buf.first() else { return Ok(None) };
        let format = b0 >> 6;
        let (csid, mut at) = match b0 & 0x3f {
            0 => match buf.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => return Ok(None),
            },
            1 => match (buf.get(1), buf.get(2)) {
                (Some(&b1), Some(&b2)) => (64 + u32::from(b1) + 256 * u32::from(b2), 3),
                _ => return Ok(None),
            },
            c => (u32::from(c), 1),
        };
        let existing = self.streams.iter().position(|s| s.csid == csid);
        let fixed = [11, 7, 3, 0][usize::from(format)];
        if buf.len() < at + fixed {
            return Ok(None);
        }
        let h = &buf[at..at + fixed];
        let ts_field = if format < 3 { u24(&h[0..3]) } else { 0 };
        let extended = match (format, existing) {
            (3, Some(i)) => self.streams[i].extended,
            (3, None) => return Err(ChunkError::UnknownChunkStream { csid, format }),
            _ => ts_field == EXTENDED,
        };
        if buf.len() < at + fixed + if extended { 4 } else { 0 } {
            return Ok(None);
        }
        let ts = if extended {
            let e = &buf[at + fixed..at + fixed + 4];
            u32::from_be_bytes([e[0], e[1], e[2], e[3]])
        } else {
            ts_field
        };
        let idx = match existing {
            Some(i) => i,
            None if format == 0 => {
                self.streams.push(ChunkStream { csid, ..ChunkStream::default() });
                self.streams.len() - 1
            }
            None => return Err(ChunkError::UnknownChunkStream { csid, format }),
        };
        let cs = &mut self.streams[idx];
        match format {
            0 => {
                cs.timestamp = ts;
                cs.delta = 0;
                cs.length = u24(&h[3..6]);
                cs.type_id = h[6];
                cs.stream_id = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
            }
            1 => {
                cs.delta = ts;
                cs.length = u24(&h[3..6]);
                cs.type_id = h[6];
                cs.timestamp = cs.timestamp.wrapping_add(ts);
            }
            2 => {
                cs.delta = ts;
                cs.timestamp = cs.timestamp.wrapping_add(ts);
            }
            _ => {
                if !cs.in_progress {
                    cs.timestamp = cs.timestamp.wrapping_add(cs.delta);
                }
            }
        }
        if format < 3 {
            cs.extended = extended;
        }
        // A new header (or a type 3 chunk after a complete message) starts a new message; a type
        // 0-2 header in the middle of a message abandons the old one, as the peer evidently did.
        if format < 3 || !cs.in_progress {
            if !is_media(cs.type_id) && cs.length > MAX_BUFFERED_MESSAGE {
                return Err(ChunkError::TooLarge { type_id: cs.type_id, length: cs.length });
            }
            cs.in_progress = true;
            cs.got = 0;
            cs.data.clear();
        }
        at += fixed + if extended { 4 } else { 0 };
        Ok(Some((at, idx)))
    }
}

fn is_media(type_id: u8) -> bool {
    type_id == types::AUDIO || type_id == types::VIDEO
}

fn u24(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rml_rtmp::chunk_io::ChunkSerializer;
    use rml_rtmp::messages::MessagePayload;
    use rml_rtmp::time::RtmpTimestamp;

    #[derive(Debug, PartialEq)]
    struct Owned {
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        length: u32,
        data: Vec<u8>,
    }

    fn payload(type_id: u8, ts: u32, len: usize, seed: u8) -> MessagePayload {
        MessagePayload {
            timestamp: RtmpTimestamp::new(ts),
            type_id,
            message_stream_id: 1,
            data: Bytes::from((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<_>>()),
        }
    }

    /// Serializes with rml_rtmp (an independent implementation, with header compression), then
    /// feeds the bytes in pieces of `step` bytes, keeping unconsumed bytes like a socket reader.
    fn roundtrip(messages: &[MessagePayload], chunk_size: u32, step: usize, capture: usize) -> Vec<Owned> {
        let mut ser = ChunkSerializer::new();
        let mut wire = ser.set_max_chunk_size(chunk_size, RtmpTimestamp::new(0)).unwrap().bytes;
        for m in messages {
            wire.extend(ser.serialize(m, false, false).unwrap().bytes);
        }
        let mut reader = ChunkReader::new(capture);
        let mut out = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        for piece in wire.chunks(step) {
            pending.extend_from_slice(piece);
            let used = reader
                .feed(&pending, |m| {
                    out.push(Owned {
                        type_id: m.type_id,
                        stream_id: m.stream_id,
                        timestamp: m.timestamp,
                        length: m.length,
                        data: m.data.to_vec(),
                    })
                })
                .unwrap();
            pending.drain(..used);
        }
        assert!(pending.is_empty(), "{} bytes left unparsed", pending.len());
        out.retain(|m| m.type_id != types::SET_CHUNK_SIZE);
        out
    }

    #[test]
    fn finds_every_message_across_split_reads_and_header_compression() {
        let msgs = vec![
            payload(20, 0, 180, 1),
            payload(9, 0, 9000, 2),
            payload(9, 33, 9000, 3), // same length: type 2 header
            payload(9, 66, 9000, 4), // same delta too: type 3 header for a new message
            payload(8, 66, 300, 5),
            payload(9, 100, 1, 6),
            payload(18, 100, 40, 7),
        ];
        for step in [1, 7, 128, 4096, 100_000] {
            let got = roundtrip(&msgs, 4096, step, 64);
            let want: Vec<Owned> = msgs
                .iter()
                .map(|m| Owned {
                    type_id: m.type_id,
                    stream_id: 1,
                    timestamp: m.timestamp.value,
                    length: m.data.len() as u32,
                    data: m.data[..if m.type_id == 8 || m.type_id == 9 { m.data.len().min(64) } else { m.data.len() }]
                        .to_vec(),
                })
                .collect();
            assert_eq!(got, want, "step {step}");
        }
    }

    #[test]
    fn handles_extended_timestamps_in_continuation_chunks() {
        let msgs = vec![payload(9, 0x0100_0000, 1000, 1), payload(9, 0x0100_0021, 1000, 2)];
        let got = roundtrip(&msgs, 128, 5, 16);
        assert_eq!(
            got.iter().map(|m| (m.timestamp, m.length)).collect::<Vec<_>>(),
            [(0x0100_0000, 1000), (0x0100_0021, 1000)]
        );
        assert_eq!(got[1].data, msgs[1].data[..16]);
    }

    #[test]
    fn follows_the_peers_chunk_size_and_default_128() {
        // Without SetChunkSize the peer chunks at 128 bytes.
        let mut ser = ChunkSerializer::new();
        let wire = ser.serialize(&payload(20, 5, 300, 9), false, false).unwrap().bytes;
        let mut reader = ChunkReader::new(0);
        let mut seen = Vec::new();
        assert_eq!(reader.feed(&wire, |m| seen.push(m.data.to_vec())).unwrap(), wire.len());
        assert_eq!(seen, [payload(20, 5, 300, 9).data.to_vec()]);
        assert_eq!(reader.peer_chunk_size(), 128);
        roundtrip(&[payload(9, 0, 10, 1)], 60_000, 3, 4);
    }

    #[test]
    fn rejects_a_compressed_header_on_an_unknown_chunk_stream() {
        let mut reader = ChunkReader::new(8);
        assert_eq!(
            reader.feed(&[0x44, 0, 0, 1, 0, 0, 4, 9], |_| {}),
            Err(ChunkError::UnknownChunkStream { csid: 4, format: 1 })
        );
    }

    #[test]
    fn leaves_an_incomplete_header_unconsumed() {
        let mut reader = ChunkReader::new(8);
        // Type 0 header needs 12 bytes; give 6.
        assert_eq!(reader.feed(&[0x03, 0, 0, 0, 0, 0], |_| {}), Ok(0));
    }
}
