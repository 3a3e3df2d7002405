//! Where bytes fan out. Each media message becomes one [`Frame`](crate::media::Frame) (its
//! payload as received and its RTMP chunk headers) shared by every player; each connection
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
//! start, the goodbye), is written by the connection's writer task ([`writer::run_writer`]), which
//! waits for room up to the slow-player timeout. A `writing` flag in the queue's state makes
//! sure only one of them writes at a time; no lock is held during a write.
//!
//! When a frame is due: at once for everything but audio. An audio message of a stream that
//! also carries video waits for the next video frame, at most [`policy::MAX_HELD_AUDIO`] in a row (a
//! frame later at most, 33 ms at 30 fps). Audio and video interleave, so this halves the writes
//! per player (one per video frame instead of one per message); players buffer far more than a
//! frame of audio, so nothing audible changes. With a write window ([`OutboxLimits::write_window`],
//! `--write-window`) media is due when the player's window since its last write ends: the next
//! publisher message of the process writes every player then due ([`window::WindowFlusher`]), so a
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
//!
//! Files: [`outbox`] (the queue and the offers), [`policy`] (the drop and audio-hold rules), [`writer`]
//! (who writes, and every `unsafe` of the write path with its ownership rule), [`window`] (the
//! write window's flusher), [`frame_log`] (a stream's recent frames for windowed players),
//! [`spread`] (writing many players without one task doing it all). Fan-out knows frames and
//! sockets, nothing about RTMP sessions, streams or the registry; it reports writes through
//! [`WriteObserver`], which the metrics implement.

mod frame_log;
mod outbox;
mod policy;
mod spread;
mod window;
mod writer;

pub(crate) use frame_log::FrameLog;
pub(crate) use outbox::{CloseReason, Offer, Outbox, OutboxLimits, Sink, WriteObserver};
pub(crate) use policy::MAX_HELD_AUDIO;
pub(crate) use spread::write_spread;
pub(crate) use window::WindowFlusher;
pub(crate) use writer::{TcpSink, run_writer};

#[cfg(test)]
pub(crate) use {outbox::tests, spread::WRITE_PER_TASK};
