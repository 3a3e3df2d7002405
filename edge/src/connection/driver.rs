//! The async side of one connection: reads the socket into the sans-IO
//! [`Connection`](super::protocol::Connection), queues its output on the connection's
//! [`Outbox`] (one ordered writer per connection), enforces the handshake and
//! connect-to-publish/play timeouts, and hands the connection to the publisher or player logic
//! once it asks to publish or play.

use std::{collections::VecDeque, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use tokio::{
    io::AsyncReadExt,
    net::{TcpStream, tcp::OwnedReadHalf},
    time::{Instant, sleep_until, timeout, timeout_at},
};
use tracing::Instrument;

use super::protocol::{ConnError, Connection, Event, Output};
use crate::{
    context::Context,
    fanout::{CloseReason, Outbox, TcpSink, WriteObserver, run_writer},
    metrics::Metrics,
    play, publisher,
    sessions::SessionInfo,
};

/// Reads of a new connection go through a stack buffer of this size, so a connection that
/// sends little (a player: acks, pings) holds no read buffer of its own between reads.
const READ_BUF_SMALL: usize = 4 * 1024;
/// A connection whose reads fill the small buffer (a publisher) gets a heap buffer this large.
const READ_BUF_MAX: usize = 64 * 1024;
/// How long the goodbye bytes (a final onStatus) may take once a session ends.
const FLUSH_ON_CLOSE: Duration = Duration::from_secs(2);

/// Why a connection ended.
#[derive(Debug)]
pub enum Ended {
    /// The peer closed the connection.
    Eof,
    /// We closed it after telling the peer why (rejections, drops, timeouts).
    Closed(String),
    Protocol(ConnError),
    Io(std::io::Error),
    /// The writer stopped (slow player, write failure).
    Outbox(CloseReason),
}

impl Ended {
    /// Logs the end at a level matching how unusual it is and counts protocol errors.
    pub fn record(&self, metrics: &Metrics) {
        match self {
            Ended::Eof => tracing::debug!("peer closed the connection"),
            Ended::Closed(why) => tracing::info!(reason = %why, "connection closed"),
            Ended::Protocol(e) => {
                metrics.protocol_errors.with_label_values(&[e.label()]).inc();
                if matches!(e, ConnError::Handshake(_)) {
                    metrics.handshake_failures.inc();
                }
                tracing::info!(error = %e, "closing connection on bad input");
            }
            Ended::Io(e) => tracing::debug!(error = %e, "connection I/O error"),
            Ended::Outbox(reason) => tracing::info!(reason = ?reason, "connection writer stopped"),
        }
    }
}

/// A connection's I/O: socket read half, protocol state, outbox.
pub struct Io {
    read: OwnedReadHalf,
    /// Empty until a read fills [`READ_BUF_SMALL`]; then [`READ_BUF_MAX`] bytes.
    buf: Vec<u8>,
    pub conn: Connection,
    pub outbox: Arc<Outbox>,
    pub info: Arc<SessionInfo>,
    pub metrics: Arc<Metrics>,
    events: VecDeque<Event>,
    pub remote: SocketAddr,
}

impl Io {
    /// Queues outputs: bytes go to the outbox in order, events to the event queue. A `Close`
    /// output ends the connection once what came before it is queued.
    pub fn apply(&mut self, outs: Vec<Output>) -> Result<(), Ended> {
        for o in outs {
            match o {
                Output::Send(b) => self.send(b)?,
                Output::Event(e) => self.events.push_back(e),
                Output::Close(why) => return Err(Ended::Closed(why)),
            }
        }
        Ok(())
    }

    pub fn send(&self, bytes: Bytes) -> Result<(), Ended> {
        if self.outbox.push_control(bytes) {
            Ok(())
        } else {
            Err(Ended::Outbox(self.outbox.closed_reason().unwrap_or(CloseReason::ControlOverflow)))
        }
    }

    /// Reads once and feeds the protocol. Cancel-safe (the only awaits are readiness and the
    /// socket read).
    async fn read_once(&mut self) -> Result<(), Ended> {
        if !self.buf.is_empty() {
            let n = self.read.read(&mut self.buf).await.map_err(Ended::Io)?;
            let outs = self.received(n)?;
            return self.apply(outs);
        }
        loop {
            self.read.readable().await.map_err(Ended::Io)?;
            // Not held across an await: it is no part of the connection's future.
            let mut stack = [0u8; READ_BUF_SMALL];
            match self.read.try_read(&mut stack) {
                Ok(n) => {
                    let outs = self.received_small(&stack, n)?;
                    return self.apply(outs);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(Ended::Io(e)),
            }
        }
    }

    /// Feeds `n` bytes just read into the stack buffer; a read that filled it means a
    /// connection that sends a lot (a publisher), which gets a heap buffer from now on.
    fn received_small(&mut self, stack: &[u8; READ_BUF_SMALL], n: usize) -> Result<Vec<Output>, Ended> {
        if n == 0 {
            return Err(Ended::Eof);
        }
        self.count(n);
        let outs = self.conn.feed(&stack[..n]).map_err(Ended::Protocol)?;
        if n == READ_BUF_SMALL {
            self.buf = vec![0u8; READ_BUF_MAX];
        }
        Ok(outs)
    }

    fn received(&mut self, n: usize) -> Result<Vec<Output>, Ended> {
        if n == 0 {
            return Err(Ended::Eof);
        }
        self.count(n);
        self.conn.feed(&self.buf[..n]).map_err(Ended::Protocol)
    }

    fn count(&self, n: usize) {
        self.metrics.bytes_received.inc_by(n as u64);
        self.info.bytes_received.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// The next protocol event. Cancel-safe: use it in `select!`.
    pub async fn next_event(&mut self) -> Result<Event, Ended> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(e);
            }
            self.read_once().await?;
        }
    }

    /// Keeps reading while a publish/play decision is pending (the protocol buffers the bytes,
    /// bounded), so a client that gives up is noticed. Resolves only when the connection ends.
    pub async fn until_closed_while_pending(&mut self) -> Ended {
        loop {
            if let Err(e) = self.read_once().await {
                return e;
            }
        }
    }

    /// Rejects the pending request with an error status and ends the connection.
    pub fn reject(&mut self, code: &str, description: &str) -> Ended {
        let outs = self.conn.reject(code, description);
        match self.apply(outs) {
            Err(e) => e,
            Ok(()) => Ended::Closed(description.to_string()),
        }
    }

    async fn handshake(&mut self) -> Result<(), Ended> {
        while !self.conn.handshake_done() {
            self.read_once().await?;
        }
        Ok(())
    }
}

/// Records time to first frame and bytes out as writes complete; one for all connections.
pub(crate) struct WriteMetrics {
    pub(crate) metrics: Arc<Metrics>,
}

impl WriteObserver for WriteMetrics {
    fn wrote(&self, outbox: &Outbox, bytes: usize, first_video: bool) {
        self.metrics.bytes_sent.inc_by(bytes as u64);
        if first_video && let Some(t) = outbox.play_requested.get() {
            self.metrics.time_to_first_frame.observe(t.elapsed().as_secs_f64());
        }
    }

    fn dropped(&self, messages: u64) {
        self.metrics.slow_player_dropped_messages.inc_by(messages);
    }
}

/// Which listener a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `--rtmp-listen`: encoders and players.
    Public,
    /// `--relay-listen`: other edges pulling streams published here (play only, authenticated).
    Relay,
}

/// Serves one accepted RTMP connection from the public listener to its end.
pub async fn serve(ctx: Arc<Context>, socket: TcpStream, remote: SocketAddr) {
    serve_on(ctx, socket, remote, Listener::Public).await
}

/// Serves one accepted RTMP connection to its end.
pub async fn serve_on(ctx: Arc<Context>, socket: TcpStream, remote: SocketAddr, listener: Listener) {
    let started = Instant::now();
    // Low latency for every message (and no Nagle/delayed-ACK stall on the command exchange).
    let _ = socket.set_nodelay(true);
    let guard = ctx.sessions.open(remote);
    let outbox = Outbox::new(ctx.settings.outbox);
    let _ = guard.info.outbox.set(outbox.clone());
    let (read, write) = socket.into_split();
    outbox.attach(Arc::new(TcpSink::new(write)), ctx.write_metrics.clone(), ctx.window.clone());
    let writer = tokio::spawn(run_writer(outbox.clone()));
    ctx.metrics.connections_active.inc();
    let mut io = Io {
        read,
        buf: Vec::new(),
        conn: Connection::new(match listener {
            Listener::Public => ctx.settings.protocol.clone(),
            Listener::Relay => crate::relay::server::protocol_config(&ctx.settings.protocol),
        }),
        outbox: outbox.clone(),
        info: guard.info.clone(),
        metrics: ctx.metrics.clone(),
        events: VecDeque::new(),
        remote,
    };
    let span = tracing::info_span!("conn", id = guard.info.id, %remote);
    let ended = run_session(&ctx, &mut io, started, listener).instrument(span.clone()).await;
    span.in_scope(|| ended.record(&ctx.metrics));
    io.conn.close();
    outbox.close(CloseReason::Finished);
    let abort = writer.abort_handle();
    if timeout(FLUSH_ON_CLOSE, writer).await.is_err() {
        abort.abort();
        outbox.release_sink();
    }
    let role = guard.info.role();
    ctx.metrics.connections_active.dec();
    ctx.metrics.connection_duration.with_label_values(&[role.as_str()]).observe(started.elapsed().as_secs_f64());
}

async fn run_session(ctx: &Arc<Context>, io: &mut Io, started: Instant, listener: Listener) -> Ended {
    match timeout_at(started + ctx.settings.handshake_timeout, io.handshake()).await {
        Err(_) => {
            ctx.metrics.handshake_failures.inc();
            return Ended::Closed("no RTMP handshake before --handshake-timeout".into());
        }
        Ok(Err(Ended::Eof)) => {
            ctx.metrics.handshake_failures.inc();
            return Ended::Closed("connection closed during the RTMP handshake".into());
        }
        Ok(Err(e)) => return e,
        Ok(Ok(())) => {}
    }
    let deadline = started + ctx.settings.publish_timeout;
    let mut shutdown = ctx.shutdown.clone();
    loop {
        tokio::select! {
            ev = io.next_event() => match ev {
                Ok(Event::Connected { flash_ver, tc_url }) => io.info.set_client(flash_ver, tc_url),
                Ok(Event::PublishRequested { key }) => {
                    if listener == Listener::Relay {
                        drop(key);
                        return io.reject("NetStream.Publish.BadName", "the relay listener serves plays only");
                    }
                    // Boxed: each role's future is allocated only by connections that take it.
                    return Box::pin(publisher::run(ctx, io, key, deadline)).await;
                }
                Ok(Event::PlayRequested { name, query, stream_id }) => {
                    if listener == Listener::Relay {
                        return Box::pin(crate::relay::server::play(ctx, io, name, &query, stream_id)).await;
                    }
                    return Box::pin(play::run(ctx, io, name, stream_id, Instant::now(), deadline)).await;
                }
                Ok(_) => {}
                Err(e) => return e,
            },
            _ = sleep_until(deadline) => {
                return Ended::Closed("no publish or play before --publish-timeout".into());
            }
            _ = crate::shutdown::draining(&mut shutdown) => return Ended::Closed("edge is shutting down".into()),
        }
    }
}
