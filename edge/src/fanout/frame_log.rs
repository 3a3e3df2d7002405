//! A stream's recent frames, numbered in publish order, for players under the write window
//! (`--write-window`).
//!
//! Such a player takes its media from here when its window ends instead of having every frame
//! pushed into its own queue: the publisher appends a frame once for all of them, and each
//! player takes the frames past its cursor in one go, under one lock. Pushing a frame into 2000
//! players' queues one lock at a time was 9 % of the edge's CPU at 2000 players.
//!
//! The log keeps frames for a bounded time, several windows long, so a player the flusher
//! visits late still finds its frames; a player that falls further behind than that is told
//! how many it missed and treats them as dropped (it resumes at a keyframe, like any player
//! too slow to keep up).

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

use crate::{media::Frame, sync::lock};

/// How long frames stay at least, whatever the window (a player's visit may be late by a busy
/// process's scheduling delay, not by a window's worth).
pub(crate) const MIN_RETAIN: Duration = Duration::from_secs(1);
/// Frames stay for this many windows at least.
const RETAIN_WINDOWS: u32 = 4;

#[derive(Debug, Default)]
pub(crate) struct FrameLog {
    inner: Mutex<Inner>,
    /// Frames players reading from the log dropped (too slow, or missed): part of the stream's
    /// dropped messages.
    pub(crate) dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    /// Oldest first, with when each was appended.
    frames: VecDeque<(Instant, Arc<Frame>)>,
    /// Number of the next frame appended; the front of `frames` is `next - frames.len()`.
    next: u64,
    retain: Duration,
}

/// What [`FrameLog::read_from`] finds past a cursor, in order.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Entry<'a> {
    /// This many frames past the cursor are no longer held (reported first, if any).
    Missed(u64),
    Frame(&'a Arc<Frame>),
}

impl FrameLog {
    pub(crate) fn new() -> Arc<FrameLog> {
        Arc::new(FrameLog {
            inner: Mutex::new(Inner { retain: MIN_RETAIN, ..Inner::default() }),
            ..FrameLog::default()
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Appends and reads leave the deque consistent at every step.
        lock(&self.inner)
    }

    /// Keeps frames long enough for readers with this write window.
    pub(crate) fn retain_for(&self, window: Duration) {
        let mut log = self.lock();
        log.retain = log.retain.max(window.saturating_mul(RETAIN_WINDOWS));
    }

    /// Appends a frame; returns its number. Frames older than the retention go.
    pub(crate) fn append(&self, frame: &Arc<Frame>, now: Instant) -> u64 {
        let mut log = self.lock();
        let retain = log.retain;
        while log.frames.front().is_some_and(|(at, _)| now.saturating_duration_since(*at) > retain) {
            log.frames.pop_front();
        }
        log.frames.push_back((now, frame.clone()));
        log.next += 1;
        log.next - 1
    }

    /// Number of the next frame to be appended.
    #[cfg(test)]
    pub(crate) fn head(&self) -> u64 {
        self.lock().next
    }

    /// Drops every frame (nobody reads the log any more); numbering continues.
    pub(crate) fn clear(&self) {
        self.lock().frames.clear();
    }

    /// Calls `each` with every frame from number `cursor` on, oldest first, under the log's lock
    /// (`each` must not take the stream's lock); returns the cursor after them.
    pub(crate) fn read_from(&self, cursor: u64, mut each: impl FnMut(Entry<'_>)) -> u64 {
        let log = self.lock();
        let first = log.next - log.frames.len() as u64;
        if cursor < first {
            each(Entry::Missed(first - cursor));
        }
        let skip = cursor.saturating_sub(first);
        for (_, frame) in log.frames.iter().skip(usize::try_from(skip).unwrap_or(usize::MAX)) {
            each(Entry::Frame(frame));
        }
        log.next.max(cursor)
    }

    pub(crate) fn add_dropped(&self, n: u64) {
        if n > 0 {
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().frames.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::FrameKind;
    use bytes::Bytes;

    fn frame(ts: u32) -> Arc<Frame> {
        Arc::new(Frame::new(FrameKind::Video, ts, false, false, Bytes::from_static(&[0x27, 1, 0, 0, 0])))
    }

    /// The timestamps past `cursor`, how many were missed, and the next cursor.
    fn read(log: &FrameLog, cursor: u64) -> (Vec<u32>, u64, u64) {
        let (mut ts, mut missed) = (Vec::new(), 0);
        let next = log.read_from(cursor, |e| match e {
            Entry::Missed(n) => {
                assert!(ts.is_empty(), "misses come first");
                missed += n;
            }
            Entry::Frame(f) => ts.push(f.timestamp),
        });
        (ts, missed, next)
    }

    #[test]
    fn a_reader_gets_every_frame_past_its_cursor_once_in_order() {
        let log = FrameLog::new();
        let t = Instant::now();
        assert_eq!(log.append(&frame(0), t), 0);
        assert_eq!(log.append(&frame(33), t), 1);
        assert_eq!(read(&log, 1), (vec![33], 0, 2));
        log.append(&frame(66), t);
        assert_eq!(read(&log, 2), (vec![66], 0, 3));
        assert_eq!(read(&log, 3), (vec![], 0, 3));
        assert_eq!(log.head(), 3);
    }

    #[test]
    fn old_frames_go_and_a_reader_left_behind_is_told_how_many_it_missed() {
        let log = FrameLog::new();
        log.retain_for(Duration::from_millis(100)); // 4 windows is less than the minimum
        let t = Instant::now();
        for i in 0..10 {
            log.append(&frame(i), t + Duration::from_millis(100) * i);
        }
        // At 900 ms everything from 0 ms on is within MIN_RETAIN (1 s).
        assert_eq!(log.len(), 10);
        log.append(&frame(10), t + Duration::from_millis(1150));
        // 0 ms and 100 ms are more than 1 s old at 1150 ms; 200 ms..1150 ms stay.
        assert_eq!(log.len(), 9);
        assert_eq!(read(&log, 0), ((2..=10).collect(), 2, 11));

        log.retain_for(Duration::from_secs(2)); // 8 s now
        log.append(&frame(11), t + Duration::from_secs(9));
        assert_eq!(log.len(), 2, "only 1.15 s and 9 s are within 8 s of 9 s");
        log.clear();
        assert_eq!(read(&log, 11), (vec![], 1, 12));
    }
}
