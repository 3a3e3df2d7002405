//! Inbound RTMP chunk stream → whole messages, enforcing the edge's limits.
//!
//! `rml_rtmp`'s `ChunkDeserializer` accepts chunk sizes up to 2^31, buffers 16 MiB messages,
//! keeps one reassembly buffer for all chunk streams (interleaved streams corrupt it) and
//! subtracts untrusted lengths without checks (a panic in debug builds, a huge allocation in
//! release). This reader replaces it on the inbound path: per-chunk-stream reassembly, every
//! length checked before use, nothing allocated ahead of the bytes that actually arrived, and a
//! clear error (which closes only that connection) for anything out of bounds.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use bytes::{Buf, Bytes, BytesMut};

use super::msg_type;

/// The chunk size every RTMP peer starts with.
const INITIAL_CHUNK_SIZE: u32 = 128;
/// A 24-bit timestamp field of all ones means "see the extended timestamp".
const EXTENDED_TIMESTAMP_MARK: u32 = 0x00FF_FFFF;
/// Reassembly buffers start at most this large and grow only as bytes arrive, so a header
/// announcing a large message costs nothing until its bytes are actually sent.
const INITIAL_REASSEMBLY_CAPACITY: usize = 64 * 1024;
/// The largest message whose reassembly buffer a reader keeps for the next message (its
/// `spare`). A keyframe's buffer (up to 64 KiB) kept per publisher cost 1,000 publishers of
/// 1 Mbit/s 26 KiB RSS each, while its reuse saved no CPU measurable per GB; an inter frame's
/// (a few KiB) is kept (docs/benchmarks.md, "Memory per publisher").
const SPARE_MAX: usize = 8 * 1024;

/// What each reader may hold without charging the shared [`InputBudget`]: a few commands and
/// their chunk headers, so a used-up budget never refuses a client that only sends commands
/// (a new publisher or player still gets in while others hold the budget).
const BUDGET_FREE_BYTES: usize = 8 * 1024;

/// Limits applied to one connection's inbound chunk stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderLimits {
    /// Largest chunk size a peer may announce with `SetChunkSize`.
    pub max_chunk_size: u32,
    /// Largest message, and the most bytes of incomplete messages buffered at once, for an
    /// admitted publisher (see [`ChunkReader::admit_publisher`]).
    pub max_message_size: u32,
    /// The same for every other connection (not yet admitted, players, relay pulls): they have
    /// no use for large messages, and nobody has vouched for them.
    pub max_message_size_unadmitted: u32,
    /// Most chunk stream ids a peer may use (each keeps a header and maybe a partial message).
    pub max_chunk_streams: usize,
    /// Largest command message (AMF0 or AMF3 command), checked from its header before any of
    /// it is buffered: commands are parsed in full, so their size bounds that work.
    pub max_command_size: u32,
}

impl Default for ReaderLimits {
    fn default() -> Self {
        ReaderLimits {
            max_chunk_size: 65_536,
            max_message_size: 8 * 1024 * 1024,
            max_message_size_unadmitted: 64 * 1024,
            max_chunk_streams: 64,
            max_command_size: 4 * 1024,
        }
    }
}

/// One complete inbound RTMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub csid: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub timestamp: u32,
    pub payload: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("peer announced chunk size {size}; allowed is 1..={max}")]
    BadChunkSize { size: u32, max: u32 },
    #[error("SetChunkSize message has {len} bytes instead of 4")]
    MalformedSetChunkSize { len: usize },
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge { len: u32, max: u32 },
    #[error("command message of {len} bytes exceeds the limit of {max} bytes (--max-command-size)")]
    CommandTooLarge { len: u32, max: u32, stream_id: u32 },
    #[error("chunk on chunk stream {csid} refers to a previous header that was never sent")]
    NoPreviousHeader { csid: u32 },
    #[error("chunk stream {csid} starts a new message before finishing the previous one")]
    InterruptedMessage { csid: u32 },
    #[error("peer uses more than {max} chunk streams")]
    TooManyChunkStreams { max: usize },
    #[error("incomplete messages buffered exceed {max} bytes")]
    TooMuchPartialData { max: u32 },
    #[error(
        "the edge's budget for input buffered by connections not admitted as publishers ({budget} bytes) is used up"
    )]
    InputBudgetExhausted { budget: usize },
}

/// The process-wide budget for input buffered by connections that are not admitted publishers
/// (unparsed bytes and incomplete messages). Each such reader charges what it holds; one that
/// would go over the budget is refused, so many connections each within their own limits still
/// cannot add up to more than this.
#[derive(Debug)]
pub struct InputBudget {
    used: AtomicUsize,
    max: usize,
}

impl InputBudget {
    pub fn new(max: usize) -> Arc<InputBudget> {
        Arc::new(InputBudget { used: AtomicUsize::new(0), max })
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn try_grow(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| u.checked_add(n).filter(|t| *t <= self.max))
            .is_ok()
    }

    fn shrink(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// What the reader remembers about one chunk stream (the header fields later chunks may omit).
#[derive(Debug, Default)]
struct ChunkStream {
    timestamp: u32,
    /// The timestamp field of the last header (absolute for format 0, a delta otherwise);
    /// a format-3 chunk starting a new message adds it again, as ffmpeg and librtmp do.
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Whether the last header used an extended timestamp: format-3 chunks then carry one too.
    extended: bool,
    /// The message being reassembled, if its first chunk has arrived but not its last.
    partial: Option<BytesMut>,
}

/// The chunk streams of one connection by id. At most `max_chunk_streams` (64) and in practice a
/// handful (control, command, audio, video), looked up once or twice per chunk: a linear scan
/// of a small vector beats hashing the id.
#[derive(Debug, Default)]
struct ChunkStreams(Vec<(u32, ChunkStream)>);

impl ChunkStreams {
    fn get(&self, csid: &u32) -> Option<&ChunkStream> {
        self.0.iter().find(|(id, _)| id == csid).map(|(_, s)| s)
    }

    fn get_mut(&mut self, csid: &u32) -> Option<&mut ChunkStream> {
        self.0.iter_mut().find(|(id, _)| id == csid).map(|(_, s)| s)
    }

    fn contains_key(&self, csid: &u32) -> bool {
        self.get(csid).is_some()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn get_or_default(&mut self, csid: u32) -> &mut ChunkStream {
        let at = match self.0.iter().position(|(id, _)| *id == csid) {
            Some(at) => at,
            None => {
                self.0.push((csid, ChunkStream::default()));
                self.0.len() - 1
            }
        };
        &mut self.0[at].1
    }
}

/// A parsed chunk header (not yet consumed from the buffer).
struct Header {
    fmt: u8,
    csid: u32,
    /// Bytes of basic + message header + extended timestamp.
    len: usize,
    timestamp_field: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    extended: Option<u32>,
}

/// Incremental chunk parser: [`push`](Self::push) bytes, then call
/// [`next_message`](Self::next_message) until it returns `Ok(None)`.
pub struct ChunkReader {
    limits: ReaderLimits,
    chunk_size: u32,
    buf: BytesMut,
    streams: ChunkStreams,
    /// Bytes held in incomplete messages over all chunk streams.
    partial_bytes: usize,
    /// Where the last message of at most [`INITIAL_REASSEMBLY_CAPACITY`] bytes was reassembled:
    /// the next one reuses the allocation once the bytes handed on from it are dropped (a
    /// publisher's frames are copied into their outbound chunks and dropped before the next
    /// read), instead of allocating one per multi-chunk message.
    spare: BytesMut,
    /// Whether the connection is an admitted publisher (the large message limit applies).
    admitted: bool,
    /// Bytes the input lacks for the chunk the parser stopped at (0 while not even a header is
    /// complete): a read makes room for them at once, so a large chunk arrives in one
    /// allocation instead of a growth step per small read.
    wanted: usize,
    /// The shared budget this reader charges while not admitted, and what it has charged.
    budget: Option<Arc<InputBudget>>,
    charged: usize,
}

impl ChunkReader {
    pub fn new(limits: ReaderLimits) -> Self {
        ChunkReader {
            limits,
            chunk_size: INITIAL_CHUNK_SIZE,
            // Allocated on first use, sized by what arrives (players send almost nothing).
            buf: BytesMut::new(),
            streams: ChunkStreams::default(),
            partial_bytes: 0,
            spare: BytesMut::new(),
            admitted: false,
            wanted: 0,
            budget: None,
            charged: 0,
        }
    }

    /// A reader that charges what it holds to `budget` until it is admitted as a publisher.
    pub fn with_budget(limits: ReaderLimits, budget: Arc<InputBudget>) -> Self {
        let mut reader = ChunkReader::new(limits);
        reader.budget = Some(budget);
        reader
    }

    /// The connection is an admitted publisher: messages up to `max_message_size` from now on,
    /// and what it buffers no longer counts towards the shared budget.
    pub fn admit_publisher(&mut self) {
        self.admitted = true;
        if let Some(budget) = self.budget.take() {
            budget.shrink(std::mem::take(&mut self.charged));
        }
    }

    /// The message size limit that applies now.
    fn max_message(&self) -> u32 {
        if self.admitted {
            self.limits.max_message_size
        } else {
            self.limits.max_message_size_unadmitted.min(self.limits.max_message_size)
        }
    }

    /// Brings the shared budget's charge in line with what this reader holds (unparsed bytes
    /// and incomplete messages). Call after [`push`](Self::push) and after parsing; an error
    /// means the budget is used up and the connection must be closed.
    pub fn charge(&mut self) -> Result<(), ChunkError> {
        let Some(budget) = &self.budget else { return Ok(()) };
        let held = (self.buf.len() + self.partial_bytes).saturating_sub(BUDGET_FREE_BYTES);
        if held > self.charged {
            if !budget.try_grow(held - self.charged) {
                return Err(ChunkError::InputBudgetExhausted { budget: budget.max });
            }
        } else {
            budget.shrink(self.charged - held);
        }
        self.charged = held;
        Ok(())
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The unparsed input, for a read that appends to it directly instead of reading into a
    /// buffer of its own and [`push`](Self::push)ing (one copy of every byte fewer). What is
    /// appended is then [`charge`](Self::charge)d like pushed bytes.
    pub fn input(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes the input still lacks for the chunk parsing stopped at (0: unknown yet).
    pub fn wanted(&self) -> usize {
        self.wanted
    }

    /// Bytes received but not yet parsed into a complete chunk.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The peer's current chunk size.
    #[cfg(test)]
    pub(crate) fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// The next complete message, `Ok(None)` if more bytes are needed. After an error the
    /// connection must be closed: the stream cannot be resynchronised.
    pub fn next_message(&mut self) -> Result<Option<Message>, ChunkError> {
        loop {
            match self.next_chunk()? {
                Step::NeedMore => return Ok(None),
                Step::Partial => continue,
                Step::Complete(msg) => {
                    self.apply_protocol_control(&msg)?;
                    return Ok(Some(msg));
                }
            }
        }
    }

    /// Chunk size and abort change how the following chunks parse, so the reader applies them
    /// itself before anything else can be parsed.
    fn apply_protocol_control(&mut self, msg: &Message) -> Result<(), ChunkError> {
        match msg.type_id {
            msg_type::SET_CHUNK_SIZE => {
                if msg.payload.len() < 4 {
                    return Err(ChunkError::MalformedSetChunkSize { len: msg.payload.len() });
                }
                // The top bit is reserved (must be zero); a value with it set is out of range.
                let size = u32::from_be_bytes([msg.payload[0], msg.payload[1], msg.payload[2], msg.payload[3]]);
                if size == 0 || size > self.limits.max_chunk_size {
                    return Err(ChunkError::BadChunkSize { size, max: self.limits.max_chunk_size });
                }
                self.chunk_size = size;
            }
            msg_type::ABORT if msg.payload.len() >= 4 => {
                let csid = u32::from_be_bytes([msg.payload[0], msg.payload[1], msg.payload[2], msg.payload[3]]);
                if let Some(partial) = self.streams.get_mut(&csid).and_then(|s| s.partial.take()) {
                    self.partial_bytes -= partial.len();
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Parses the header at the front of the buffer without consuming it.
    fn peek_header(&self) -> Result<Option<Header>, ChunkError> {
        let b = &self.buf[..];
        let Some(&first) = b.first() else { return Ok(None) };
        let fmt = first >> 6;
        let (csid, mut pos) = match first & 0x3f {
            0 => match b.get(1) {
                Some(&x) => (u32::from(x) + 64, 2),
                None => return Ok(None),
            },
            1 => match (b.get(1), b.get(2)) {
                (Some(&lo), Some(&hi)) => (u32::from(hi) * 256 + u32::from(lo) + 64, 3),
                _ => return Ok(None),
            },
            x => (u32::from(x), 1),
        };
        let header_len = [11usize, 7, 3, 0][usize::from(fmt)];
        if b.len() < pos + header_len {
            return Ok(None);
        }
        let prev = self.streams.get(&csid);
        if fmt != 0 && prev.is_none() {
            return Err(ChunkError::NoPreviousHeader { csid });
        }
        let u24 = |at: usize| u32::from_be_bytes([0, b[at], b[at + 1], b[at + 2]]);
        let mut h = Header {
            fmt,
            csid,
            len: 0,
            timestamp_field: prev.map_or(0, |p| p.delta),
            length: prev.map_or(0, |p| p.length),
            type_id: prev.map_or(0, |p| p.type_id),
            stream_id: prev.map_or(0, |p| p.stream_id),
            extended: None,
        };
        if fmt <= 2 {
            h.timestamp_field = u24(pos);
        }
        if fmt <= 1 {
            h.length = u24(pos + 3);
            h.type_id = b[pos + 6];
        }
        if fmt == 0 {
            h.stream_id = u32::from_le_bytes([b[pos + 7], b[pos + 8], b[pos + 9], b[pos + 10]]);
        }
        pos += header_len;
        let has_extended =
            if fmt == 3 { prev.is_some_and(|p| p.extended) } else { h.timestamp_field == EXTENDED_TIMESTAMP_MARK };
        if has_extended {
            if b.len() < pos + 4 {
                return Ok(None);
            }
            h.extended = Some(u32::from_be_bytes([b[pos], b[pos + 1], b[pos + 2], b[pos + 3]]));
            pos += 4;
        }
        h.len = pos;
        Ok(Some(h))
    }

    fn next_chunk(&mut self) -> Result<Step, ChunkError> {
        let Some(h) = self.peek_header()? else {
            self.wanted = 0;
            return Ok(Step::NeedMore);
        };
        let in_progress = self.streams.get(&h.csid).and_then(|s| s.partial.as_ref()).map(|p| p.len());

        if let Some(received) = in_progress {
            if h.fmt != 3 {
                return Err(ChunkError::InterruptedMessage { csid: h.csid });
            }
            // Continuation chunk of the message being reassembled on this chunk stream.
            let length = self.streams.get(&h.csid).map_or(0, |s| s.length) as usize;
            let chunk_len = (length.saturating_sub(received)).min(self.chunk_size as usize);
            if self.buf.len() < h.len + chunk_len {
                self.wanted = h.len + chunk_len - self.buf.len();
                return Ok(Step::NeedMore);
            }
            // Incomplete messages interleaved on several chunk streams count together.
            let max_message = self.max_message();
            if received + chunk_len < length && self.partial_bytes + chunk_len > max_message as usize {
                return Err(ChunkError::TooMuchPartialData { max: max_message });
            }
            self.buf.advance(h.len);
            let data = self.buf.split_to(chunk_len);
            let Some(stream) = self.streams.get_mut(&h.csid) else { return Ok(Step::Partial) };
            let Some(partial) = stream.partial.as_mut() else { return Ok(Step::Partial) };
            append(partial, &data, length);
            self.partial_bytes += chunk_len;
            if partial.len() < length {
                return Ok(Step::Partial);
            }
            let payload = stream.partial.take().map(|p| keep_spare(&mut self.spare, p)).unwrap_or_default();
            self.partial_bytes -= payload.len();
            return Ok(Step::Complete(Message {
                csid: h.csid,
                type_id: stream.type_id,
                stream_id: stream.stream_id,
                timestamp: stream.timestamp,
                payload,
            }));
        }

        // First chunk of a new message.
        if matches!(h.type_id, msg_type::AMF0_COMMAND | msg_type::AMF3_COMMAND)
            && h.length > self.limits.max_command_size
        {
            return Err(ChunkError::CommandTooLarge {
                len: h.length,
                max: self.limits.max_command_size,
                stream_id: h.stream_id,
            });
        }
        let max_message = self.max_message();
        if h.length > max_message {
            return Err(ChunkError::MessageTooLarge { len: h.length, max: max_message });
        }
        if !self.streams.contains_key(&h.csid) && self.streams.len() >= self.limits.max_chunk_streams {
            return Err(ChunkError::TooManyChunkStreams { max: self.limits.max_chunk_streams });
        }
        let length = h.length as usize;
        let chunk_len = length.min(self.chunk_size as usize);
        if self.buf.len() < h.len + chunk_len {
            self.wanted = h.len + chunk_len - self.buf.len();
            return Ok(Step::NeedMore);
        }
        if chunk_len < length && self.partial_bytes + chunk_len > max_message as usize {
            return Err(ChunkError::TooMuchPartialData { max: max_message });
        }
        self.buf.advance(h.len);
        let data = self.buf.split_to(chunk_len);

        let stream = self.streams.get_or_default(h.csid);
        let delta = h.extended.unwrap_or(h.timestamp_field);
        stream.timestamp = if h.fmt == 0 { delta } else { stream.timestamp.wrapping_add(delta) };
        stream.delta = delta;
        stream.extended = h.extended.is_some();
        stream.length = h.length;
        stream.type_id = h.type_id;
        stream.stream_id = h.stream_id;

        if chunk_len == length {
            // The whole message in one chunk. Media is handed on in an allocation of its own:
            // the fan-out keeps it (the GOP cache, for seconds), and a slice would keep the
            // whole input buffer with it. Anything else is parsed and dropped at once, so it is
            // handed on without a copy.
            let payload = if is_media(h.type_id) { Bytes::copy_from_slice(&data) } else { data.freeze() };
            return Ok(Step::Complete(Message {
                csid: h.csid,
                type_id: stream.type_id,
                stream_id: stream.stream_id,
                timestamp: stream.timestamp,
                payload,
            }));
        }
        let mut partial = reassembly_buffer(&mut self.spare, length);
        partial.extend_from_slice(&data);
        stream.partial = Some(partial);
        self.partial_bytes += chunk_len;
        Ok(Step::Partial)
    }
}

impl Drop for ChunkReader {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.shrink(self.charged);
        }
    }
}

/// A buffer for a message of `length` bytes: the spare if nothing else holds it any more and it
/// is large enough, else a new one of exactly that size (at most
/// [`INITIAL_REASSEMBLY_CAPACITY`] before the bytes arrive). The fan-out keeps a media
/// message's buffer as the frame's payload, so slack here would be held by the GOP cache.
fn reassembly_buffer(spare: &mut BytesMut, length: usize) -> BytesMut {
    let capacity = length.min(INITIAL_REASSEMBLY_CAPACITY);
    let mut buf = std::mem::take(spare);
    if buf.try_reclaim(capacity) {
        return buf;
    }
    BytesMut::with_capacity(capacity)
}

/// Appends a chunk to a message being reassembled. A buffer that is full grows to twice its
/// size (as `BytesMut` would, so nothing is allocated far ahead of the bytes received) but
/// never beyond the message's `length`: the last step ends exactly at the message's size.
fn append(partial: &mut BytesMut, data: &[u8], length: usize) {
    let need = partial.len() + data.len();
    if partial.capacity() < need {
        let want = need.max(partial.capacity() * 2).min(length.max(need));
        let mut bigger = BytesMut::with_capacity(want);
        bigger.extend_from_slice(partial);
        *partial = bigger;
    }
    partial.extend_from_slice(data);
}

/// Audio, video and script data: what the fan-out keeps.
fn is_media(type_id: u8) -> bool {
    matches!(type_id, msg_type::AUDIO | msg_type::VIDEO | msg_type::AMF0_DATA)
}

/// The reassembled message's bytes; what is left of its buffer (nothing, but the allocation
/// with it) becomes the reader's spare if the message was no larger than [`SPARE_MAX`], so the
/// reader keeps at most one small allocation between messages.
fn keep_spare(spare: &mut BytesMut, mut partial: BytesMut) -> Bytes {
    let payload = partial.split().freeze();
    if payload.len() <= SPARE_MAX {
        *spare = partial;
    }
    payload
}

enum Step {
    NeedMore,
    Partial,
    Complete(Message),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::chunk_writer::serialize_message;

    fn set_chunk_size(size: u32) -> Bytes {
        serialize_message(2, msg_type::SET_CHUNK_SIZE, 0, 0, &size.to_be_bytes(), 128)
    }

    fn read_all(r: &mut ChunkReader) -> Result<Vec<Message>, ChunkError> {
        let mut out = Vec::new();
        while let Some(m) = r.next_message()? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn reassembles_multi_chunk_messages_split_anywhere() {
        let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let bytes = serialize_message(6, msg_type::VIDEO, 1, 1234, &payload, 128);
        for split in [1, 7, 12, 128, 140, 999, bytes.len() - 1] {
            let mut r = ChunkReader::new(ReaderLimits::default());
            r.push(&bytes[..split]);
            assert!(read_all(&mut r).unwrap().is_empty(), "split {split}");
            r.push(&bytes[split..]);
            let msgs = read_all(&mut r).unwrap();
            assert_eq!(msgs.len(), 1);
            assert_eq!(msgs[0].payload, payload);
            assert_eq!((msgs[0].timestamp, msgs[0].stream_id, msgs[0].type_id), (1234, 1, msg_type::VIDEO));
        }
    }

    /// The buffer a message was reassembled in is reused for the next one only once nothing
    /// holds the first message's bytes: a payload still held is never written over.
    #[test]
    fn reassembly_reuses_the_last_buffer_only_once_its_bytes_are_dropped() {
        let first: Vec<u8> = vec![1; 1000];
        let second: Vec<u8> = vec![2; 900];
        let mut r = ChunkReader::new(ReaderLimits::default());
        r.push(&serialize_message(6, msg_type::VIDEO, 1, 0, &first, 128));
        let held = read_all(&mut r).unwrap().remove(0).payload;
        r.push(&serialize_message(6, msg_type::VIDEO, 1, 40, &second, 128));
        let next = read_all(&mut r).unwrap().remove(0).payload;
        assert_eq!((&held[..], &next[..]), (&first[..], &second[..]));
        assert_ne!(held.as_ptr(), next.as_ptr());

        let at = next.as_ptr();
        drop(next);
        let smaller = vec![4u8; 800];
        r.push(&serialize_message(6, msg_type::VIDEO, 1, 80, &smaller, 128));
        let reused = read_all(&mut r).unwrap().remove(0).payload;
        assert_eq!(reused, smaller);
        assert_eq!(reused.as_ptr(), at, "the dropped message's buffer is reused");
        assert_eq!(held, first);

        // A message larger than SPARE_MAX (a keyframe) leaves no buffer behind.
        drop(reused);
        r.admit_publisher();
        let large = vec![3u8; SPARE_MAX + 1];
        r.push(&serialize_message(6, msg_type::VIDEO, 1, 120, &large, 128));
        assert_eq!(read_all(&mut r).unwrap().remove(0).payload, large);
        assert_eq!(r.spare.capacity(), 0);
    }

    /// Media payloads are allocations of their own and about their size, since the fan-out
    /// keeps them for as long as their GOP lasts: a one-chunk message is copied out of the input
    /// buffer, and a reassembled one (even beyond the initial reassembly capacity) ends in a
    /// buffer of exactly its size. A command stays a slice of the input.
    #[test]
    fn media_payloads_hold_no_more_than_their_bytes() {
        let mut r = ChunkReader::new(ReaderLimits::default());
        r.admit_publisher();
        let small = vec![5u8; 100];
        let large: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = serialize_message(4, msg_type::AUDIO, 1, 0, &small, 128).to_vec();
        wire.extend_from_slice(&set_chunk_size(4096));
        wire.extend_from_slice(&serialize_message(6, msg_type::VIDEO, 1, 0, &large, 4096));
        wire.extend_from_slice(&serialize_message(3, msg_type::AMF0_COMMAND, 0, 0, &[2, 0, 1, b'x'], 4096));
        r.push(&wire);
        let mut msgs = read_all(&mut r).unwrap().into_iter().filter(|m| m.type_id != msg_type::SET_CHUNK_SIZE);
        for (want, what) in [(&small[..], "one-chunk audio"), (&large[..], "reassembled video")] {
            let m = msgs.next().unwrap();
            assert!(m.payload == want, "{what}: not the bytes sent");
            let own = m.payload.try_into_mut().unwrap_or_else(|_| panic!("{what} shares its allocation"));
            assert_eq!(own.capacity(), want.len(), "{what}");
        }
        let command = msgs.next().unwrap();
        assert!(command.payload.try_into_mut().is_err(), "the command is a slice of the input buffer");
    }

    /// A read can make room for the rest of a large chunk at once: the reader says how much of
    /// it is missing, and nothing while not even a header is complete.
    #[test]
    fn the_reader_says_what_the_chunk_it_waits_for_lacks() {
        let body = vec![7u8; 60_000];
        let mut wire = set_chunk_size(65_536).to_vec();
        wire.extend_from_slice(&serialize_message(6, msg_type::VIDEO, 1, 0, &body, 65_536));
        let mut r = ChunkReader::new(ReaderLimits::default());
        r.push(&wire[..wire.len() - 50_000]);
        assert!(read_all(&mut r).unwrap().iter().all(|m| m.type_id != msg_type::VIDEO));
        assert_eq!(r.wanted(), 50_000);
        r.push(&wire[wire.len() - 50_000..]);
        assert_eq!(read_all(&mut r).unwrap().remove(0).payload, body);
        r.push(&[0x06]);
        assert!(read_all(&mut r).unwrap().is_empty());
        assert_eq!(r.wanted(), 0, "a header byte alone says nothing about the chunk");
    }

    #[test]
    fn interleaved_chunk_streams_reassemble_separately() {
        let a: Vec<u8> = vec![0xaa; 300];
        let b: Vec<u8> = vec![0xbb; 200];
        let ca = serialize_message(4, msg_type::AUDIO, 1, 10, &a, 128);
        let cb = serialize_message(5, msg_type::VIDEO, 1, 20, &b, 128);
        // chunk boundaries: a = 12+128 | 1+128 | 1+44 ; b = 12+128 | 1+72
        let mut wire = Vec::new();
        wire.extend_from_slice(&ca[..140]);
        wire.extend_from_slice(&cb[..140]);
        wire.extend_from_slice(&ca[140..]);
        wire.extend_from_slice(&cb[140..]);
        let mut r = ChunkReader::new(ReaderLimits::default());
        r.push(&wire);
        let msgs = read_all(&mut r).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].payload, a);
        assert_eq!(msgs[1].payload, b);
    }

    #[test]
    fn applies_chunk_size_within_limits_and_rejects_zero_and_huge() {
        let mut r = ChunkReader::new(ReaderLimits::default());
        r.push(&set_chunk_size(4096));
        read_all(&mut r).unwrap();
        assert_eq!(r.chunk_size(), 4096);

        for bad in [0u32, 65_537, 1 << 31, u32::MAX] {
            let mut r = ChunkReader::new(ReaderLimits::default());
            r.push(&set_chunk_size(bad));
            assert!(matches!(read_all(&mut r), Err(ChunkError::BadChunkSize { .. })), "{bad}");
        }
    }

    #[test]
    fn rejects_oversized_message_from_its_header() {
        let limits = ReaderLimits { max_message_size: 1000, ..Default::default() };
        let mut r = ChunkReader::new(limits);
        // Only the 12-byte header of a 2000-byte message: rejected before any payload arrives.
        let bytes = serialize_message(6, msg_type::VIDEO, 1, 0, &[0u8; 2000], 128);
        r.push(&bytes[..12]);
        assert_eq!(read_all(&mut r), Err(ChunkError::MessageTooLarge { len: 2000, max: 1000 }));
    }

    #[test]
    fn rejects_oversized_command_from_its_header() {
        let mut r = ChunkReader::new(ReaderLimits::default());
        r.push(&set_chunk_size(65_536));
        read_all(&mut r).unwrap();
        // The 12-byte header of an 8 MiB command (the pre-auth AMF bomb): refused at once.
        let bytes = serialize_message(3, msg_type::AMF0_COMMAND, 0, 0, &vec![5u8; 8 << 20], 65_536);
        r.push(&bytes[..12]);
        assert_eq!(read_all(&mut r), Err(ChunkError::CommandTooLarge { len: 8 << 20, max: 4096, stream_id: 0 }));
        // A command of the limit's size passes; media of that size is no command.
        let mut r = ChunkReader::new(ReaderLimits::default());
        r.push(&serialize_message(3, msg_type::AMF0_COMMAND, 0, 0, &[5u8; 4096], 128));
        r.push(&serialize_message(6, msg_type::VIDEO, 1, 0, &[5u8; 8192], 128));
        assert_eq!(read_all(&mut r).unwrap().len(), 2);
    }

    #[test]
    fn rejects_continuation_without_header_and_interrupted_messages() {
        let mut r = ChunkReader::new(ReaderLimits::default());
        r.push(&[0xC0 | 9, 1, 2, 3]);
        assert_eq!(read_all(&mut r), Err(ChunkError::NoPreviousHeader { csid: 9 }));

        // A format-1 header on a chunk stream whose message is incomplete (the case that makes
        // rml_rtmp's deserializer underflow).
        let big = serialize_message(6, msg_type::VIDEO, 1, 0, &[1u8; 300], 128);
        let mut r = ChunkReader::new(ReaderLimits::default());
        r.push(&big[..140]);
        r.push(&[0x40 | 6, 0, 0, 0, 0, 0, 10, msg_type::VIDEO]);
        r.push(&[0u8; 10]);
        assert_eq!(read_all(&mut r), Err(ChunkError::InterruptedMessage { csid: 6 }));
    }

    #[test]
    fn bounds_partial_data_over_all_chunk_streams() {
        let limits = ReaderLimits { max_message_size: 1000, ..Default::default() };
        let mut r = ChunkReader::new(limits);
        let mut result = Ok(vec![]);
        for csid in 3..20 {
            let m = serialize_message(csid, msg_type::VIDEO, 1, 0, &[0u8; 900], 128);
            r.push(&m[..140]);
            result = read_all(&mut r);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(ChunkError::TooMuchPartialData { max: 1000 }));
    }

    #[test]
    fn the_large_message_limit_is_for_admitted_publishers_only() {
        let limits =
            ReaderLimits { max_message_size: 100_000, max_message_size_unadmitted: 1000, ..Default::default() };
        let bytes = serialize_message(6, msg_type::VIDEO, 1, 0, &[0u8; 2000], 128);
        let mut r = ChunkReader::new(limits);
        r.push(&bytes[..12]);
        assert_eq!(read_all(&mut r), Err(ChunkError::MessageTooLarge { len: 2000, max: 1000 }));
        let mut r = ChunkReader::new(limits);
        r.admit_publisher();
        r.push(&bytes);
        assert_eq!(read_all(&mut r).unwrap().len(), 1);
    }

    #[test]
    fn readers_share_one_input_budget_until_admitted() {
        let budget = InputBudget::new(1000);
        let half = serialize_message(6, msg_type::VIDEO, 1, 0, &[0u8; 900], 128);
        // Each reader's first BUDGET_FREE_BYTES are not charged.
        let pad = serialize_message(5, msg_type::AUDIO, 1, 0, &vec![0u8; BUDGET_FREE_BYTES], 128);
        let mut a = ChunkReader::with_budget(ReaderLimits::default(), budget.clone());
        let mut b = ChunkReader::with_budget(ReaderLimits::default(), budget.clone());
        a.push(&pad);
        b.push(&pad);
        a.charge().unwrap();
        b.charge().unwrap();
        assert!(budget.used() > 0 && budget.used() < 200, "{}", budget.used());
        // Parsing it frees it.
        assert_eq!(read_all(&mut a).unwrap().len(), 1);
        assert_eq!(read_all(&mut b).unwrap().len(), 1);
        a.charge().unwrap();
        b.charge().unwrap();
        assert_eq!(budget.used(), 0);
        a.push(&pad[..BUDGET_FREE_BYTES]);
        a.push(&half[..600]);
        a.charge().unwrap();
        assert_eq!(budget.used(), 600);
        b.push(&pad[..BUDGET_FREE_BYTES]);
        b.push(&half[..600]);
        assert_eq!(b.charge(), Err(ChunkError::InputBudgetExhausted { budget: 1000 }));
        drop(b);
        assert_eq!(budget.used(), 600);
        // Admission takes the reader off the budget.
        a.admit_publisher();
        assert_eq!(budget.used(), 0);
        drop(a);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn limits_chunk_stream_count() {
        let limits = ReaderLimits { max_chunk_streams: 4, ..Default::default() };
        let mut r = ChunkReader::new(limits);
        for csid in 3..7 {
            r.push(&serialize_message(csid, msg_type::AUDIO, 1, 0, &[1], 128));
        }
        assert_eq!(read_all(&mut r).unwrap().len(), 4);
        r.push(&serialize_message(50, msg_type::AUDIO, 1, 0, &[1], 128));
        assert_eq!(read_all(&mut r), Err(ChunkError::TooManyChunkStreams { max: 4 }));
    }

    #[test]
    fn compressed_headers_accumulate_timestamps() {
        // fmt0 ts=100 len 2, then fmt2 delta 40 (same length/type), then fmt3 (delta again).
        let mut wire = serialize_message(4, msg_type::AUDIO, 1, 100, &[1, 2], 128).to_vec();
        wire.extend_from_slice(&[0x80 | 4, 0, 0, 40, 3, 4]);
        wire.extend_from_slice(&[0xC0 | 4, 5, 6]);
        let mut r = ChunkReader::new(ReaderLimits::default());
        r.push(&wire);
        let ts: Vec<u32> = read_all(&mut r).unwrap().iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, vec![100, 140, 180]);
    }

    #[test]
    fn extended_timestamps_round_trip() {
        let payload = vec![7u8; 500];
        let bytes = serialize_message(6, msg_type::VIDEO, 1, 0x0100_0000, &payload, 128);
        let mut r = ChunkReader::new(ReaderLimits::default());
        r.push(&bytes);
        let msgs = read_all(&mut r).unwrap();
        assert_eq!(msgs[0].timestamp, 0x0100_0000);
        assert_eq!(msgs[0].payload, payload);
    }
}
