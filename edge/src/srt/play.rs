//! Play over SRT (`m=request`, `read:<name>`): the caller becomes one of the stream's players
//! like an RTMP viewer (same fast start from the GOP cache, sent as one burst, same bounded queue and slow-player
//! rules, `maxViewers` slot, relay pull for a stream published on another edge), and what the
//! stream hands its players is muxed into MPEG-TS for it.
//!
//! The fan-out writes RTMP chunks to a player's sink; an SRT player's sink ([`TsSink`]) takes
//! them into a bounded queue, and the connection's task reads them back into messages (the
//! edge's own chunk format, one copy per SRT player), muxes them and sends them, waiting for
//! the SRT socket's room. A full queue is a slow player to the fan-out, as a full socket is.

use std::{
    collections::VecDeque,
    io::IoSlice,
    sync::{Arc, Mutex},
    task::{Context as TaskContext, Poll, Waker},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use srt_tokio::SrtSocket;
use streamfleet_registry::StreamRecord;
use tokio::{sync::Notify, time::Instant};

use crate::{
    app::{context::Context, shutdown},
    fanout::{CloseReason, Outbox, Sink, run_writer},
    media::{Media, MediaKind},
    mpegts::{demux::PACKET, mux::Muxer},
    observe::{SessionInfo, SessionRole},
    play::admission::{max_viewers_text, release_slot},
    rtmp::{
        OUT_CHUNK_SIZE,
        chunk_reader::{ChunkReader, ReaderLimits},
        chunk_writer::serialize_message,
        msg_type,
    },
    streams::{HeldStream, LiveState},
    sync::lock,
};

/// Most bytes an SRT player's sink holds before the fan-out sees it as full.
const SINK_BYTES: usize = 512 * 1024;
/// See [`play`]: how long a new player's first bytes wait for the handshake's last answer.
const HANDSHAKE_SETTLE: Duration = Duration::from_millis(20);
/// RTMP's chunk stream for protocol control messages.
const PROTOCOL_CONTROL_CSID: u32 = 2;
/// Transport packets per SRT message (1316 bytes: what every SRT sender uses).
const PACKETS_PER_MESSAGE: usize = 7;

#[derive(Default)]
struct Queue {
    chunks: VecDeque<Bytes>,
    bytes: usize,
    closed: bool,
    writer: Option<Waker>,
}

/// The fan-out's view of an SRT player: a bounded queue of RTMP chunk bytes.
#[derive(Default)]
pub(crate) struct TsSink {
    queue: Mutex<Queue>,
    ready: Notify,
}

impl TsSink {
    fn take(&self) -> Vec<Bytes> {
        let mut q = lock(&self.queue);
        q.bytes = 0;
        if let Some(w) = q.writer.take() {
            w.wake();
        }
        q.chunks.drain(..).collect()
    }

    fn close(&self) {
        let mut q = lock(&self.queue);
        q.closed = true;
        if let Some(w) = q.writer.take() {
            w.wake();
        }
    }
}

impl Sink for TsSink {
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        let mut q = lock(&self.queue);
        if q.closed {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        let room = SINK_BYTES.saturating_sub(q.bytes);
        if room == 0 {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let mut taken = BytesMut::new();
        for b in bufs {
            let n = b.len().min(room - taken.len());
            taken.extend_from_slice(&b[..n]);
            if taken.len() == room {
                break;
            }
        }
        let n = taken.len();
        q.bytes += n;
        q.chunks.push_back(taken.freeze());
        drop(q);
        self.ready.notify_one();
        Ok(n)
    }

    fn poll_write_ready(&self, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        let mut q = lock(&self.queue);
        if q.closed {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        if q.bytes < SINK_BYTES {
            return Poll::Ready(Ok(()));
        }
        q.writer = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Why an SRT player ended.
pub(crate) enum PlayEnd {
    Closed(&'static str),
    Slow,
}

/// Serves an accepted SRT player of `stream` until it ends.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve_player(
    ctx: &Arc<Context>,
    mut socket: SrtSocket,
    info: Arc<SessionInfo>,
    record: &StreamRecord,
    stream: &HeldStream,
    slot: Option<String>,
    cap: Option<usize>,
) -> PlayEnd {
    let outbox = Outbox::new(ctx.settings.outbox);
    let _ = info.outbox.set(outbox.clone());
    let sink = Arc::new(TsSink::default());
    outbox.attach(sink.clone(), ctx.metrics.clone(), ctx.window.clone());
    let writer = tokio::spawn(run_writer(outbox.clone()));
    let end = play(ctx, &mut socket, &info, record, stream, &outbox, &sink, cap).await;
    sink.close();
    outbox.close(CloseReason::Finished);
    writer.abort();
    outbox.release_sink();
    release_slot(ctx, record, slot).await;
    // Closed here, not on drop: the player hears the shutdown before a draining process exits.
    let _ = tokio::time::timeout(super::CLOSE_WAIT, socket.close_and_finish()).await;
    end
}

#[allow(clippy::too_many_arguments)]
async fn play(
    ctx: &Arc<Context>,
    socket: &mut SrtSocket,
    info: &SessionInfo,
    record: &StreamRecord,
    stream: &HeldStream,
    outbox: &Arc<Outbox>,
    sink: &TsSink,
    cap: Option<usize>,
) -> PlayEnd {
    // srt-tokio starts the connection's task before it sends the handshake's last answer, so
    // data sent at once (the fast start is ready at once) can reach the caller first; libsrt
    // then drops it as "DATA while HANDSHAKE expected" and the player starts with a gap of
    // lost packets it waits a whole latency for. The answer leaves the same socket right
    // after, so a moment's wait orders them.
    tokio::time::sleep(HANDSHAKE_SETTLE).await;
    let wait = ctx.settings.play_wait_timeout;
    let mut live = stream.watch_live();
    let mut offline_deadline = (!stream.is_live()).then(|| Instant::now() + wait);
    match stream.add_player(info.id, outbox.clone(), ctx.settings.outbox.max_bytes, cap) {
        Ok(n) => ctx.metrics.stream_players.with_label_values(&[&record.playback_name]).set(n as i64),
        Err(_) => {
            ctx.metrics.play_rejections.with_label_values(&["max_viewers"]).inc();
            tracing::info!(reason = %max_viewers_text(record), "SRT player closed");
            return PlayEnd::Closed("viewer limit");
        }
    }
    // What `add_player` just queued is the fast start (configuration, cached GOP from its
    // keyframe): it is muxed and sent like the rest, so the player decodes the cached keyframe
    // at once instead of waiting up to a keyframe interval for the next one. Each SRT message
    // is stamped with the time it is handed to SRT, so the burst is due one latency later,
    // like live data; the listener's send buffer ([`super::listener::SEND_BUFFER`]) holds it
    // while SRT paces it out at --srt-max-bandwidth.
    info.set_role(SessionRole::Player, Some(record.id.to_string()), Some(record.playback_name.clone()));
    ctx.metrics.players_active.srt.inc();
    ctx.viewers_changed.notify_one();
    tracing::info!(stream = %record.id, playback = %record.playback_name, protocol = "srt", "player started");

    let mut reader = ChunkReader::new(ReaderLimits {
        max_chunk_size: OUT_CHUNK_SIZE,
        max_message_size: 0x00FF_FFFF,
        max_message_size_unadmitted: 0x00FF_FFFF,
        max_chunk_streams: 16,
        max_command_size: 0x00FF_FFFF,
    });
    reader.admit_publisher();
    // The fan-out writes chunks of the edge's size, announced to RTMP players at connect.
    reader.push(&serialize_message(
        PROTOCOL_CONTROL_CSID,
        msg_type::SET_CHUNK_SIZE,
        0,
        0,
        &OUT_CHUNK_SIZE.to_be_bytes(),
        OUT_CHUNK_SIZE as usize,
    ));
    let mut muxer = Muxer::new();
    let mut keyframe_seen = false;
    let mut ts = BytesMut::new();
    let mut shutdown = ctx.shutdown.clone();
    let end = loop {
        tokio::select! {
            _ = sink.ready.notified() => {
                for chunk in sink.take() {
                    reader.push(&chunk);
                }
                loop {
                    match reader.next_message() {
                        Ok(Some(m)) => {
                            let kind = match m.type_id {
                                msg_type::VIDEO => MediaKind::Video,
                                msg_type::AUDIO => MediaKind::Audio,
                                _ => continue,
                            };
                            // From a keyframe on: frames before it cannot be decoded.
                            if kind == MediaKind::Video && !keyframe_seen {
                                keyframe_seen = is_keyframe(&m.payload);
                                if !keyframe_seen && !is_config(&m.payload) {
                                    continue;
                                }
                            }
                            muxer.push(&Media { kind, timestamp: m.timestamp, payload: m.payload }, &mut ts);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "SRT player: unreadable fan-out output");
                            return PlayEnd::Closed("internal error");
                        }
                    }
                }
                if let Err(why) = send(socket, &mut ts).await {
                    break PlayEnd::Closed(why);
                }
            }
            reason = outbox.wait_closed() => {
                break if reason == CloseReason::SlowPlayer { PlayEnd::Slow } else { PlayEnd::Closed("writer stopped") };
            }
            // A player sends nothing; the stream ends when the caller goes away.
            r = socket.next() => if r.is_none_or(|r| r.is_err()) {
                break PlayEnd::Closed("player closed the connection");
            },
            changed = live.changed() => {
                if changed.is_err() {
                    break PlayEnd::Closed("stream ended");
                }
                let is_live = matches!(*live.borrow_and_update(), LiveState::Live { .. });
                offline_deadline = if is_live { None } else { Some(Instant::now() + wait) };
            }
            _ = tokio::time::sleep_until(offline_deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400))),
                if offline_deadline.is_some() => break PlayEnd::Closed("stream not live in time"),
            _ = shutdown::draining(&mut shutdown) => break PlayEnd::Closed("edge is shutting down"),
        }
    };
    if matches!(end, PlayEnd::Slow) {
        ctx.metrics.slow_player_disconnects.inc();
    }
    let n = stream.remove_player(info.id);
    ctx.metrics.stream_players.with_label_values(&[&record.playback_name]).set(n as i64);
    ctx.metrics.players_active.srt.dec();
    ctx.viewers_changed.notify_one();
    end
}

/// A video or audio sequence header: legacy AVC or AAC (packet type 0), or an Enhanced RTMP
/// SequenceStart.
fn is_config(p: &[u8]) -> bool {
    match p {
        [b, ..] if b & 0x80 != 0 && b >> 4 != 0xA => b & 0x0F == 0,
        [0x17, 0, ..] => true,
        [b, 0, ..] => b >> 4 == 10,
        _ => false,
    }
}

/// A video keyframe with pictures: legacy AVC NAL units, or Enhanced RTMP CodedFrames(X).
fn is_keyframe(p: &[u8]) -> bool {
    match p {
        [b, ..] if b & 0x80 != 0 => (b >> 4) & 0x07 == 1 && matches!(b & 0x0F, 1 | 3),
        [b, 1, ..] => b >> 4 == 1,
        _ => false,
    }
}

/// Sends the muxed packets, at most 7 to an SRT message.
async fn send(socket: &mut SrtSocket, ts: &mut BytesMut) -> Result<(), &'static str> {
    let message = PACKET * PACKETS_PER_MESSAGE;
    while ts.len() >= PACKET {
        let n = (ts.len() / PACKET).min(PACKETS_PER_MESSAGE) * PACKET;
        let m = ts.split_to(n.min(message)).freeze();
        if socket.feed((std::time::Instant::now(), m)).await.is_err() {
            return Err("SRT send failed");
        }
    }
    Ok(())
}
