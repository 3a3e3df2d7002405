//! One connection's outbound queue ([`Outbox`]): control bytes from the connection task and
//! shared frames from its stream, bounded in bytes; it keeps the books the drop and audio-hold
//! policy ([`super::policy`]) decides on. Who writes the queue, and how, is [`super::writer`]'s.

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

use super::{
    frame_log::{Entry, FrameLog},
    policy,
    window::{WindowFlusher, Windowed, window_end},
};
use crate::{
    media::{DEFAULT_STREAM_ID, Frame, FrameKind, Pieces},
    sync::lock,
};

/// What the outbox did with an offered frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
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
    /// Not queued: an inter frame for a player that waits for its first keyframe (see
    /// [`Outbox::start_at_next_keyframe`]); it could not decode it.
    Waiting,
    /// The player was too slow for too long and is now being disconnected (or already closed).
    Closed,
}

/// Why a connection's outbox closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CloseReason {
    SlowPlayer,
    /// Control output (our own responses) exceeded the queue bound: the peer does not read.
    ControlOverflow,
    WriteFailed(String),
    /// The connection task is done (normal end).
    Finished,
}

#[derive(Debug)]
pub(super) enum Item {
    Bytes(Bytes),
    /// A shared frame (the player's message stream is [`DEFAULT_STREAM_ID`]).
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

    /// The item's wire bytes, as the slices a vectored write takes.
    pub(super) fn pieces(&self) -> Pieces<'_> {
        match self {
            Item::Bytes(b) | Item::Reframed(b, _) => Pieces::single(b),
            Item::Frame(f) => f.pieces(),
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Item::Bytes(b) | Item::Reframed(b, _) => b.len(),
            Item::Frame(f) => f.wire_len(),
        }
    }

    pub(super) fn is_first_picture(&self) -> bool {
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

/// The socket's write half as the outbox uses it: non-blocking writes from whichever task owns
/// the write at the moment (the connection's writer task, a publisher's task, the window
/// flusher), and readiness for the writer task when the socket is full.
pub(crate) trait Sink: Send + Sync + 'static {
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize>;
    fn poll_write_ready(&self, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>>;
    /// Bytes the sink took but has not passed to the socket yet (TLS records the socket had no
    /// room for); `poll_write_ready` pushes them and is ready once they are out. A TCP socket
    /// takes bytes or refuses them, so it never has any.
    fn has_backlog(&self) -> bool {
        false
    }
}

#[derive(Default)]
pub(crate) struct State {
    /// Items stay queued until written: a write takes them from the front, offers append.
    pub(super) queue: VecDeque<Item>,
    /// Bytes of the front item already written (a write that stopped mid-item).
    pub(super) front_offset: usize,
    /// Queued bytes not yet written: what the bound applies to.
    pub(super) pending_bytes: usize,
    /// Dropping media until the next keyframe.
    pub(super) skipping: bool,
    /// When this player first had to drop, while it has not caught up since.
    pub(super) behind_since: Option<Instant>,
    pub(super) closed: Option<CloseReason>,
    /// Someone is writing to the socket (the writer task, or a direct flush): nobody else may.
    pub(super) writing: bool,
    /// What is queued should be written at the next chance (not held audio, not waiting for
    /// the write window).
    pub(super) due: bool,
    /// Audio messages queued since the last write.
    pub(super) held_audio: u8,
    /// This player has been offered video: its audio may wait for the next video frame.
    pub(super) has_video: bool,
    /// Pictures are left out until a keyframe (a player that joined without a cached GOP).
    pub(super) awaiting_keyframe: bool,
    /// This player's first picture has been written (time to first frame is measured then;
    /// the write window applies only after it).
    pub(super) sent_video: bool,
    /// Write window: registered with the window flusher for what is queued.
    pub(super) scheduled: bool,
    /// Write window: when the last write went out.
    pub(super) last_write: Option<Instant>,
    /// Write window: the stream's log this player takes its frames from, and the number of
    /// the next frame it takes (see [`Outbox::offer_logged`]).
    pub(super) feed: Option<Arc<FrameLog>>,
    pub(super) cursor: u64,
    /// A direct flush left bytes in the sink ([`Sink::has_backlog`]): the writer task pushes
    /// them when the socket has room, even with nothing queued.
    pub(super) backlog: bool,
    /// Set by [`Outbox::attach`], taken when the writer task ends (which closes the write half).
    pub(super) sink: Option<Arc<dyn Sink>>,
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
pub(crate) struct OutboxStats {
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) dropped_messages: AtomicU64,
    pub(crate) queued_bytes: AtomicU64,
}

/// Bounds of one outbox.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutboxLimits {
    pub(crate) max_bytes: usize,
    pub(crate) slow_timeout: Duration,
    /// Write window: media is written at most once per window, everything queued in one write
    /// (zero: write at once).
    pub(crate) write_window: Duration,
    /// Let audio wait for the next video frame (see [`super::policy::holds`]).
    pub(crate) hold_audio: bool,
}

impl OutboxLimits {
    /// Low-latency defaults with this queue bound and slow-player timeout.
    #[cfg(test)]
    pub(crate) fn new(max_bytes: usize, slow_timeout: Duration) -> OutboxLimits {
        OutboxLimits { max_bytes, slow_timeout, write_window: Duration::ZERO, hold_audio: true }
    }
}

/// Told about every completed write (metrics: bytes out, time to first frame).
pub(crate) trait WriteObserver: Send + Sync + 'static {
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
pub(crate) struct Outbox {
    pub(super) state: Mutex<State>,
    /// Wakes the writer task.
    pub(super) notify: Notify,
    /// Wakes [`Outbox::wait_closed`] callers.
    pub(super) closed_signal: Notify,
    /// When the player asked to play (time to first frame is measured from it).
    pub(crate) play_requested: std::sync::OnceLock<Instant>,
    pub(super) limits: OutboxLimits,
    /// Message stream id media is written on (a player's id from `play`).
    pub(super) stream_id: std::sync::atomic::AtomicU32,
    pub(crate) stats: OutboxStats,
    /// Shared by every connection of the process: a write touches one cache line fewer than
    /// with an observer of its own.
    pub(super) observer: std::sync::OnceLock<Arc<dyn WriteObserver>>,
    /// Set with a write window: writes media at the end of each player's window.
    pub(super) window: std::sync::OnceLock<Arc<WindowFlusher>>,
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
    /// An inter frame before the player's first keyframe.
    Waiting,
    /// Dropped, and the player has been behind for the slow-player timeout.
    TooSlow,
    Closed,
}

impl Outbox {
    pub(crate) fn new(limits: OutboxLimits) -> Arc<Outbox> {
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
    pub(crate) fn attach(
        &self,
        sink: Arc<dyn Sink>,
        observer: Arc<dyn WriteObserver>,
        window: Option<Arc<WindowFlusher>>,
    ) {
        let _ = self.observer.set(observer);
        if let Some(w) = window.filter(|_| !self.limits.write_window.is_zero()) {
            let _ = self.window.set(w);
        }
        self.lock().sink = Some(sink);
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every critical section is a few field updates; a poisoned lock still holds valid data.
        lock(&self.state)
    }

    pub(crate) fn set_stream_id(&self, id: u32) {
        self.stream_id.store(id, Ordering::Relaxed);
    }

    pub(crate) fn stream_id(&self) -> u32 {
        self.stream_id.load(Ordering::Relaxed)
    }

    /// Queues the connection's own bytes (protocol responses, status). Never dropped; if they
    /// alone exceed the bound the peer is not reading at all and the connection is closed.
    /// Written at once by the writer task, with any media queued before them.
    pub(crate) fn push_control(&self, bytes: Bytes) -> bool {
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
    pub(crate) fn offer(self: &Arc<Self>, frame: &Arc<Frame>, now: Instant) -> Offer {
        let offer = self.enqueue(frame, now, None);
        if offer == (Offer::Queued { flush: true }) {
            self.notify.notify_one();
            return Offer::Queued { flush: false };
        }
        offer
    }

    /// This player starts at the stream's next keyframe: it joined a stream with video but
    /// without a cached GOP to start from (the GOP did not fit the cache's bounds or its
    /// queue), and inter frames before a keyframe cannot be decoded.
    pub(crate) fn start_at_next_keyframe(&self) {
        self.lock().awaiting_keyframe = true;
    }

    /// Like [`Outbox::offer`], but a frame that is due now wakes nobody: the caller gets
    /// `Queued { flush: true }` and must call [`Outbox::flush`] once it holds no lock. A
    /// publisher offers a frame to all its players and then writes to their sockets itself,
    /// which costs one system call per player instead of a task wake-up plus the call.
    pub(crate) fn offer_deferred(self: &Arc<Self>, frame: &Arc<Frame>, now: Instant) -> Offer {
        self.enqueue(frame, now, None)
    }

    /// Like [`Outbox::offer_deferred`], for a stream that logs its frames (under a write
    /// window): `frame` is number `seq` of `log`. Once this player's first picture is out the
    /// offer returns [`Offer::Follows`]; from then on the player takes every frame after `seq`
    /// from the log when its window ends (one lock per window instead of one per frame) and
    /// must not be offered frames any more. Without a write window this is `offer_deferred`.
    pub(crate) fn offer_logged(
        self: &Arc<Self>,
        frame: &Arc<Frame>,
        now: Instant,
        log: &Arc<FrameLog>,
        seq: u64,
    ) -> Offer {
        self.enqueue(frame, now, Some((log, seq)))
    }

    /// The write window this outbox writes media under, if any.
    pub(crate) fn windowed(&self) -> Option<Duration> {
        self.window.get().map(|_| self.limits.write_window)
    }

    /// Stops taking frames from a stream's log (the player left the stream).
    pub(crate) fn unfollow(&self) {
        self.lock().feed = None;
    }

    fn enqueue(self: &Arc<Self>, frame: &Arc<Frame>, now: Instant, log: Option<(&Arc<FrameLog>, u64)>) -> Offer {
        let mut st = self.lock();
        match self.admit(&mut st, frame, now) {
            Admit::Queued => {}
            Admit::Dropped => return Offer::Dropped,
            Admit::Waiting => return Offer::Waiting,
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
                let at = window_end(st.last_write.unwrap_or(now), self.limits.write_window);
                if at > now {
                    schedule_at = Some(at);
                } else {
                    st.due = true;
                    flush = !st.writing;
                }
            }
            if follows && !st.scheduled && schedule_at.is_none() {
                // A follower is visited at every window's end from now on.
                schedule_at = Some(window_end(now, self.limits.write_window));
            }
            if let Some(at) = schedule_at {
                st.scheduled = true;
                drop(st);
                window.schedule(self.clone(), at);
            }
            return if follows { Offer::Follows { flush } } else { Offer::Queued { flush } };
        }
        if policy::starts_video(frame) {
            st.has_video = true;
        }
        if policy::holds(frame, self.limits.hold_audio, st.has_video, st.held_audio) {
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
        if st.awaiting_keyframe && is_picture(frame) {
            if !frame.keyframe {
                return Admit::Waiting;
            }
            st.awaiting_keyframe = false;
        }
        let len = frame.wire_len();
        if !policy::accepts(frame, st.pending_bytes, self.limits.max_bytes, st.skipping) {
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

    /// The window flusher's visit at the end of this player's window: a follower first takes
    /// what is new in its stream's log; what is queued is written. A follower is visited again
    /// when its next window ends.
    fn window_elapsed(self: &Arc<Self>, now: Instant) {
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
            let at = window_end(st.last_write.filter(|t| *t > now).unwrap_or(now), self.limits.write_window);
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

    pub(super) fn wrote(&self, bytes: usize, first_video: bool) {
        if bytes == 0 {
            return;
        }
        self.stats.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
        if let Some(o) = self.observer.get() {
            o.wrote(self, bytes, first_video);
        }
    }

    /// Closes the outbox; the writer stops after its current write.
    pub(crate) fn close(&self, reason: CloseReason) {
        let st = self.lock();
        self.set_closed(st, reason);
    }

    /// Records the first close reason and wakes the writer and every `wait_closed` caller.
    pub(super) fn set_closed(&self, mut st: std::sync::MutexGuard<'_, State>, reason: CloseReason) {
        if st.closed.is_none() {
            st.closed = Some(reason);
        }
        drop(st);
        self.notify.notify_one();
        self.closed_signal.notify_waiters();
    }

    /// Lets go of the socket (the writer task does this when it ends; after an aborted writer
    /// the connection task does).
    pub(crate) fn release_sink(&self) {
        let sink = self.lock().sink.take();
        drop(sink);
    }

    /// Resolves once the outbox is closed, with the reason.
    pub(crate) async fn wait_closed(&self) -> CloseReason {
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

    pub(crate) fn closed_reason(&self) -> Option<CloseReason> {
        self.lock().closed.clone()
    }

    /// Whether the player is currently dropping frames (behind).
    #[cfg(test)]
    pub(crate) fn is_behind(&self) -> bool {
        self.lock().behind_since.is_some()
    }
}

#[cfg(test)]
impl Outbox {
    /// The frames queued (shared ones only), for tests of what a stream offers.
    pub(crate) fn queued_frames(&self) -> Vec<Arc<Frame>> {
        let st = self.lock();
        st.queue.iter().filter_map(|i| if let Item::Frame(f) = i { Some(f.clone()) } else { None }).collect()
    }
}

impl Windowed for Outbox {
    fn window_elapsed(self: Arc<Self>, now: Instant) {
        Outbox::window_elapsed(&self, now);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fanout::writer::run_writer;
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
        /// Bytes each write took.
        sizes: Vec<usize>,
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
        /// Bytes each write that took any took, in order.
        pub(crate) fn sizes(&self) -> Vec<usize> {
            self.0.lock().unwrap().sizes.clone()
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
            f.sizes.push(n);
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
        ob.consume(&mut st, n, &crate::fanout::writer::WriteList::new());
        st.due = false;
        n
    }

    fn queued(ob: &Outbox) -> usize {
        ob.lock().queue.len()
    }

    const FLUSH: Offer = Offer::Queued { flush: true };
    const WAIT: Offer = Offer::Queued { flush: false };

    #[test]
    fn a_player_told_to_start_at_the_next_keyframe_gets_no_picture_before_it() {
        let ob = outbox(1 << 20);
        let now = Instant::now();
        ob.start_at_next_keyframe();
        let (inter, key) = (frame(FrameKind::Video, false, false, 100), frame(FrameKind::Video, true, false, 100));
        let (audio, config) = (frame(FrameKind::Audio, false, false, 10), frame(FrameKind::Video, false, true, 10));
        assert_eq!(ob.offer_deferred(&inter, now), Offer::Waiting);
        assert!(matches!(ob.offer_deferred(&audio, now), Offer::Queued { .. }), "audio is not held back");
        assert!(matches!(ob.offer_deferred(&config, now), Offer::Queued { .. }), "nor a sequence header");
        assert!(matches!(ob.offer_deferred(&key, now), Offer::Queued { .. }));
        assert!(matches!(ob.offer_deferred(&inter, now), Offer::Queued { .. }), "pictures after the keyframe");
        let kinds: Vec<(bool, bool)> = ob.queued_frames().iter().map(|f| (f.keyframe, f.essential)).collect();
        assert_eq!(kinds, vec![(false, false), (false, true), (true, false), (false, false)]);
        assert_eq!(ob.stats.dropped_messages.load(Ordering::Relaxed), 0, "waiting is not dropping");
    }

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
        let mut want = video.wire().to_vec();
        want.extend_from_slice(&audio.wire());
        want.extend_from_slice(&video.wire());
        assert_eq!(sink.data(), want);
        assert!(sink.0.lock().unwrap().threads.iter().all(|t| *t == std::thread::current().id()));
        assert_eq!(ob.stats.bytes_sent.load(Ordering::Relaxed), want.len() as u64);
        assert_eq!(ob.stats.queued_bytes.load(Ordering::Relaxed), 0);
        // Nothing due: a flush does nothing (no system call).
        ob.flush();
        assert_eq!(sink.calls(), 2);
    }

    /// A TLS-like sink: takes every byte at once but passes them on (`delivered`) only from
    /// `poll_write_ready`, once `open` says the socket has room.
    #[derive(Default)]
    struct BacklogSink {
        state: Mutex<Backlog>,
        asked: tokio::sync::Notify,
    }

    #[derive(Default)]
    struct Backlog {
        taken: Vec<u8>,
        delivered: Vec<u8>,
        open: bool,
        waker: Option<Waker>,
    }

    impl Sink for BacklogSink {
        fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
            let mut st = self.state.lock().unwrap();
            bufs.iter().for_each(|b| st.taken.extend_from_slice(b));
            Ok(bufs.iter().map(|b| b.len()).sum())
        }
        fn poll_write_ready(&self, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
            let mut st = self.state.lock().unwrap();
            self.asked.notify_one();
            if !st.open {
                st.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let taken = std::mem::take(&mut st.taken);
            st.delivered.extend_from_slice(&taken);
            Poll::Ready(Ok(()))
        }
        fn has_backlog(&self) -> bool {
            !self.state.lock().unwrap().taken.is_empty()
        }
    }

    /// A direct flush that leaves bytes in the sink (TLS records a full socket did not take)
    /// wakes the writer task, which pushes them once the socket has room, with nothing queued.
    #[tokio::test]
    async fn a_backlog_left_in_the_sink_by_a_direct_flush_is_pushed_by_the_writer_task() {
        let ob = outbox(1 << 20);
        let sink = Arc::new(BacklogSink::default());
        ob.attach(sink.clone(), Arc::new(()), None);
        let writer = tokio::spawn(run_writer(ob.clone()));
        let video = frame(FrameKind::Video, true, false, 5000);
        assert_eq!(ob.offer_deferred(&video, Instant::now()), FLUSH);
        ob.flush();
        assert!(ob.lock().queue.is_empty(), "the sink took the whole frame");
        // The writer task asks the sink for room although nothing is queued.
        tokio::time::timeout(Duration::from_secs(5), sink.asked.notified()).await.expect("the writer task asks");
        assert!(sink.state.lock().unwrap().delivered.is_empty());
        let waker = {
            let mut st = sink.state.lock().unwrap();
            st.open = true;
            st.waker.take()
        };
        waker.expect("the writer task waits for room").wake();
        ob.close(CloseReason::Finished);
        assert_eq!(tokio::time::timeout(Duration::from_secs(5), writer).await.unwrap().unwrap(), CloseReason::Finished);
        assert_eq!(sink.state.lock().unwrap().delivered, video.wire().to_vec(), "the backlog reached the socket");
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
        let mut want = a.wire().to_vec();
        want.extend_from_slice(b"ctl");
        want.extend_from_slice(&b.wire());
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
        assert_ne!(frames[0].chunks_for(3), frames[0].wire(), "the stream id is in the chunk headers");
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
            write_window: Duration::from_millis(100),
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
            Outbox::new(OutboxLimits { write_window: window, ..OutboxLimits::new(1 << 20, Duration::from_secs(10)) });
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
        want.extend_from_slice(&f.wire());
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
    fn players_on_the_default_stream_id_share_the_frame() {
        let f = frame(FrameKind::Video, true, false, 10_000);
        let shared = Item::for_player(&f, DEFAULT_STREAM_ID);
        assert!(matches!(&shared, Item::Frame(g) if Arc::ptr_eq(g, &f)), "the frame itself, not a copy");
        let other = Item::for_player(&f, 3);
        let bytes = |i: &Item| i.pieces().collect::<Vec<_>>().concat();
        assert_eq!(bytes(&shared), f.wire());
        assert_eq!((shared.len(), other.len()), (f.wire_len(), f.wire_len()));
        assert_ne!(bytes(&other), bytes(&shared), "the stream id is in the header");
    }
}
