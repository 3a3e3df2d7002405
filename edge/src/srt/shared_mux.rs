//! One MPEG-TS mux per stream, shared by all its SRT players: each frame is muxed once, by the
//! first player that reaches it, and every player sends the same transport packets (one
//! `Bytes`, sliced into SRT messages without a copy). Continuity counters and PCR are therefore
//! the stream's, not the player's: a player that joins (or skips frames as a slow player) sees
//! a counter jump at a PES start, which demuxers take as the start of their stream; PAT and PMT
//! come before every keyframe, so a joining player's fast start (the cached GOP from its
//! keyframe) begins with them.
//!
//! Players still read the stream's RTMP chunks back into messages (each has its own queue,
//! slow-player rules and viewer slot, as every player of the fan-out does); a message is found
//! in the recent-frames memo by its type, timestamp, length and a sample of its bytes, so all
//! players of a stream resolve it to the same TS. Frames are muxed in the order the first
//! player to reach each one reads them, which is the stream's order.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, Weak},
};

use bytes::{Bytes, BytesMut};
use streamfleet_registry::StreamId;

use crate::{
    media::{Media, MediaKind},
    mpegts::{demux::PACKET, mux::Muxer},
    sync::lock,
};

/// Most TS bytes a stream's memo keeps: a GOP of a high-bitrate stream (4 s at 16 Mbit/s), so a
/// joining player's fast start is served from it rather than muxed again.
const MEMO_BYTES: usize = 8 * 1024 * 1024;
/// Most frames the memo keeps (audio frames are small and many).
const MEMO_FRAMES: usize = 4096;

/// The shared muxes of the streams that have SRT players on this edge.
#[derive(Default)]
pub(crate) struct SharedMuxes {
    map: Mutex<HashMap<StreamId, Weak<SharedMux>>>,
}

impl SharedMuxes {
    /// The stream's shared mux, made by its first SRT player; it goes when the last one leaves.
    pub(crate) fn get(&self, id: &StreamId) -> Arc<SharedMux> {
        let mut map = lock(&self.map);
        if let Some(mux) = map.get(id).and_then(Weak::upgrade) {
            return mux;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let mux = Arc::new(SharedMux::default());
        map.insert(id.clone(), Arc::downgrade(&mux));
        mux
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.map).values().filter(|w| w.strong_count() > 0).count()
    }
}

/// What identifies a message of one stream among its recent ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FrameKey {
    kind: u8,
    timestamp: u32,
    len: usize,
    sample: u64,
}

impl FrameKey {
    fn of(media: &Media) -> FrameKey {
        let p = &media.payload[..];
        // FNV-1a over up to 64 bytes spread over the payload (and its first and last ones).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        if !p.is_empty() {
            let step = (p.len() / 64).max(1);
            for b in p.iter().step_by(step).chain(p.last()) {
                h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        let kind = match media.kind {
            MediaKind::Video => 0,
            MediaKind::Audio => 1,
            MediaKind::Metadata => 2,
            MediaKind::Data => 3,
        };
        FrameKey { kind, timestamp: media.timestamp, len: p.len(), sample: h }
    }
}

struct State {
    muxer: Muxer,
    memo: VecDeque<(FrameKey, Bytes)>,
    memo_bytes: usize,
}

impl Default for State {
    fn default() -> Self {
        State { muxer: Muxer::new(), memo: VecDeque::new(), memo_bytes: 0 }
    }
}

/// A stream's muxer and the TS of its recent frames.
#[derive(Default)]
pub(crate) struct SharedMux {
    state: Mutex<State>,
}

impl SharedMux {
    /// The transport packets of `media` (empty for configuration messages), muxed now if no
    /// player of the stream has reached it yet.
    pub(crate) fn ts_of(&self, media: &Media) -> Bytes {
        let key = FrameKey::of(media);
        let mut st = lock(&self.state);
        // Players are mostly at the newest frames: search from the back.
        if let Some((_, ts)) = st.memo.iter().rev().find(|(k, _)| *k == key) {
            return ts.clone();
        }
        let mut out = BytesMut::new();
        st.muxer.push(media, &mut out);
        let ts = out.freeze();
        st.memo_bytes += ts.len();
        st.memo.push_back((key, ts.clone()));
        while st.memo_bytes > MEMO_BYTES || st.memo.len() > MEMO_FRAMES {
            match st.memo.pop_front() {
                Some((_, old)) => st.memo_bytes -= old.len(),
                None => break,
            }
        }
        ts
    }
}

/// A player's transport packets waiting to be sent, as the shared frames they came in (no
/// copy), handed out as SRT messages of whole packets.
#[derive(Default)]
pub(crate) struct TsQueue {
    parts: VecDeque<Bytes>,
    len: usize,
}

impl TsQueue {
    pub(crate) fn push(&mut self, ts: Bytes) {
        if !ts.is_empty() {
            self.len += ts.len();
            self.parts.push_back(ts);
        }
    }

    /// The next message of at most `max_packets` whole packets: a slice of one frame's TS when
    /// it lies within one (the usual case), else copied together from the frames it spans.
    pub(crate) fn next_message(&mut self, max_packets: usize) -> Option<Bytes> {
        let n = (self.len / PACKET).min(max_packets) * PACKET;
        if n == 0 {
            return None;
        }
        self.len -= n;
        let front = self.parts.front_mut()?;
        if front.len() >= n {
            let m = front.split_to(n);
            if front.is_empty() {
                self.parts.pop_front();
            }
            return Some(m);
        }
        let mut m = BytesMut::with_capacity(n);
        while m.len() < n {
            let Some(front) = self.parts.front_mut() else { break };
            let take = (n - m.len()).min(front.len());
            m.extend_from_slice(&front.split_to(take));
            if front.is_empty() {
                self.parts.pop_front();
            }
        }
        Some(m.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(ts: u32, payload: &[u8]) -> Media {
        Media { kind: MediaKind::Video, timestamp: ts, payload: Bytes::copy_from_slice(payload) }
    }

    #[test]
    fn each_frame_is_muxed_once_and_every_player_gets_the_same_packets() {
        let muxes = SharedMuxes::default();
        let id = StreamId::new("default", "demo");
        let (a, b) = (muxes.get(&id), muxes.get(&id));
        assert!(Arc::ptr_eq(&a, &b), "one mux per stream");
        // An AVC sequence header (SPS/PPS), then a keyframe and a frame.
        let config =
            [0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1, 0, 4, 0x67, 0x42, 0xC0, 0x1E, 1, 0, 2, 0x68, 0xCE];
        let key = [0x17, 1, 0, 0, 0, 0, 0, 0, 3, 0x65, 0x88, 0x84];
        let inter = [0x27, 1, 0, 0, 0, 0, 0, 0, 3, 0x41, 0x9A, 0x02];
        assert!(a.ts_of(&video(0, &config)).is_empty(), "configuration only updates the mux");
        let k1 = a.ts_of(&video(0, &key));
        let i1 = a.ts_of(&video(33, &inter));
        assert_eq!(k1.len() % PACKET, 0);
        assert!(k1.len() >= 3 * PACKET, "PAT, PMT and the keyframe");
        // The second player (a joiner's fast start included) gets the very same bytes.
        assert_eq!(b.ts_of(&video(0, &config)), Bytes::new());
        let k2 = b.ts_of(&video(0, &key));
        assert_eq!(k2.as_ptr(), k1.as_ptr(), "shared, not muxed again");
        assert_eq!(b.ts_of(&video(33, &inter)).as_ptr(), i1.as_ptr());
        // A different frame with the same timestamp and length is not mistaken for it.
        let other = [0x27, 1, 0, 0, 0, 0, 0, 0, 3, 0x41, 0x9A, 0x03];
        assert_ne!(b.ts_of(&video(33, &other)).as_ptr(), i1.as_ptr());
        drop((a, b));
        assert_eq!(muxes.len(), 0, "gone with the last player");
    }

    #[test]
    fn messages_are_whole_packets_sliced_from_frames_or_joined_across_them() {
        let mut q = TsQueue::default();
        let frame = |n: usize, byte: u8| Bytes::from(vec![byte; n * PACKET]);
        let f1 = frame(9, 1);
        q.push(f1.clone());
        q.push(frame(3, 2));
        let m1 = q.next_message(7).unwrap();
        assert_eq!((m1.len(), m1.as_ptr()), (7 * PACKET, f1.as_ptr()), "a slice of the frame");
        let m2 = q.next_message(7).unwrap();
        assert_eq!(m2.len(), 5 * PACKET, "2 packets of the first frame, 3 of the second");
        assert!(m2[..2 * PACKET].iter().all(|b| *b == 1) && m2[2 * PACKET..].iter().all(|b| *b == 2));
        assert_eq!(q.next_message(7), None);
    }
}
