//! Where bytes fan out. Each media message is serialized into RTMP chunks once
//! ([`Frame::new`]) and shared by every player as reference-counted [`Bytes`]; each connection
//! has one [`Outbox`] (a bounded queue) drained by one writer task ([`run_writer`]) that sends
//! everything queued in a single vectored write.
//!
//! When the writer wakes: at once for everything but audio (low latency by default, and under
//! load a writer wakes with several messages queued and sends them in one write). An audio
//! message of a stream that also carries video is queued without waking the writer, at most
//! [`MAX_HELD_AUDIO`] in a row: it goes out with the next video frame, a frame later at most
//! (33 ms at 30 fps). Audio and video interleave, so this halves the writes per player (one
//! per video frame instead of one per message) and with them the kernel's per-write cost, which
//! is most of the CPU a player costs. Players buffer far more than a frame of audio, so nothing
//! audible changes. With a write window ([`OutboxLimits::write_batch`], `--write-batch`) the
//! writer pauses for the window after each write and then sends everything that arrived
//! meanwhile in one write; offers during the pause wake nobody, so a player costs one wake-up
//! and one write per window (control messages end the pause; a new player's first picture
//! does not wait).
//!
//! Slow players: the queue is bounded in bytes (what is queued plus what is being written).
//! On overflow the player drops media until the next keyframe (sequence headers, metadata and
//! status messages are kept); a player that is still behind after the slow-player timeout is
//! disconnected. Publishers never wait for players: offering a frame is a short lock and a
//! push, and no lock is held while writing to a socket.

use std::{
    collections::VecDeque,
    io::IoSlice,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::Poll,
    time::Duration,
};

use bytes::Bytes;
use tokio::{io::AsyncWrite, sync::Notify, time::Instant};

use crate::rtmp::{OUT_CHUNK_SIZE, chunk_writer::serialize_message, csid, msg_type};

/// The message stream id nearly every client gets from `createStream` (rml_rtmp numbers them
/// from 1 per connection). Frames are pre-serialized for it; other ids are serialized per player.
pub const DEFAULT_STREAM_ID: u32 = 1;

/// Most audio messages queued in a row without waking the writer (see the module docs): AAC
/// frames come every 21-23 ms and video frames every 33-40 ms, so normally at most two audio
/// messages fall between two video frames.
pub const MAX_HELD_AUDIO: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Audio,
    Video,
    /// Script data (onMetaData and others).
    Data,
    /// A status notification to players (onStatus): never dropped.
    Status,
}

/// One media message, serialized once and shared by every player of a stream.
#[derive(Debug)]
pub struct Frame {
    pub kind: FrameKind,
    pub timestamp: u32,
    pub keyframe: bool,
    /// Sequence headers, metadata and status messages are never dropped for slow players.
    pub essential: bool,
    pub payload: Bytes,
    /// Chunk bytes for message stream [`DEFAULT_STREAM_ID`].
    pub chunks: Bytes,
}

impl Frame {
    pub fn new(kind: FrameKind, timestamp: u32, keyframe: bool, essential: bool, payload: Bytes) -> Frame {
        let chunks = serialize_for(kind, timestamp, &payload, DEFAULT_STREAM_ID);
        Frame { kind, timestamp, keyframe, essential, payload, chunks }
    }

    /// The chunk bytes for a player on `stream_id` (shared for the default id, a copy otherwise).
    pub fn chunks_for(&self, stream_id: u32) -> Bytes {
        if stream_id == DEFAULT_STREAM_ID {
            self.chunks.clone()
        } else {
            serialize_for(self.kind, self.timestamp, &self.payload, stream_id)
        }
    }

    /// Bytes this frame occupies in a player's queue.
    pub fn wire_len(&self) -> usize {
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

/// What the outbox did with an offered frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Queued,
    Dropped,
    /// The player was too slow for too long and is now being disconnected (or already closed).
    Closed,
}

/// Why a connection's outbox closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    SlowPlayer,
    /// Control output (our own responses) exceeded the queue bound: the peer does not read.
    ControlOverflow,
    WriteFailed(String),
    /// The connection task is done (normal end).
    Finished,
}

#[derive(Debug)]
pub(crate) enum Item {
    Bytes(Bytes),
    Frame(Arc<Frame>),
}

impl Item {
    fn len(&self) -> usize {
        match self {
            Item::Bytes(b) => b.len(),
            Item::Frame(f) => f.wire_len(),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) queue: VecDeque<Item>,
    /// Queued plus in the writer's current batch: what the bound applies to.
    pending_bytes: usize,
    /// Dropping media until the next keyframe.
    skipping: bool,
    /// When this player first had to drop, while it has not caught up since.
    behind_since: Option<Instant>,
    closed: Option<CloseReason>,
    /// The writer has been woken for what is queued (no second wake-up is needed).
    woken: bool,
    /// Control bytes are queued: they end a write window's pause.
    urgent: bool,
    /// Audio messages queued since the writer was last woken.
    held_audio: u8,
    /// This player has been sent video: its audio may wait for the next video frame.
    has_video: bool,
}

/// Per-player counters, readable without the queue lock.
#[derive(Debug, Default)]
pub struct OutboxStats {
    pub bytes_sent: AtomicU64,
    pub dropped_messages: AtomicU64,
    pub queued_bytes: AtomicU64,
}

/// Bounds of one outbox.
#[derive(Debug, Clone, Copy)]
pub struct OutboxLimits {
    pub max_bytes: usize,
    pub slow_timeout: Duration,
    /// Write window: after each write the writer waits this long and then sends everything
    /// queued meanwhile in one write (zero: write at the next wake-up).
    pub write_batch: Duration,
    /// Let audio wait for the next video frame (at most [`MAX_HELD_AUDIO`] messages).
    pub hold_audio: bool,
}

impl OutboxLimits {
    /// Low-latency defaults with this queue bound and slow-player timeout.
    pub fn new(max_bytes: usize, slow_timeout: Duration) -> OutboxLimits {
        OutboxLimits { max_bytes, slow_timeout, write_batch: Duration::ZERO, hold_audio: true }
    }
}

/// One connection's outbound queue: control bytes from the connection task and shared media
/// frames from the stream, written in order by one writer.
#[derive(Debug)]
pub struct Outbox {
    pub(crate) state: Mutex<State>,
    notify: Notify,
    /// Wakes [`Outbox::wait_closed`] callers.
    closed_signal: Notify,
    /// When the player asked to play (time to first frame is measured from it).
    pub play_requested: std::sync::OnceLock<Instant>,
    limits: OutboxLimits,
    /// Message stream id media is written on (a player's id from `play`).
    stream_id: std::sync::atomic::AtomicU32,
    pub stats: OutboxStats,
}

impl Outbox {
    pub fn new(limits: OutboxLimits) -> Arc<Outbox> {
        Arc::new(Outbox {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            closed_signal: Notify::new(),
            play_requested: std::sync::OnceLock::new(),
            limits,
            stream_id: std::sync::atomic::AtomicU32::new(DEFAULT_STREAM_ID),
            stats: OutboxStats::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every critical section is a few field updates; a poisoned lock still holds valid data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_stream_id(&self, id: u32) {
        self.stream_id.store(id, Ordering::Relaxed);
    }

    pub fn stream_id(&self) -> u32 {
        self.stream_id.load(Ordering::Relaxed)
    }

    /// Queues the connection's own bytes (protocol responses, status). Never dropped; if they
    /// alone exceed the bound the peer is not reading at all and the connection is closed.
    pub fn push_control(&self, bytes: Bytes) -> bool {
        let mut st = self.lock();
        if st.closed.is_some() {
            return false;
        }
        if st.pending_bytes + bytes.len() > self.limits.max_bytes.max(64 * 1024) {
            self.set_closed(st, CloseReason::ControlOverflow);
            return false;
        }
        st.pending_bytes += bytes.len();
        st.queue.push_back(Item::Bytes(bytes));
        st.urgent = true;
        self.stats.queued_bytes.store(st.pending_bytes as u64, Ordering::Relaxed);
        st.woken = true;
        drop(st);
        self.notify.notify_one();
        true
    }

    /// Offers a shared frame under the drop policy (see the module docs).
    pub fn offer(&self, frame: &Arc<Frame>, now: Instant) -> Offer {
        let mut st = self.lock();
        if st.closed.is_some() {
            return Offer::Closed;
        }
        let len = frame.wire_len();
        let fits = st.pending_bytes + len <= self.limits.max_bytes;
        let accept = if frame.essential {
            // Tiny and needed to decode anything after them; bounded by the hard cap below.
            st.pending_bytes + len <= self.limits.max_bytes.saturating_mul(2)
        } else if st.skipping {
            // Resume at a keyframe that fits (or any keyframe once the queue has drained).
            frame.keyframe && (fits || st.pending_bytes == 0)
        } else {
            fits || st.pending_bytes == 0
        };
        if accept {
            if frame.keyframe {
                st.skipping = false;
            }
            st.pending_bytes += len;
            st.queue.push_back(Item::Frame(frame.clone()));
            self.stats.queued_bytes.store(st.pending_bytes as u64, Ordering::Relaxed);
            let hold = match frame.kind {
                FrameKind::Audio if !frame.essential && self.limits.hold_audio && st.has_video => {
                    st.held_audio < MAX_HELD_AUDIO
                }
                FrameKind::Video if !frame.essential => {
                    st.has_video = true;
                    false
                }
                _ => false,
            };
            if hold {
                st.held_audio += 1;
            } else if !st.woken {
                // One wake-up per batch: a writer already woken takes everything queued.
                st.woken = true;
                drop(st);
                self.notify.notify_one();
            }
            return Offer::Queued;
        }
        st.skipping = true;
        let since = *st.behind_since.get_or_insert(now);
        self.stats.dropped_messages.fetch_add(1, Ordering::Relaxed);
        if now.saturating_duration_since(since) >= self.limits.slow_timeout {
            self.set_closed(st, CloseReason::SlowPlayer);
            return Offer::Closed;
        }
        Offer::Dropped
    }

    /// Closes the outbox; the writer stops after its current write.
    pub fn close(&self, reason: CloseReason) {
        let st = self.lock();
        self.set_closed(st, reason);
    }

    /// Records the first close reason and wakes the writer and every `wait_closed` caller.
    fn set_closed(&self, mut st: std::sync::MutexGuard<'_, State>, reason: CloseReason) {
        if st.closed.is_none() {
            st.closed = Some(reason);
        }
        drop(st);
        self.notify.notify_one();
        self.closed_signal.notify_waiters();
    }

    /// Resolves once the outbox is closed, with the reason.
    pub async fn wait_closed(&self) -> CloseReason {
        loop {
            let notified = self.closed_signal.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(reason) = self.closed_reason() {
                return reason;
            }
            notified.await;
        }
    }

    pub fn closed_reason(&self) -> Option<CloseReason> {
        self.lock().closed.clone()
    }

    /// Whether the player is currently dropping frames (behind).
    pub fn is_behind(&self) -> bool {
        self.lock().behind_since.is_some()
    }

    /// Waits until there is something to write and moves all of it into `batch`. `Err` once
    /// the outbox is closed (queued bytes are still returned first if the close was `Finished`,
    /// so goodbye messages get out).
    async fn next_batch(&self, batch: &mut VecDeque<Item>) -> Result<(), CloseReason> {
        loop {
            let notified = self.notify.notified();
            {
                let mut st = self.lock();
                match &st.closed {
                    Some(CloseReason::Finished) if !st.queue.is_empty() => {}
                    Some(reason) => return Err(reason.clone()),
                    None => {}
                }
                st.woken = false;
                if !st.queue.is_empty() {
                    st.held_audio = 0;
                    st.urgent = false;
                    if batch.is_empty() {
                        // The writer's spare queue takes the outbox's place (no copying).
                        std::mem::swap(&mut st.queue, batch);
                    } else {
                        batch.extend(st.queue.drain(..));
                    }
                    return Ok(());
                }
            }
            notified.await;
        }
    }

    /// The write window's pause: media offered until `until` is only queued (no wake-up);
    /// control bytes or a close end the pause early.
    async fn pause(&self, until: Instant) {
        let sleep = tokio::time::sleep_until(until);
        let mut sleep = std::pin::pin!(sleep);
        loop {
            let notified = self.notify.notified();
            {
                let mut st = self.lock();
                if st.closed.is_some() || st.urgent {
                    return;
                }
                st.woken = true;
            }
            tokio::select! {
                _ = sleep.as_mut() => return,
                // A wake-up left over from before the pause, or control bytes: look again.
                _ = notified => {}
            }
        }
    }

    /// The writer finished writing `bytes`.
    fn written(&self, bytes: usize) {
        let mut st = self.lock();
        st.pending_bytes = st.pending_bytes.saturating_sub(bytes);
        if st.queue.is_empty() {
            // Caught up: whatever was dropped, the player is keeping pace now.
            st.behind_since = None;
        }
        self.stats.queued_bytes.store(st.pending_bytes as u64, Ordering::Relaxed);
        drop(st);
        self.stats.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Called by the writer after each completed write (metrics: bytes out, first video frame).
pub trait WriteObserver: Send {
    fn wrote(&mut self, bytes: usize, first_video: bool);
}

impl WriteObserver for () {
    fn wrote(&mut self, _bytes: usize, _first_video: bool) {}
}

/// The most buffers handed to one `writev` (Linux IOV_MAX is 1024); kept on the stack.
const MAX_IOVECS: usize = 64;
/// Queue entries a writer keeps allocated between writes; a join burst (a whole GOP) grows its
/// queues far beyond, and that memory is given back afterwards.
const KEEP_ENTRIES: usize = 8;

/// Drains the outbox into `sink` until the outbox closes or a write fails or stalls for the
/// slow-player timeout. Returns why it stopped.
pub async fn run_writer<W: AsyncWrite + Unpin>(
    outbox: Arc<Outbox>,
    mut sink: W,
    mut observer: impl WriteObserver,
) -> CloseReason {
    use tokio::io::AsyncWriteExt;
    // Grown on demand: an idle or steady player needs a handful of entries, and memory per
    // player is what bounds how many players an edge holds.
    let mut batch: VecDeque<Item> = VecDeque::new();
    let mut bufs: Vec<Bytes> = Vec::new();
    let mut sent_video = false;
    let window = outbox.limits.write_batch;
    loop {
        if let Err(reason) = outbox.next_batch(&mut batch).await {
            let _ = sink.flush().await;
            return reason;
        }
        let stream_id = outbox.stream_id();
        let total: usize = batch.iter().map(Item::len).sum();
        let mut first_video = false;
        for item in batch.drain(..) {
            match item {
                Item::Bytes(b) => bufs.push(b),
                Item::Frame(f) => {
                    if f.kind == FrameKind::Video && !sent_video && !f.essential {
                        sent_video = true;
                        first_video = true;
                    }
                    bufs.push(f.chunks_for(stream_id));
                }
            }
        }
        let result = {
            let mut write = std::pin::pin!(write_all_vectored(&mut sink, &mut bufs));
            // A socket with room completes the write in one poll: arm the slow-player timer
            // only when it has to wait (a timer per write was a visible share of the profile).
            match std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
                Poll::Ready(r) => Ok(r),
                Poll::Pending => tokio::time::timeout(outbox.limits.slow_timeout, write).await,
            }
        };
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let reason = CloseReason::WriteFailed(e.to_string());
                outbox.close(reason.clone());
                return reason;
            }
            Err(_) => {
                outbox.close(CloseReason::SlowPlayer);
                return CloseReason::SlowPlayer;
            }
        }
        if batch.capacity() > KEEP_ENTRIES {
            batch.shrink_to(KEEP_ENTRIES);
        }
        if bufs.capacity() > KEEP_ENTRIES {
            bufs.shrink_to(KEEP_ENTRIES);
        }
        outbox.written(total);
        observer.wrote(total, first_video);
        // The first picture of a new player does not wait for the window.
        if !window.is_zero() && sent_video {
            outbox.pause(window_end(Instant::now(), window)).await;
        }
    }
}

/// When a pause that starts `now` ends: `window` later, rounded up to a grid of `window / 8`
/// shared by the whole process. Players' writes would otherwise spread evenly over the window
/// (each pause starts at the player's own last write), waking the runtime every millisecond;
/// on the grid all due writers wake together, at most `window / 8` later.
fn window_end(now: Instant, window: Duration) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let grid = (window / 8).max(Duration::from_millis(1)).as_nanos();
    let due = (now + window).saturating_duration_since(epoch).as_nanos();
    let rounded = due.div_ceil(grid) * grid;
    epoch + Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX))
}

/// Writes every buffer, in order, with as few `writev` calls as the socket allows.
async fn write_all_vectored<W: AsyncWrite + Unpin>(sink: &mut W, bufs: &mut Vec<Bytes>) -> std::io::Result<()> {
    use bytes::Buf;
    let mut start = 0;
    while start < bufs.len() {
        // The iovec array lives only inside one poll, not in the writer's future (per player).
        let mut n = std::future::poll_fn(|cx| {
            let end = (start + MAX_IOVECS).min(bufs.len());
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            for (slot, b) in slices.iter_mut().zip(&bufs[start..end]) {
                *slot = IoSlice::new(b);
            }
            std::pin::Pin::new(&mut *sink).poll_write_vectored(cx, &slices[..end - start])
        })
        .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 && start < bufs.len() {
            let len = bufs[start].len();
            if n >= len {
                n -= len;
                start += 1;
            } else {
                bufs[start].advance(n);
                n = 0;
            }
        }
        while start < bufs.len() && bufs[start].is_empty() {
            start += 1;
        }
    }
    bufs.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: FrameKind, keyframe: bool, essential: bool, len: usize) -> Arc<Frame> {
        Arc::new(Frame::new(kind, 0, keyframe, essential, Bytes::from(vec![0u8; len])))
    }

    fn outbox(max: usize) -> Arc<Outbox> {
        Outbox::new(OutboxLimits::new(max, Duration::from_secs(10)))
    }

    #[test]
    fn overflow_drops_until_next_keyframe_but_keeps_essentials() {
        let ob = outbox(1000);
        let now = Instant::now();
        let key = frame(FrameKind::Video, true, false, 400);
        let inter = frame(FrameKind::Video, false, false, 400);
        let audio = frame(FrameKind::Audio, false, false, 50);
        let seq = frame(FrameKind::Video, false, true, 50);
        assert_eq!(ob.offer(&key, now), Offer::Queued);
        assert_eq!(ob.offer(&inter, now), Offer::Queued);
        // ~830 queued: the next inter frame overflows and starts skipping.
        assert_eq!(ob.offer(&inter, now), Offer::Dropped);
        assert!(ob.is_behind());
        // While skipping, small frames that would fit are still dropped (until a keyframe)...
        assert_eq!(ob.offer(&audio, now), Offer::Dropped);
        // ...but sequence headers are kept.
        assert_eq!(ob.offer(&seq, now), Offer::Queued);
        // A keyframe that does not fit is dropped too.
        assert_eq!(ob.offer(&key, now), Offer::Dropped);
        assert_eq!(ob.stats.dropped_messages.load(Ordering::Relaxed), 3);
        // The writer drains everything; the next keyframe resumes the stream.
        let mut batch = VecDeque::new();
        futures_lite_block_on(ob.next_batch(&mut batch)).unwrap();
        let n: usize = batch.iter().map(Item::len).sum();
        ob.written(n);
        assert!(!ob.is_behind());
        assert_eq!(ob.offer(&inter, now), Offer::Dropped, "still skipping until a keyframe");
        assert_eq!(ob.offer(&key, now), Offer::Queued);
        assert_eq!(ob.offer(&inter, now), Offer::Queued);
    }

    fn woken(ob: &Outbox) -> bool {
        ob.lock().woken
    }

    #[test]
    fn audio_waits_for_the_next_video_frame_but_never_more_than_two_in_a_row() {
        let ob = outbox(1 << 20);
        let now = Instant::now();
        let video = frame(FrameKind::Video, false, false, 1000);
        let audio = frame(FrameKind::Audio, false, false, 100);
        // Before any video (an audio-only stream), every audio message wakes the writer.
        ob.offer(&audio, now);
        assert!(woken(&ob));
        let mut batch = VecDeque::new();
        futures_lite_block_on(ob.next_batch(&mut batch)).unwrap();
        assert_eq!(batch.len(), 1);
        batch.clear();
        ob.offer(&video, now);
        futures_lite_block_on(ob.next_batch(&mut batch)).unwrap();
        assert_eq!(batch.len(), 1);
        batch.clear();
        // With video flowing, audio is queued without a wake-up...
        ob.offer(&audio, now);
        ob.offer(&audio, now);
        assert!(!woken(&ob));
        // ...the third in a row wakes it (a stream whose video stopped still flows)...
        ob.offer(&audio, now);
        assert!(woken(&ob));
        futures_lite_block_on(ob.next_batch(&mut batch)).unwrap();
        assert_eq!(batch.len(), 3);
        batch.clear();
        // ...and so does the next video frame, taking the held audio along in one write.
        ob.offer(&audio, now);
        assert!(!woken(&ob));
        ob.offer(&video, now);
        assert!(woken(&ob));
        futures_lite_block_on(ob.next_batch(&mut batch)).unwrap();
        assert_eq!(batch.len(), 2);
        // Sequence headers (essential) are never held.
        ob.offer(&frame(FrameKind::Audio, false, true, 10), now);
        assert!(woken(&ob));
    }

    #[test]
    fn audio_is_not_held_when_disabled() {
        let ob = Outbox::new(OutboxLimits { hold_audio: false, ..OutboxLimits::new(1 << 20, Duration::from_secs(10)) });
        let now = Instant::now();
        ob.offer(&frame(FrameKind::Video, false, false, 1000), now);
        let mut batch = VecDeque::new();
        futures_lite_block_on(ob.next_batch(&mut batch)).unwrap();
        ob.offer(&frame(FrameKind::Audio, false, false, 100), now);
        assert!(woken(&ob));
    }

    /// Records when each write completed and how many bytes it carried.
    #[derive(Default)]
    struct Writes(std::sync::Arc<Mutex<Vec<(Instant, usize)>>>);

    impl WriteObserver for Writes {
        fn wrote(&mut self, bytes: usize, _first_video: bool) {
            self.0.lock().unwrap().push((Instant::now(), bytes));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn write_window_groups_media_but_not_the_first_picture_or_control_bytes() {
        let window = Duration::from_millis(100);
        let ob =
            Outbox::new(OutboxLimits { write_batch: window, ..OutboxLimits::new(1 << 20, Duration::from_secs(10)) });
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let log = std::sync::Arc::new(Mutex::new(Vec::new()));
        let writer = tokio::spawn(run_writer(ob.clone(), client, Writes(log.clone())));
        let video = frame(FrameKind::Video, false, false, 1000);
        let t0 = Instant::now();
        async fn read(server: &mut tokio::io::DuplexStream, n: usize) {
            let mut buf = vec![0u8; n];
            tokio::io::AsyncReadExt::read_exact(server, &mut buf).await.unwrap();
        }
        // The first picture goes out at once; the window starts after it.
        ob.offer(&video, t0);
        read(&mut server, video.wire_len()).await;
        // Three frames 30 ms apart during the window: one write when it ends.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            ob.offer(&video, Instant::now());
        }
        read(&mut server, 3 * video.wire_len()).await;
        // Control bytes end the next window early.
        ob.offer(&video, Instant::now());
        tokio::time::sleep(Duration::from_millis(10)).await;
        ob.push_control(Bytes::from_static(b"ping"));
        read(&mut server, video.wire_len() + 4).await;
        ob.close(CloseReason::Finished);
        writer.await.unwrap();
        let writes: Vec<(Duration, usize)> = log.lock().unwrap().iter().map(|(t, n)| (*t - t0, *n)).collect();
        let frame_len = video.wire_len();
        let sizes: Vec<usize> = writes.iter().map(|w| w.1).collect();
        assert_eq!(sizes, vec![frame_len, 3 * frame_len, frame_len + 4], "{writes:?}");
        assert_eq!(writes[0].0, Duration::ZERO);
        // The window ends on the process-wide grid (window / 8), never early.
        assert!(writes[1].0 >= window && writes[1].0 <= window + window / 8, "{writes:?}");
        assert_eq!(writes[2].0 - writes[1].0, Duration::from_millis(10), "control bytes end the pause: {writes:?}");
    }

    #[test]
    fn windows_end_on_a_shared_grid() {
        let window = Duration::from_millis(80);
        let t = Instant::now();
        let ends: Vec<Instant> = (0..10).map(|i| window_end(t + Duration::from_millis(i), window)).collect();
        for (i, end) in ends.iter().enumerate() {
            let start = t + Duration::from_millis(i as u64);
            assert!(*end >= start + window && *end <= start + window + window / 8, "{i}");
        }
        // Ten pauses starting a millisecond apart end at two instants (the grid is 10 ms).
        let mut distinct = ends.clone();
        distinct.dedup();
        assert!(distinct.len() <= 2, "{distinct:?}");
    }

    #[test]
    fn too_slow_for_too_long_is_closed() {
        let ob = Outbox::new(OutboxLimits::new(500, Duration::from_secs(2)));
        let t0 = Instant::now();
        let f = frame(FrameKind::Video, false, false, 400);
        assert_eq!(ob.offer(&f, t0), Offer::Queued);
        assert_eq!(ob.offer(&f, t0), Offer::Dropped);
        assert_eq!(ob.offer(&f, t0 + Duration::from_secs(1)), Offer::Dropped);
        assert_eq!(ob.offer(&f, t0 + Duration::from_secs(2)), Offer::Closed);
        assert_eq!(ob.closed_reason(), Some(CloseReason::SlowPlayer));
    }

    #[test]
    fn control_bytes_are_bounded() {
        let ob = outbox(100);
        assert!(ob.push_control(Bytes::from(vec![0u8; 60 * 1024])));
        assert!(!ob.push_control(Bytes::from(vec![0u8; 10 * 1024])));
        assert_eq!(ob.closed_reason(), Some(CloseReason::ControlOverflow));
    }

    #[test]
    fn frames_share_one_serialization() {
        let f = frame(FrameKind::Video, true, false, 10_000);
        let a = f.chunks_for(DEFAULT_STREAM_ID);
        let b = f.chunks_for(DEFAULT_STREAM_ID);
        assert_eq!(a.as_ptr(), b.as_ptr(), "same bytes, not a copy");
        let other = f.chunks_for(3);
        assert_ne!(other, a);
        assert_eq!(other.len(), a.len());
    }

    #[tokio::test]
    async fn writer_sends_everything_in_order_and_counts() {
        let ob = outbox(1 << 20);
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let writer = tokio::spawn(run_writer(ob.clone(), client, ()));
        ob.push_control(Bytes::from_static(b"hello"));
        let f = frame(FrameKind::Video, true, false, 9000);
        ob.offer(&f, Instant::now());
        ob.push_control(Bytes::from_static(b"bye"));
        ob.close(CloseReason::Finished);
        assert_eq!(writer.await.unwrap(), CloseReason::Finished);
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut server, &mut got).await.unwrap();
        let mut want = b"hello".to_vec();
        want.extend_from_slice(&f.chunks);
        want.extend_from_slice(b"bye");
        assert_eq!(got, want);
        assert_eq!(ob.stats.bytes_sent.load(Ordering::Relaxed), want.len() as u64);
    }

    /// Polls a future that is ready without waiting (the batch is already queued).
    fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }
}
