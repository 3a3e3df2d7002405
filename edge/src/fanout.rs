//! Where bytes fan out. Each media message is serialized into RTMP chunks once
//! ([`Frame::new`]) and shared by every player as reference-counted [`Bytes`]; each connection
//! has one [`Outbox`] (a bounded queue) whose bytes are written to the socket in order by one
//! owner at a time.
//!
//! Who writes: the publisher's own task. A publisher offers a frame to all its players
//! ([`Outbox::offer_deferred`], under the stream lock), lets go of the lock and then calls
//! [`Outbox::flush`] on each player whose frame is due: one non-blocking vectored write of
//! everything queued, straight from the publisher's task. A player so costs one system call
//! per write and no task wake-up, no scheduling, no epoll round of its own (one tokio task per
//! player woken per frame was a fifth of the edge's CPU at 200 players). What a full socket
//! does not take, and everything else (the connection's own control bytes, a new player's fast
//! start, the goodbye), is written by the connection's writer task ([`run_writer`]), which
//! waits for room up to the slow-player timeout. A `writing` flag in the queue's state makes
//! sure only one of them writes at a time; no lock is held during a write.
//!
//! When a frame is due: at once for everything but audio. An audio message of a stream that
//! also carries video waits for the next video frame, at most [`MAX_HELD_AUDIO`] in a row (a
//! frame later at most, 33 ms at 30 fps). Audio and video interleave, so this halves the writes
//! per player (one per video frame instead of one per message); players buffer far more than a
//! frame of audio, so nothing audible changes. With a write window ([`OutboxLimits::write_batch`],
//! `--write-batch`) media is due when the player's window since its last write ends: the next
//! publisher message of the process writes every player then due ([`WindowFlusher`]), so a
//! player costs one write per window and nothing else (control bytes are written at once,
//! taking queued media along; a new player's first picture does not wait). Once its first
//! picture is out, such a player is not offered frames one by one any more: it follows the
//! stream's [`FrameLog`] and takes everything new there when its window ends
//! ([`Outbox::offer_logged`]).
//!
//! Slow players: the queue is bounded in bytes (what is queued and not yet written). On
//! overflow the player drops media until the next keyframe (sequence headers, metadata and
//! status messages are kept); a player that is still behind after the slow-player timeout is
//! disconnected. Publishers never wait for players: offering a frame is a short lock and a
//! push, a flush never waits for the socket.

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
use tokio::{sync::Notify, time::Instant};

use crate::{
    frame_log::{Entry, FrameLog},
    rtmp::{OUT_CHUNK_SIZE, chunk_writer::serialize_message, csid, msg_type},
    write_window::WindowFlusher,
};

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
    /// Queued. `flush`: the caller promised to call [`Outbox::flush`] (see
    /// [`Outbox::offer_deferred`]) and the frame is due now.
    Queued {
        flush: bool,
    },
    /// Queued, and from now on the player takes the stream's frames from its log at the end of
    /// each write window (see [`Outbox::offer_logged`]): do not offer it any more frames.
    Follows {
        flush: bool,
    },
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
    /// A frame's shared chunks (the player's message stream is [`DEFAULT_STREAM_ID`]).
    Frame(Arc<Frame>),
    /// A frame serialized for this player's message stream id; whether it is a picture (not a
    /// sequence header). Kept as small as the other variants: queues keep their entries.
    Reframed(Bytes, bool),
}

impl Item {
    fn for_player(frame: &Arc<Frame>, stream_id: u32) -> Item {
        if stream_id == DEFAULT_STREAM_ID {
            Item::Frame(frame.clone())
        } else {
            Item::Reframed(frame.chunks_for(stream_id), is_picture(frame))
        }
    }

    fn data(&self) -> &[u8] {
        match self {
            Item::Bytes(b) | Item::Reframed(b, _) => b,
            Item::Frame(f) => &f.chunks,
        }
    }

    fn len(&self) -> usize {
        self.data().len()
    }

    fn is_first_picture(&self) -> bool {
        match self {
            Item::Bytes(_) => false,
            Item::Frame(f) => is_picture(f),
            Item::Reframed(_, picture) => *picture,
        }
    }
}

fn is_picture(frame: &Frame) -> bool {
    frame.kind == FrameKind::Video && !frame.essential
}

/// The queued bytes one write hands to `writev`, borrowed from the queue's items rather than
/// holding a reference on each (cloning a frame's `Bytes` for every player and write, and
/// dropping it after, cost two atomic operations per frame and player).
///
/// Valid while the items stay queued. An outbox's list is filled only by the owner of its
/// `writing` flag and cleared before that owner takes written items off the queue (only it
/// does), and item bytes live on the heap (in `Bytes` or an `Arc<Frame>`), which appending to
/// the queue, or shrinking it, never moves.
pub(crate) struct WriteList(Vec<IoSlice<'static>>);

impl WriteList {
    const fn new() -> WriteList {
        WriteList(Vec::new())
    }

    fn push(&mut self, bytes: &[u8]) {
        // SAFETY: see the type's docs: the bytes outlive the entry, which `clear` removes
        // before the item holding them can be dropped.
        let bytes: &'static [u8] = unsafe { std::slice::from_raw_parts(bytes.as_ptr(), bytes.len()) };
        self.0.push(IoSlice::new(bytes));
    }

    fn slices(&self) -> &[IoSlice<'_>] {
        &self.0
    }

    fn clear(&mut self) {
        self.0.clear();
    }

    /// Gives the memory back (a connection's writer task is idle most of the time).
    fn release(&mut self) {
        self.0 = Vec::new();
    }
}

/// The socket's write half as the outbox uses it: non-blocking writes from whichever task owns
/// the write at the moment (the connection's writer task, a publisher's task, the window
/// flusher), and readiness for the writer task when the socket is full.
pub trait Sink: Send + Sync + 'static {
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize>;
    fn poll_write_ready(&self, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>>;
}

/// A connection's TCP write half as a [`Sink`], with its descriptor at hand.
pub struct TcpSink {
    fd: std::os::fd::RawFd,
    half: tokio::net::tcp::OwnedWriteHalf,
}

impl TcpSink {
    pub fn new(half: tokio::net::tcp::OwnedWriteHalf) -> TcpSink {
        use std::os::fd::AsRawFd;
        TcpSink { fd: half.as_ref().as_raw_fd(), half }
    }
}

impl Sink for TcpSink {
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        // Straight to writev(2) on the descriptor kept here: going through tokio (`try_io`,
        // which first reads the socket's readiness two pointers away, a cold cache line for
        // every player) was 2.3 % of the edge's CPU with the write window. A full socket is left
        // to tokio, which must see the `WouldBlock` itself to clear its readiness before
        // `poll_write_ready` can wait for room.
        let count = libc::c_int::try_from(bufs.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` (std guarantees it on Unix), the
        // slices are valid for the call, and the descriptor stays open while `self.half` lives.
        let n = unsafe { libc::writev(self.fd, bufs.as_ptr().cast::<libc::iovec>(), count) };
        match usize::try_from(n) {
            Ok(n) => Ok(n),
            Err(_) => {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::WouldBlock {
                    return self.half.as_ref().try_write_vectored(bufs);
                }
                Err(err)
            }
        }
    }

    fn poll_write_ready(&self, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        self.half.as_ref().poll_write_ready(cx)
    }
}

#[derive(Default)]
pub(crate) struct State {
    /// Items stay queued until written: a write takes them from the front, offers append.
    pub(crate) queue: VecDeque<Item>,
    /// Bytes of the front item already written (a write that stopped mid-item).
    front_offset: usize,
    /// Queued bytes not yet written: what the bound applies to.
    pending_bytes: usize,
    /// Dropping media until the next keyframe.
    skipping: bool,
    /// When this player first had to drop, while it has not caught up since.
    behind_since: Option<Instant>,
    closed: Option<CloseReason>,
    /// Someone is writing to the socket (the writer task, or a direct flush): nobody else may.
    writing: bool,
    /// What is queued should be written at the next chance (not held audio, not waiting for
    /// the write window).
    due: bool,
    /// Audio messages queued since the last write.
    held_audio: u8,
    /// This player has been offered video: its audio may wait for the next video frame.
    has_video: bool,
    /// This player's first picture has been written (time to first frame is measured then;
    /// the write window applies only after it).
    sent_video: bool,
    /// Write window: registered with the window flusher for what is queued.
    scheduled: bool,
    /// Write window: when the last write went out.
    last_write: Option<Instant>,
    /// Write window: the stream's log this player takes its frames from, and the number of
    /// the next frame it takes (see [`Outbox::offer_logged`]).
    feed: Option<Arc<FrameLog>>,
    cursor: u64,
    /// Set by [`Outbox::attach`], taken when the writer task ends (which closes the write half).
    sink: Option<Arc<dyn Sink>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("queued", &self.queue.len())
            .field("pending_bytes", &self.pending_bytes)
            .field("closed", &self.closed)
            .field("writing", &self.writing)
            .finish_non_exhaustive()
    }
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
    /// Write window: media is written at most once per window, everything queued in one write
    /// (zero: write at once).
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

/// Told about every completed write (metrics: bytes out, time to first frame).
pub trait WriteObserver: Send + Sync + 'static {
    fn wrote(&self, outbox: &Outbox, bytes: usize, first_video: bool);
    /// Media this player dropped while taking frames from its stream's log (drops at an offer
    /// are reported by the offer's result).
    fn dropped(&self, _messages: u64) {}
}

impl WriteObserver for () {
    fn wrote(&self, _outbox: &Outbox, _bytes: usize, _first_video: bool) {}
}

/// One connection's outbound queue: control bytes from the connection task and shared media
/// frames from the stream, written in order by one owner at a time.
pub struct Outbox {
    pub(crate) state: Mutex<State>,
    /// Wakes the writer task.
    notify: Notify,
    /// Wakes [`Outbox::wait_closed`] callers.
    closed_signal: Notify,
    /// When the player asked to play (time to first frame is measured from it).
    pub play_requested: std::sync::OnceLock<Instant>,
    limits: OutboxLimits,
    /// Message stream id media is written on (a player's id from `play`).
    stream_id: std::sync::atomic::AtomicU32,
    pub stats: OutboxStats,
    /// Shared by every connection of the process: a write touches one cache line fewer than
    /// with an observer of its own.
    observer: std::sync::OnceLock<Arc<dyn WriteObserver>>,
    /// Set with a write window: writes media at the end of each player's window.
    window: std::sync::OnceLock<Arc<WindowFlusher>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("limits", &self.limits).field("stats", &self.stats).finish_non_exhaustive()
    }
}

/// What the drop policy did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    Queued,
    Dropped,
    /// Dropped, and the player has been behind for the slow-player timeout.
    TooSlow,
    Closed,
}

/// How much of a non-blocking write the socket took.
enum Wrote {
    All(usize),
    Part(usize),
    Failed(std::io::Error),
}

thread_local! {
    /// A direct flush's buffer handles, reused by every flush on this thread.
    static FLUSH_BUFS: std::cell::RefCell<WriteList> = const { std::cell::RefCell::new(WriteList::new()) };
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
            observer: std::sync::OnceLock::new(),
            window: std::sync::OnceLock::new(),
        })
    }

    /// Connects the outbox to its socket; run [`run_writer`] next. `window`: the process's
    /// window flusher, required when the limits have a write window (without one, media is
    /// written at once).
    pub fn attach(&self, sink: Arc<dyn Sink>, observer: Arc<dyn WriteObserver>, window: Option<Arc<WindowFlusher>>) {
        let _ = self.observer.set(observer);
        if let Some(w) = window.filter(|_| !self.limits.write_batch.is_zero()) {
            let _ = self.window.set(w);
        }
        self.lock().sink = Some(sink);
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
    /// Written at once by the writer task, with any media queued before them.
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
        st.due = true;
        self.stats.queued_bytes.store(st.pending_bytes as u64, Ordering::Relaxed);
        drop(st);
        self.notify.notify_one();
        true
    }

    /// Offers a shared frame under the drop policy (see the module docs); the writer task
    /// writes it.
    pub fn offer(self: &Arc<Self>, frame: &Arc<Frame>, now: Instant) -> Offer {
        let offer = self.enqueue(frame, now, None);
        if offer == (Offer::Queued { flush: true }) {
            self.notify.notify_one();
            return Offer::Queued { flush: false };
        }
        offer
    }

    /// Like [`Outbox::offer`], but a frame that is due now wakes nobody: the caller gets
    /// `Queued { flush: true }` and must call [`Outbox::flush`] once it holds no lock. A
    /// publisher offers a frame to all its players and then writes to their sockets itself,
    /// which costs one system call per player instead of a task wake-up plus the call.
    pub fn offer_deferred(self: &Arc<Self>, frame: &Arc<Frame>, now: Instant) -> Offer {
        self.enqueue(frame, now, None)
    }

    /// Like [`Outbox::offer_deferred`], for a stream that logs its frames (under a write
    /// window): `frame` is number `seq` of `log`. Once this player's first picture is out the
    /// offer returns [`Offer::Follows`]; from then on the player takes every frame after `seq`
    /// from the log when its window ends (one lock per window instead of one per frame) and
    /// must not be offered frames any more. Without a write window this is `offer_deferred`.
    pub fn offer_logged(self: &Arc<Self>, frame: &Arc<Frame>, now: Instant, log: &Arc<FrameLog>, seq: u64) -> Offer {
        self.enqueue(frame, now, Some((log, seq)))
    }

    /// The write window this outbox writes media under, if any.
    pub fn windowed(&self) -> Option<Duration> {
        self.window.get().map(|_| self.limits.write_batch)
    }

    /// Stops taking frames from a stream's log (the player left the stream).
    pub fn unfollow(&self) {
        self.lock().feed = None;
    }

    fn enqueue(self: &Arc<Self>, frame: &Arc<Frame>, now: Instant, log: Option<(&Arc<FrameLog>, u64)>) -> Offer {
        let mut st = self.lock();
        match self.admit(&mut st, frame, now) {
            Admit::Queued => {}
            Admit::Dropped => return Offer::Dropped,
            Admit::Closed => return Offer::Closed,
            Admit::TooSlow => {
                self.set_closed(st, CloseReason::SlowPlayer);
                return Offer::Closed;
            }
        }
        if let Some(window) = self.window.get()
            && st.sent_video
        {
            // Windowed: written when the window since the last write ends (the first picture
            // never waits). One registration covers everything queued until then.
            let follows = match log {
                Some((log, seq)) => {
                    st.feed = Some(log.clone());
                    st.cursor = seq + 1;
                    true
                }
                None => false,
            };
            let mut flush = false;
            let mut schedule_at = None;
            if !st.scheduled && !st.due {
                let at = window_end(st.last_write.unwrap_or(now), self.limits.write_batch);
                if at > now {
                    schedule_at = Some(at);
                } else {
                    st.due = true;
                    flush = !st.writing;
                }
            }
            if follows && !st.scheduled && schedule_at.is_none() {
                // A follower is visited at every window's end from now on.
                schedule_at = Some(window_end(now, self.limits.write_batch));
            }
            if let Some(at) = schedule_at {
                st.scheduled = true;
                drop(st);
                window.schedule(self.clone(), at);
            }
            return if follows { Offer::Follows { flush } } else { Offer::Queued { flush } };
        }
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
            return Offer::Queued { flush: false };
        }
        // One flush per batch: a due queue is written whole by whoever writes next.
        let flush = !st.due && !st.writing;
        st.due = true;
        Offer::Queued { flush }
    }

    /// The drop policy (see the module docs): queues `frame` or drops it.
    fn admit(&self, st: &mut State, frame: &Arc<Frame>, now: Instant) -> Admit {
        if st.closed.is_some() {
            return Admit::Closed;
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
        if !accept {
            return self.drop_media(st, 1, now);
        }
        if frame.keyframe {
            st.skipping = false;
        }
        st.pending_bytes += len;
        st.queue.push_back(Item::for_player(frame, self.stream_id()));
        self.stats.queued_bytes.store(st.pending_bytes as u64, Ordering::Relaxed);
        Admit::Queued
    }

    /// Counts `n` messages this player could not take; it skips to the next keyframe and is
    /// too slow once it has been behind for the slow-player timeout.
    fn drop_media(&self, st: &mut State, n: u64, now: Instant) -> Admit {
        st.skipping = true;
        let since = *st.behind_since.get_or_insert(now);
        self.stats.dropped_messages.fetch_add(n, Ordering::Relaxed);
        if now.saturating_duration_since(since) >= self.limits.slow_timeout {
            return Admit::TooSlow;
        }
        Admit::Dropped
    }

    /// Writes what is due to the socket from the calling task, without waiting: one
    /// non-blocking vectored write. What the socket does not take now (it is full, or the
    /// writer task is busy with it) is left to the writer task. Call with no lock held.
    pub fn flush(&self) {
        FLUSH_BUFS.with_borrow_mut(|bufs| self.flush_with(bufs));
    }

    fn flush_with(&self, bufs: &mut WriteList) {
        let mut st = self.lock();
        if st.writing || st.closed.is_some() || !st.due || st.queue.is_empty() {
            return;
        }
        let Some(sink) = st.sink.clone() else {
            // Not attached to a socket (yet): the writer task will write it.
            drop(st);
            self.notify.notify_one();
            return;
        };
        st.writing = true;
        st.due = false;
        st.held_audio = 0;
        let total = self.collect(&st, bufs);
        drop(st);
        let wrote = write_now(&*sink, bufs);
        bufs.clear();
        let mut st = self.lock();
        st.writing = false;
        let (n, done) = match wrote {
            Wrote::All(n) => (n, n == total),
            Wrote::Part(n) => (n, false),
            Wrote::Failed(e) => {
                self.set_closed(st, CloseReason::WriteFailed(e.to_string()));
                return;
            }
        };
        let first_video = self.consume(&mut st, n);
        if !done || !st.queue.is_empty() {
            // The socket is full (or more than one write's worth was queued): the writer task
            // waits for room and writes the rest.
            st.due = true;
        }
        let wake = st.due || st.closed.is_some();
        drop(st);
        if wake {
            self.notify.notify_one();
        }
        self.wrote(n, first_video);
    }

    /// The window flusher's visit at the end of this player's window: a follower first takes
    /// what is new in its stream's log; what is queued is written. A follower is visited again
    /// when its next window ends.
    pub(crate) fn window_elapsed(self: &Arc<Self>, now: Instant) {
        {
            let mut st = self.lock();
            st.scheduled = false;
            if st.closed.is_some() {
                return;
            }
            if st.feed.is_some() {
                st = self.take_from_log(st, now);
            }
            if !st.queue.is_empty() {
                st.due = true;
                drop(st);
                self.flush();
            }
        }
        let mut st = self.lock();
        if let Some(window) = self.window.get()
            && st.feed.is_some()
            && st.closed.is_none()
            && !st.scheduled
        {
            let at = window_end(st.last_write.filter(|t| *t > now).unwrap_or(now), self.limits.write_batch);
            st.scheduled = true;
            drop(st);
            window.schedule(self.clone(), at);
        }
    }

    /// Queues every frame of the log past the cursor under the drop policy, in one lock.
    fn take_from_log<'a>(
        &'a self,
        mut st: std::sync::MutexGuard<'a, State>,
        now: Instant,
    ) -> std::sync::MutexGuard<'a, State> {
        // Taken out and put back rather than cloned: the log's reference count is shared by
        // every player of the stream.
        let Some(feed) = st.feed.take() else { return st };
        let mut verdict = Admit::Queued;
        let mut dropped = 0;
        let cursor = st.cursor;
        st.cursor = feed.read_from(cursor, |entry| {
            if matches!(verdict, Admit::TooSlow | Admit::Closed) {
                return;
            }
            verdict = match entry {
                // Frames the log no longer held: this player was not visited for longer than
                // the log keeps them. They count as dropped; it resumes at a keyframe.
                Entry::Missed(n) => {
                    dropped += n;
                    self.drop_media(&mut st, n, now)
                }
                Entry::Frame(frame) => {
                    let v = self.admit(&mut st, frame, now);
                    dropped += u64::from(v == Admit::Dropped);
                    v
                }
            };
        });
        if dropped > 0 {
            feed.add_dropped(dropped);
            if let Some(o) = self.observer.get() {
                o.dropped(dropped);
            }
        }
        st.feed = Some(feed);
        if verdict == Admit::TooSlow {
            self.set_closed(st, CloseReason::SlowPlayer);
            return self.lock();
        }
        st
    }

    /// The bytes of the next write: the queue's front (up to [`MAX_IOVECS`] items). Only the
    /// owner of the write may call it, and must clear `bufs` before [`Outbox::consume`].
    fn collect(&self, st: &State, bufs: &mut WriteList) -> usize {
        let mut total = 0;
        for (i, item) in st.queue.iter().take(MAX_IOVECS).enumerate() {
            let mut b = item.data();
            if i == 0 {
                b = &b[st.front_offset.min(b.len())..];
            }
            total += b.len();
            bufs.push(b);
        }
        total
    }

    /// Takes `n` written bytes off the queue's front. Returns whether they completed the
    /// player's first picture.
    fn consume(&self, st: &mut State, mut n: usize) -> bool {
        let written = n;
        let mut first_video = false;
        // Also takes empty items at the front when `n` is 0 (nothing else would).
        while let Some(front) = st.queue.front() {
            let left = front.len() - st.front_offset.min(front.len());
            if n < left {
                st.front_offset += n;
                break;
            }
            n -= left;
            st.front_offset = 0;
            if !st.sent_video && front.is_first_picture() {
                st.sent_video = true;
                first_video = true;
            }
            st.queue.pop_front();
        }
        st.pending_bytes = st.pending_bytes.saturating_sub(written);
        if st.queue.is_empty() {
            // Caught up: whatever was dropped, the player is keeping pace now.
            st.behind_since = None;
            if st.queue.capacity() > KEEP_ENTRIES {
                st.queue.shrink_to(KEEP_ENTRIES);
            }
        }
        if written > 0 && self.window.get().is_some() {
            // Only the write window needs it: no clock read per write otherwise.
            st.last_write = Some(Instant::now());
        }
        self.stats.queued_bytes.store(st.pending_bytes as u64, Ordering::Relaxed);
        first_video
    }

    fn wrote(&self, bytes: usize, first_video: bool) {
        if bytes == 0 {
            return;
        }
        self.stats.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
        if let Some(o) = self.observer.get() {
            o.wrote(self, bytes, first_video);
        }
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

    /// Lets go of the socket (the writer task does this when it ends; after an aborted writer
    /// the connection task does).
    pub fn release_sink(&self) {
        let sink = self.lock().sink.take();
        drop(sink);
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

    /// Waits until something is due and nobody else is writing, then takes the write. `Err`
    /// once the outbox is closed (queued bytes are still written first if the close was
    /// `Finished`, so goodbye messages get out).
    async fn acquire(&self) -> Result<Arc<dyn Sink>, CloseReason> {
        loop {
            let notified = self.notify.notified();
            {
                let mut st = self.lock();
                let draining = matches!(st.closed, Some(CloseReason::Finished)) && !st.queue.is_empty();
                match &st.closed {
                    Some(reason) if !draining && !st.writing => return Err(reason.clone()),
                    _ => {}
                }
                if !st.writing && (st.due || draining) && !st.queue.is_empty() {
                    let Some(sink) = st.sink.clone() else {
                        return Err(st.closed.clone().unwrap_or(CloseReason::Finished));
                    };
                    st.writing = true;
                    st.due = false;
                    st.held_audio = 0;
                    return Ok(sink);
                }
                if st.due && st.queue.is_empty() {
                    st.due = false;
                }
            }
            notified.await;
        }
    }
}

/// Writes as much of `bufs` as the socket takes now, without waiting.
fn write_now(sink: &dyn Sink, bufs: &WriteList) -> Wrote {
    let slices = bufs.slices();
    let total: usize = slices.iter().map(|s| s.len()).sum();
    match sink.try_write_vectored(slices) {
        Ok(w) if w == total => Wrote::All(w),
        Ok(0) if total > 0 => Wrote::Failed(std::io::ErrorKind::WriteZero.into()),
        Ok(w) => Wrote::Part(w),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Wrote::Part(0),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Wrote::Part(0),
        Err(e) => Wrote::Failed(e),
    }
}

/// The most buffers handed to one `writev` (Linux IOV_MAX is 1024); kept on the stack.
const MAX_IOVECS: usize = 64;
/// Queue entries an outbox keeps allocated once drained; a join burst (a whole GOP) grows its
/// queue far beyond, and that memory is given back afterwards.
const KEEP_ENTRIES: usize = 16;

/// The connection's writer task: writes whatever is due when nobody else does (control bytes,
/// a new player's fast start, the goodbye) and whatever a direct flush could not (the socket
/// was full), waiting for room up to the slow-player timeout. Returns why it stopped; the
/// socket's write half is released then.
pub async fn run_writer(outbox: Arc<Outbox>) -> CloseReason {
    let mut bufs = WriteList::new();
    let reason = loop {
        let sink = match outbox.acquire().await {
            Ok(sink) => sink,
            Err(reason) => break reason,
        };
        let written = write_owned(&outbox, &*sink, &mut bufs).await;
        bufs.release();
        if let Err(reason) = written {
            outbox.close(reason.clone());
            outbox.lock().writing = false;
            break reason;
        }
    };
    outbox.release_sink();
    reason
}

/// Writes the queue until it is empty (the caller owns the write), waiting for room when the
/// socket is full; releases the write when done.
async fn write_owned(outbox: &Outbox, sink: &dyn Sink, bufs: &mut WriteList) -> Result<(), CloseReason> {
    // A socket with room completes a write at once: the slow-player timer is armed only when it
    // has to wait (a timer per write was a visible share of the profile).
    let mut deadline: Option<Instant> = None;
    loop {
        let total = {
            let st = outbox.lock();
            if let Some(reason) = st.closed.as_ref().filter(|r| **r != CloseReason::Finished) {
                return Err(reason.clone());
            }
            outbox.collect(&st, bufs)
        };
        if total == 0 {
            bufs.clear();
            let mut st = outbox.lock();
            outbox.consume(&mut st, 0);
            if st.queue.is_empty() {
                st.writing = false;
                return Ok(());
            }
            continue;
        }
        let wrote = write_now(sink, bufs);
        bufs.clear();
        let n = match wrote {
            Wrote::All(n) | Wrote::Part(n) => n,
            Wrote::Failed(e) => return Err(CloseReason::WriteFailed(e.to_string())),
        };
        let first_video = {
            let mut st = outbox.lock();
            let first = outbox.consume(&mut st, n);
            if st.queue.is_empty() {
                st.writing = false;
                st.due = false;
                drop(st);
                outbox.wrote(n, first);
                return Ok(());
            }
            first
        };
        outbox.wrote(n, first_video);
        if matches!(wrote, Wrote::Part(_)) {
            let until = *deadline.get_or_insert_with(|| Instant::now() + outbox.limits.slow_timeout);
            match tokio::time::timeout_at(until, std::future::poll_fn(|cx| sink.poll_write_ready(cx))).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(CloseReason::WriteFailed(e.to_string())),
                Err(_) => return Err(CloseReason::SlowPlayer),
            }
        }
    }
}

/// Most players one task writes in one go. A write is 5–10 µs of kernel time, so a publisher
/// with thousands of players would otherwise keep the last one waiting for all the others on one
/// thread (p99 latency 182 ms at 2000 players on 2 cores).
pub(crate) const WRITE_PER_TASK: usize = 256;

/// Runs `write` on every outbox of `list`, emptying it: the first [`WRITE_PER_TASK`] (the
/// longest-connected players) from the calling task, the rest in helper tasks of that many each,
/// which the runtime's other workers take.
pub(crate) fn write_spread(list: &mut Vec<Arc<Outbox>>, write: impl Fn(&Arc<Outbox>) + Copy + Send + 'static) {
    if list.len() > WRITE_PER_TASK && tokio::runtime::Handle::try_current().is_ok() {
        while list.len() > WRITE_PER_TASK {
            let chunk = list.split_off((list.len() - WRITE_PER_TASK).max(WRITE_PER_TASK));
            tokio::spawn(async move {
                for outbox in &chunk {
                    write(outbox);
                }
            });
        }
    }
    for outbox in list.drain(..) {
        write(&outbox);
    }
}

/// When a window that starts `now` ends: `window` later, rounded up to a grid of `window / 32`
/// shared by the whole process, so that players due together share one entry of the flusher's
/// schedule (and its fallback task, when it runs, wakes once for all of them). The grid is fine
/// because publishers do the writing at their own messages: it adds at most 4 ms at 120 ms.
fn window_end(now: Instant, window: Duration) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let grid = (window / 32).max(Duration::from_millis(1)).as_nanos();
    let due = (now + window).saturating_duration_since(epoch).as_nanos();
    let rounded = due.div_ceil(grid) * grid;
    epoch + Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::task::Waker;

    fn frame(kind: FrameKind, keyframe: bool, essential: bool, len: usize) -> Arc<Frame> {
        Arc::new(Frame::new(kind, 0, keyframe, essential, Bytes::from(vec![0u8; len])))
    }

    fn outbox(max: usize) -> Arc<Outbox> {
        Outbox::new(OutboxLimits::new(max, Duration::from_secs(10)))
    }

    /// A socket stand-in that takes at most `room` more bytes, then says `WouldBlock` until
    /// given more room, and records every write call.
    #[derive(Default)]
    pub(crate) struct FakeSink(Mutex<Fake>);

    #[derive(Default)]
    pub(crate) struct Fake {
        data: Vec<u8>,
        room: usize,
        calls: usize,
        waker: Option<Waker>,
        /// The thread of each write that took bytes.
        threads: Vec<std::thread::ThreadId>,
    }

    impl FakeSink {
        pub(crate) fn with_room(room: usize) -> Arc<FakeSink> {
            Arc::new(FakeSink(Mutex::new(Fake { room, ..Default::default() })))
        }
        pub(crate) fn give(&self, more: usize) {
            let mut f = self.0.lock().unwrap();
            f.room += more;
            if let Some(w) = f.waker.take() {
                w.wake();
            }
        }
        pub(crate) fn data(&self) -> Vec<u8> {
            self.0.lock().unwrap().data.clone()
        }
        pub(crate) fn calls(&self) -> usize {
            self.0.lock().unwrap().calls
        }
    }

    impl Sink for FakeSink {
        fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
            let mut f = self.0.lock().unwrap();
            f.calls += 1;
            if f.room == 0 {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(f.room - n);
                f.data.extend_from_slice(&b[..take]);
                n += take;
                if n == f.room {
                    break;
                }
            }
            f.room -= n;
            f.threads.push(std::thread::current().id());
            Ok(n)
        }
        fn poll_write_ready(&self, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
            let mut f = self.0.lock().unwrap();
            if f.room > 0 {
                return Poll::Ready(Ok(()));
            }
            f.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    /// Attaches a fake socket with `room` bytes to `ob` and starts its writer task.
    fn with_writer(ob: &Arc<Outbox>, room: usize) -> (Arc<FakeSink>, tokio::task::JoinHandle<CloseReason>) {
        let sink = FakeSink::with_room(room);
        ob.attach(sink.clone(), Arc::new(()), None);
        (sink, tokio::spawn(run_writer(ob.clone())))
    }

    /// Takes everything queued off the outbox as if it had been written.
    fn drain(ob: &Outbox) -> usize {
        let mut st = ob.lock();
        let n: usize = st.queue.iter().map(Item::len).sum::<usize>() - st.front_offset;
        ob.consume(&mut st, n);
        st.due = false;
        n
    }

    fn queued(ob: &Outbox) -> usize {
        ob.lock().queue.len()
    }

    const FLUSH: Offer = Offer::Queued { flush: true };
    const WAIT: Offer = Offer::Queued { flush: false };

    #[test]
    fn overflow_drops_until_next_keyframe_but_keeps_essentials() {
        let ob = outbox(1000);
        let now = Instant::now();
        let key = frame(FrameKind::Video, true, false, 400);
        let inter = frame(FrameKind::Video, false, false, 400);
        let audio = frame(FrameKind::Audio, false, false, 50);
        let seq = frame(FrameKind::Video, false, true, 50);
        assert_eq!(ob.offer_deferred(&key, now), FLUSH);
        assert_eq!(ob.offer_deferred(&inter, now), WAIT, "already due: one flush covers both");
        // ~830 queued: the next inter frame overflows and starts skipping.
        assert_eq!(ob.offer_deferred(&inter, now), Offer::Dropped);
        assert!(ob.is_behind());
        // While skipping, small frames that would fit are still dropped (until a keyframe)...
        assert_eq!(ob.offer_deferred(&audio, now), Offer::Dropped);
        // ...but sequence headers are kept.
        assert_eq!(ob.offer_deferred(&seq, now), WAIT);
        // A keyframe that does not fit is dropped too.
        assert_eq!(ob.offer_deferred(&key, now), Offer::Dropped);
        assert_eq!(ob.stats.dropped_messages.load(Ordering::Relaxed), 3);
        // Everything gets written; the next keyframe resumes the stream.
        drain(&ob);
        assert!(!ob.is_behind());
        assert_eq!(ob.offer_deferred(&inter, now), Offer::Dropped, "still skipping until a keyframe");
        assert_eq!(ob.offer_deferred(&key, now), FLUSH);
        assert_eq!(ob.offer_deferred(&inter, now), WAIT);
    }

    #[test]
    fn audio_waits_for_the_next_video_frame_but_never_more_than_two_in_a_row() {
        let ob = outbox(1 << 20);
        let now = Instant::now();
        let video = frame(FrameKind::Video, false, false, 1000);
        let audio = frame(FrameKind::Audio, false, false, 100);
        // Before any video (an audio-only stream), every audio message is due at once.
        assert_eq!(ob.offer_deferred(&audio, now), FLUSH);
        drain(&ob);
        assert_eq!(ob.offer_deferred(&video, now), FLUSH);
        drain(&ob);
        // With video flowing, audio waits...
        assert_eq!(ob.offer_deferred(&audio, now), WAIT);
        assert_eq!(ob.offer_deferred(&audio, now), WAIT);
        // ...the third in a row is due (a stream whose video stopped still flows)...
        assert_eq!(ob.offer_deferred(&audio, now), FLUSH);
        assert_eq!(queued(&ob), 3);
        // (the flush writes all three: count restarts)
        ob.lock().held_audio = 0;
        drain(&ob);
        // ...and so is the next video frame, taking the held audio along in one write.
        assert_eq!(ob.offer_deferred(&audio, now), WAIT);
        assert_eq!(ob.offer_deferred(&video, now), FLUSH);
        assert_eq!(queued(&ob), 2);
        drain(&ob);
        // Sequence headers (essential) are never held.
        assert_eq!(ob.offer_deferred(&frame(FrameKind::Audio, false, true, 10), now), FLUSH);
    }

    #[test]
    fn audio_is_not_held_when_disabled() {
        let ob = Outbox::new(OutboxLimits { hold_audio: false, ..OutboxLimits::new(1 << 20, Duration::from_secs(10)) });
        let now = Instant::now();
        ob.offer_deferred(&frame(FrameKind::Video, false, false, 1000), now);
        drain(&ob);
        assert_eq!(ob.offer_deferred(&frame(FrameKind::Audio, false, false, 100), now), FLUSH);
    }

    #[tokio::test]
    async fn a_flush_writes_from_the_calling_task_in_one_call() {
        let ob = outbox(1 << 20);
        let sink = FakeSink::with_room(1 << 20);
        ob.attach(sink.clone(), Arc::new(()), None);
        let audio = frame(FrameKind::Audio, false, false, 100);
        let video = frame(FrameKind::Video, true, false, 5000);
        ob.offer_deferred(&video, Instant::now());
        ob.flush();
        ob.offer_deferred(&audio, Instant::now());
        assert_eq!(ob.offer_deferred(&video, Instant::now()), FLUSH);
        ob.flush();
        // Three frames, two calls (the audio went with the second video frame), on this thread.
        assert_eq!(sink.calls(), 2);
        let mut want = video.chunks.to_vec();
        want.extend_from_slice(&audio.chunks);
        want.extend_from_slice(&video.chunks);
        assert_eq!(sink.data(), want);
        assert!(sink.0.lock().unwrap().threads.iter().all(|t| *t == std::thread::current().id()));
        assert_eq!(ob.stats.bytes_sent.load(Ordering::Relaxed), want.len() as u64);
        assert_eq!(ob.stats.queued_bytes.load(Ordering::Relaxed), 0);
        // Nothing due: a flush does nothing (no system call).
        ob.flush();
        assert_eq!(sink.calls(), 2);
    }

    #[tokio::test]
    async fn what_a_full_socket_does_not_take_the_writer_task_writes_in_order() {
        let ob = outbox(1 << 20);
        let a = frame(FrameKind::Video, true, false, 3000);
        let b = frame(FrameKind::Video, false, false, 3000);
        // Room for part of the first frame only.
        let (sink, writer) = with_writer(&ob, 1000);
        ob.offer_deferred(&a, Instant::now());
        ob.flush();
        assert_eq!(sink.data().len(), 1000, "the direct write took what fit");
        // Queued behind the unwritten rest: control bytes and another frame.
        ob.push_control(Bytes::from_static(b"ctl"));
        ob.offer_deferred(&b, Instant::now());
        ob.flush(); // the socket is full: nothing written, nothing lost
        sink.give(1 << 20);
        ob.close(CloseReason::Finished);
        assert_eq!(writer.await.unwrap(), CloseReason::Finished);
        let mut want = a.chunks.to_vec();
        want.extend_from_slice(b"ctl");
        want.extend_from_slice(&b.chunks);
        assert_eq!(sink.data(), want);
        assert_eq!(ob.stats.bytes_sent.load(Ordering::Relaxed), want.len() as u64);
        assert!(ob.lock().sink.is_none(), "the writer let go of the socket");
    }

    #[tokio::test(start_paused = true)]
    async fn a_socket_that_stays_full_closes_the_player_after_the_slow_timeout() {
        let ob = Outbox::new(OutboxLimits::new(1 << 20, Duration::from_secs(2)));
        let (_sink, writer) = with_writer(&ob, 10);
        let t0 = Instant::now();
        ob.offer(&frame(FrameKind::Video, true, false, 3000), t0);
        assert_eq!(writer.await.unwrap(), CloseReason::SlowPlayer);
        assert_eq!(t0.elapsed(), Duration::from_secs(2));
        assert_eq!(ob.closed_reason(), Some(CloseReason::SlowPlayer));
    }

    /// Records when each write completed and how many bytes it carried.
    #[derive(Default)]
    struct Writes(Mutex<Vec<(Instant, usize, bool)>>);

    impl WriteObserver for Writes {
        fn wrote(&self, _outbox: &Outbox, bytes: usize, first_video: bool) {
            self.0.lock().unwrap().push((Instant::now(), bytes, first_video));
        }
    }

    #[tokio::test]
    async fn a_player_on_another_message_stream_gets_frames_serialized_for_it_across_partial_writes() {
        let ob = outbox(1 << 20);
        ob.set_stream_id(3);
        let (sink, writer) = with_writer(&ob, 700);
        let frames = [frame(FrameKind::Video, true, false, 1000), frame(FrameKind::Audio, false, false, 300)];
        for f in &frames {
            ob.offer_deferred(f, Instant::now());
        }
        // The socket takes 700 bytes now; the writer task writes the rest as room comes.
        ob.flush();
        assert_eq!(sink.data().len(), 700);
        sink.give(1 << 20);
        let want: Vec<u8> = frames.iter().flat_map(|f| f.chunks_for(3).to_vec()).collect();
        assert_ne!(frames[0].chunks_for(3), frames[0].chunks, "the stream id is in the chunk headers");
        streamfleet_testkit::wait::wait_until("the rest written", Duration::from_secs(5), || async {
            (sink.data().len() == want.len()).then_some(())
        })
        .await;
        assert_eq!(sink.data(), want);
        ob.close(CloseReason::Finished);
        writer.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_the_log_left_behind_counts_what_it_missed_and_resumes_at_a_keyframe() {
        let ob = Outbox::new(OutboxLimits {
            write_batch: Duration::from_millis(100),
            ..OutboxLimits::new(1 << 20, Duration::from_secs(10))
        });
        let sink = FakeSink::with_room(1 << 20);
        ob.attach(sink.clone(), Arc::new(()), Some(WindowFlusher::new(Duration::from_millis(100))));
        let writer = tokio::spawn(run_writer(ob.clone()));
        let log = FrameLog::new();
        let key = frame(FrameKind::Video, true, false, 1000);
        let delta = frame(FrameKind::Video, false, false, 1000);
        let t0 = Instant::now();
        // The first picture is due at once; with it out, the next offer makes the player follow.
        let seq = log.append(&key, t0);
        assert_eq!(ob.offer_logged(&key, t0, &log, seq), FLUSH);
        ob.flush();
        let seq = log.append(&delta, t0);
        assert_eq!(ob.offer_logged(&delta, t0, &log, seq), Offer::Follows { flush: false });
        // Four frames the player never takes in time: by 1.5 s the log (1 s) has let them go.
        for _ in 0..4 {
            log.append(&delta, t0 + Duration::from_millis(200));
        }
        let later = t0 + Duration::from_millis(1500);
        for f in [&delta, &delta, &key, &delta] {
            log.append(f, later);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Missed 4, then skipped 2 deltas up to the keyframe; the keyframe and the delta after it
        // went out.
        assert_eq!(ob.stats.dropped_messages.load(Ordering::Relaxed), 6);
        assert_eq!(log.dropped.load(Ordering::Relaxed), 6);
        assert_eq!(sink.data().len(), 4 * key.wire_len());
        ob.close(CloseReason::Finished);
        writer.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn write_window_groups_media_but_not_the_first_picture_or_control_bytes() {
        let window = Duration::from_millis(100);
        let ob =
            Outbox::new(OutboxLimits { write_batch: window, ..OutboxLimits::new(1 << 20, Duration::from_secs(10)) });
        let sink = FakeSink::with_room(1 << 20);
        let log = Arc::new(Writes::default());
        ob.attach(sink.clone(), log.clone(), Some(WindowFlusher::new(Duration::from_millis(100))));
        let writer = tokio::spawn(run_writer(ob.clone()));
        let video = frame(FrameKind::Video, false, false, 1000);
        let t0 = Instant::now();
        // The first picture is due at once; the window starts after it.
        assert_eq!(ob.offer_deferred(&video, t0), FLUSH);
        ob.flush();
        // Three frames 30 ms apart during the window: one write when it ends, by the flusher.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            assert_eq!(ob.offer_deferred(&video, Instant::now()), WAIT);
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
        // Control bytes end the next window early.
        ob.offer_deferred(&video, Instant::now());
        tokio::time::sleep(Duration::from_millis(10)).await;
        ob.push_control(Bytes::from_static(b"ping"));
        tokio::time::sleep(Duration::from_millis(1)).await;
        ob.close(CloseReason::Finished);
        writer.await.unwrap();
        let frame_len = video.wire_len();
        let writes: Vec<(Duration, usize, bool)> =
            log.0.lock().unwrap().iter().map(|(t, n, first)| (*t - t0, *n, *first)).collect();
        let sizes: Vec<usize> = writes.iter().map(|w| w.1).collect();
        assert_eq!(sizes, vec![frame_len, 3 * frame_len, frame_len + 4], "{writes:?}");
        assert!(writes[0].2 && !writes[1].2, "the first write is the first picture: {writes:?}");
        assert_eq!(writes[0].0, Duration::ZERO);
        // The window ends on the process-wide grid (window / 32; the timer's resolution is 1 ms),
        // never early.
        let latest = window + window / 32 + Duration::from_millis(1);
        assert!(writes[1].0 >= window && writes[1].0 <= latest, "{writes:?}");
        assert_eq!(writes[2].0, Duration::from_millis(130 + 10), "control bytes end the window: {writes:?}");
        assert_eq!(sink.data().len(), 5 * frame_len + 4);
    }

    #[tokio::test]
    async fn empty_control_bytes_are_skipped_not_spun_on() {
        let ob = outbox(1 << 20);
        let (sink, writer) = with_writer(&ob, 1 << 20);
        ob.push_control(Bytes::new());
        ob.push_control(Bytes::from_static(b"x"));
        ob.close(CloseReason::Finished);
        let done = tokio::time::timeout(Duration::from_secs(5), writer).await;
        assert_eq!(done.expect("the writer ends").unwrap(), CloseReason::Finished);
        assert_eq!(sink.data(), b"x");
    }

    #[tokio::test]
    async fn writer_sends_everything_in_order_and_counts() {
        let ob = outbox(1 << 20);
        let (sink, writer) = with_writer(&ob, 1 << 20);
        ob.push_control(Bytes::from_static(b"hello"));
        let f = frame(FrameKind::Video, true, false, 9000);
        ob.offer(&f, Instant::now());
        ob.push_control(Bytes::from_static(b"bye"));
        ob.close(CloseReason::Finished);
        assert_eq!(writer.await.unwrap(), CloseReason::Finished);
        let mut want = b"hello".to_vec();
        want.extend_from_slice(&f.chunks);
        want.extend_from_slice(b"bye");
        assert_eq!(sink.data(), want);
        assert_eq!(ob.stats.bytes_sent.load(Ordering::Relaxed), want.len() as u64);
    }

    #[test]
    fn windows_end_on_a_shared_grid() {
        let window = Duration::from_millis(80);
        let t = Instant::now();
        let ends: Vec<Instant> = (0..10).map(|i| window_end(t + Duration::from_millis(i), window)).collect();
        for (i, end) in ends.iter().enumerate() {
            let start = t + Duration::from_millis(i as u64);
            assert!(*end >= start + window && *end <= start + window + window / 32, "{i}");
        }
        // Ten windows starting a millisecond apart end at five instants at most (the grid is
        // 2.5 ms).
        let mut distinct = ends.clone();
        distinct.dedup();
        assert!(distinct.len() <= 5, "{distinct:?}");
    }

    #[test]
    fn too_slow_for_too_long_is_closed() {
        let ob = Outbox::new(OutboxLimits::new(500, Duration::from_secs(2)));
        let t0 = Instant::now();
        let f = frame(FrameKind::Video, false, false, 400);
        assert_eq!(ob.offer(&f, t0), Offer::Queued { flush: false });
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
}
