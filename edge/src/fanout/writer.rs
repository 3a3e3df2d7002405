//! Who writes an outbox to its socket, and the only `unsafe` code of the write path.
//!
//! Two writers take turns on one outbox: the task that offered a frame (a publisher, or the
//! window flusher) with one non-blocking [`Outbox::flush`], and the connection's writer task
//! ([`run_writer`]) for everything else and for what a full socket did not take. The `writing`
//! flag in the outbox's state says who owns the write; whoever sets it is the only one to
//! touch the queue's front until it clears it again.
//!
//! **The ownership rule** the `unsafe` below relies on: a [`WriteList`] borrows the bytes of
//! queued items without holding a reference on them (cloning a frame's `Bytes` per player and
//! write cost two atomic operations each). It is sound because
//! 1. only the owner of the `writing` flag fills a list (from the queue's front), and only it
//!    takes items off the queue (`consume`);
//! 2. the owner empties its list before it takes written items off the queue, so no list ever
//!    points at a dropped item;
//! 3. item bytes live on the heap (in `Bytes` or an `Arc<Frame>`), which appending to the
//!    queue, or shrinking it, never moves.
//!
//! Debug builds check 1 and 2 at every fill and every consume. `tests::handover` runs a
//! publisher flushing against the writer task on two threads; run it under Miri with
//! `cargo +nightly miri test -p streamfleet-edge --lib fanout::writer`.

use std::{
    io::IoSlice,
    sync::{Arc, atomic::Ordering},
    task::Poll,
};

use tokio::time::Instant;

use super::outbox::{CloseReason, Outbox, Sink, State};

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
    pub(super) const fn new() -> WriteList {
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

/// A connection's TCP write half as a [`Sink`], with its descriptor at hand.
pub(crate) struct TcpSink {
    fd: std::os::fd::RawFd,
    half: tokio::net::tcp::OwnedWriteHalf,
}

impl TcpSink {
    pub(crate) fn new(half: tokio::net::tcp::OwnedWriteHalf) -> TcpSink {
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
    /// Writes what is due to the socket from the calling task, without waiting: one
    /// non-blocking vectored write. What the socket does not take now (it is full, or the
    /// writer task is busy with it) is left to the writer task. Call with no lock held.
    pub(crate) fn flush(&self) {
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
        let first_video = self.consume(&mut st, n, bufs);
        if !done || !st.queue.is_empty() {
            // The socket is full (or more than one write's worth was queued): the writer task
            // waits for room and writes the rest.
            st.due = true;
        }
        if sink.has_backlog() {
            st.backlog = true;
        }
        let wake = st.due || st.backlog || st.closed.is_some();
        drop(st);
        if wake {
            self.notify.notify_one();
        }
        self.wrote(n, first_video);
    }

    /// The bytes of the next write: the queue's front, up to [`MAX_IOVECS`] slices (a frame
    /// is several: its headers and its payload's chunks). Only the owner of the write may call
    /// it, and must clear `bufs` before [`Outbox::consume`].
    fn collect(&self, st: &State, bufs: &mut WriteList) -> usize {
        debug_assert!(st.writing, "only the owner of the write may borrow queued bytes");
        debug_assert!(bufs.0.is_empty(), "a write list still borrows bytes from an earlier write");
        let mut total = 0;
        // What the front item's earlier writes took.
        let mut skip = st.front_offset;
        for item in &st.queue {
            for piece in item.pieces() {
                if skip >= piece.len() {
                    skip -= piece.len();
                    continue;
                }
                if bufs.0.len() == MAX_IOVECS {
                    return total;
                }
                let piece = &piece[skip..];
                skip = 0;
                total += piece.len();
                bufs.push(piece);
            }
            skip = 0;
        }
        total
    }

    /// Takes `n` written bytes off the queue's front. Returns whether they completed the
    /// player's first picture. `lent` is the caller's write list, which must be empty by now
    /// (rule 2 of the module docs): the items about to be dropped may be what it points at.
    pub(super) fn consume(&self, st: &mut State, mut n: usize, lent: &WriteList) -> bool {
        debug_assert!(lent.0.is_empty(), "queued bytes taken off while a write list still borrows them");
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
                // Taken only by whoever may write: a direct flush in progress sets it again if needed.
                let backlog = !st.writing && std::mem::take(&mut st.backlog);
                if !st.writing && (backlog || ((st.due || draining) && !st.queue.is_empty())) {
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

/// The most slices handed to one `writev` (Linux IOV_MAX is 1024). A frame is two per chunk
/// of the edge's chunk size: dozens of frames per write still, as a new player's fast start
/// needs.
const MAX_IOVECS: usize = 256;
/// Queue entries an outbox keeps allocated once drained; a join burst (a whole GOP) grows its
/// queue far beyond, and that memory is given back afterwards.
const KEEP_ENTRIES: usize = 16;

/// The connection's writer task: writes whatever is due when nobody else does (control bytes,
/// a new player's fast start, the goodbye) and whatever a direct flush could not (the socket
/// was full), waiting for room up to the slow-player timeout. Returns why it stopped; the
/// socket's write half is released then.
pub(crate) async fn run_writer(outbox: Arc<Outbox>) -> CloseReason {
    let mut bufs = WriteList::new();
    let reason = loop {
        let sink = match outbox.acquire().await {
            Ok(sink) => sink,
            Err(reason) => break reason,
        };
        let mut written = write_owned(&outbox, &*sink, &mut bufs).await;
        bufs.release();
        if written.is_ok() && sink.has_backlog() {
            written = push_backlog(&outbox, &*sink).await;
        }
        if let Err(reason) = written {
            outbox.close(reason.clone());
            outbox.lock().writing = false;
            break reason;
        }
    };
    outbox.release_sink();
    reason
}

/// Waits (at most the slow-player timeout) until the sink has passed everything it took to the
/// socket. The write is not owned meanwhile: a direct flush may add to the backlog, which the
/// sink serialises.
async fn push_backlog(outbox: &Outbox, sink: &dyn Sink) -> Result<(), CloseReason> {
    let until = Instant::now() + outbox.limits.slow_timeout;
    match tokio::time::timeout_at(until, std::future::poll_fn(|cx| sink.poll_write_ready(cx))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(CloseReason::WriteFailed(e.to_string())),
        Err(_) => Err(CloseReason::SlowPlayer),
    }
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
            outbox.consume(&mut st, 0, bufs);
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
            let first = outbox.consume(&mut st, n, bufs);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::{
        fanout::{Offer, OutboxLimits, tests::FakeSink},
        media::{Frame, FrameKind},
    };

    /// The queue/writer handover across threads: a publisher thread offers frames and flushes
    /// them itself while the connection's writer task, on another thread, takes over whatever a
    /// socket with little room left behind. Every byte arrives once and in queue order, and no
    /// write list outlives the items it borrowed from (Miri checks that part; see the module
    /// docs).
    #[test]
    fn handover() {
        let frames = if cfg!(miri) { 12 } else { 400 };
        let ob = Outbox::new(OutboxLimits::new(1 << 20, Duration::from_secs(30)));
        let sink = FakeSink::with_room(150);
        ob.attach(sink.clone(), Arc::new(()), None);
        let writer = {
            let ob = ob.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
                rt.block_on(run_writer(ob))
            })
        };
        let mut want = Vec::new();
        for i in 0..frames {
            let payload = Bytes::from(vec![(i % 251) as u8; 64 + (i * 37) % 300]);
            let frame = Arc::new(Frame::new(FrameKind::Video, i as u32, i % 10 == 0, false, payload));
            want.extend_from_slice(&frame.wire());
            if ob.offer_deferred(&frame, Instant::now()) == (Offer::Queued { flush: true }) {
                ob.flush();
            }
            if i % 7 == 0 {
                let control = Bytes::from(vec![0xC0 | (i % 16) as u8; 20]);
                want.extend_from_slice(&control);
                assert!(ob.push_control(control));
            }
            sink.give(120);
        }
        ob.close(CloseReason::Finished);
        sink.give(usize::MAX / 2);
        assert_eq!(writer.join().unwrap(), CloseReason::Finished);
        assert_eq!(sink.data(), want);
    }

    /// A frame larger than the edge's chunk size is several slices. A write hands over at most
    /// [`MAX_IOVECS`] of them, wherever that falls in a frame, and the next write goes on from
    /// there: the player gets every frame's chunks whole and in order.
    #[tokio::test]
    async fn frames_of_many_chunks_are_written_whole_and_in_order() {
        let ob = Outbox::new(OutboxLimits::new(4 << 20, Duration::from_secs(30)));
        let sink = FakeSink::with_room(0);
        ob.attach(sink.clone(), Arc::new(()), None);
        let frames: Vec<Arc<Frame>> = (0..60u32)
            .map(|i| Arc::new(Frame::new(FrameKind::Video, i * 33, i == 0, false, Bytes::from(vec![i as u8; 20_000]))))
            .collect();
        let pieces: usize = frames.iter().map(|f| f.pieces().count()).sum();
        assert!(pieces > 2 * MAX_IOVECS, "{pieces} slices");
        for f in &frames {
            if ob.offer_deferred(f, Instant::now()) == (Offer::Queued { flush: true }) {
                ob.flush();
            }
        }
        let writer = tokio::spawn(run_writer(ob.clone()));
        sink.give(usize::MAX / 2);
        ob.close(CloseReason::Finished);
        assert_eq!(writer.await.unwrap(), CloseReason::Finished);
        let want: Vec<u8> = frames.iter().flat_map(|f| f.wire().to_vec()).collect();
        assert!(sink.data() == want, "the player got other bytes than the frames' chunks");
        let per_write: Vec<usize> = {
            let all: Vec<usize> = frames.iter().flat_map(|f| f.pieces().map(<[u8]>::len).collect::<Vec<_>>()).collect();
            all.chunks(MAX_IOVECS).map(|w| w.iter().sum()).collect()
        };
        assert_eq!(sink.sizes(), per_write, "writes of {MAX_IOVECS} slices each");
    }
}
