//! The session handle ([`Session`]): one connection's socket read half, its sans-IO
//! [`Connection`](super::protocol::Connection) and its [`Outbox`], as the role serving the
//! connection (publisher, player, relay pull) drives them. It reads and feeds the protocol,
//! queues the protocol's output in order, and names the steps every role takes the same way:
//! [`Session::accept`] the pending request, [`Session::reject`] it, or
//! [`Session::close_with`] a final status. Why a connection ended is an [`Ended`].

use std::{collections::VecDeque, net::SocketAddr, sync::Arc};

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    errors::ConnError,
    events::{Event, Output},
    protocol::Connection,
};
use crate::{
    fanout::{CloseReason, Outbox},
    observe::{
        Metrics, SessionInfo, SessionRole,
        log_text::{refusal_logged, shown},
    },
    rtmp::{
        chunk_reader::ChunkError,
        messages::{self, Level},
    },
    transport::reader::Reader,
};

/// Reads of a new connection go through a stack buffer of this size, so a connection that
/// sends little (a player: acks, pings) holds no read buffer of its own between reads.
const READ_BUF_SMALL: usize = 4 * 1024;
/// A connection whose reads fill the small buffer (a publisher) reads straight into the
/// protocol's input buffer from then on, which a read fills up to this many bytes. Every page
/// of it a read ever touched stays resident for the connection's life: 64 KiB cost 1,000
/// publishers of 1 Mbit/s about 20 KiB more RSS each than 8 KiB, for no CPU measurable per GB
/// (docs/benchmarks.md, "Memory per publisher").
const READ_BUF_MAX: usize = 8 * 1024;
/// The most room one read makes for the rest of a large chunk; a larger rest grows the buffer
/// by doubling as it arrives.
const READ_ROOM_MAX: usize = 1024 * 1024;

/// Why a connection ended.
#[derive(Debug)]
pub(crate) enum Ended {
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
    /// Why, in a few words, for the line that ends an admitted session (client text escaped).
    pub(crate) fn summary(&self) -> String {
        match self {
            Ended::Eof => "peer closed the connection".into(),
            Ended::Closed(why) => shown(why).to_string(),
            Ended::Protocol(e) => format!("bad input: {}", shown(&e.to_string())),
            Ended::Io(e) => format!("I/O error: {e}"),
            Ended::Outbox(reason) => format!("writer stopped: {reason:?}"),
        }
    }

    /// Logs the end at a level matching how unusual it is and counts protocol errors.
    pub(crate) fn record(&self, metrics: &Metrics) {
        match self {
            Ended::Eof => tracing::debug!("peer closed the connection"),
            Ended::Closed(why) => {
                if refusal_logged() {
                    tracing::info!(reason = %shown(why), "connection closed");
                }
            }
            Ended::Protocol(e) => {
                metrics.protocol_errors.with_label_values(&[e.label()]).inc();
                if matches!(e, ConnError::Handshake(_)) {
                    metrics.handshake_failures.inc();
                }
                if refusal_logged() {
                    tracing::info!(error = %shown(&e.to_string()), "closing connection on bad input");
                }
            }
            Ended::Io(e) => tracing::debug!(error = %e, "connection I/O error"),
            Ended::Outbox(reason) => tracing::info!(reason = ?reason, "connection writer stopped"),
        }
    }
}

/// The session handle: a connection's read side (TCP or TLS), protocol state and outbox.
pub(crate) struct Session {
    read: Reader,
    /// Set once a read fills [`READ_BUF_SMALL`]: reads go into the protocol's input buffer.
    heavy: bool,
    pub(crate) conn: Connection,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) info: Arc<SessionInfo>,
    pub(crate) metrics: Arc<Metrics>,
    /// What the protocol answered the last read, emptied as it is applied and kept for the
    /// next read: steady-state reads allocate nothing for their outputs.
    outs: Vec<Output>,
    events: VecDeque<Event>,
    pub(crate) remote: SocketAddr,
}

impl Session {
    pub(crate) fn new(
        read: Reader,
        conn: Connection,
        outbox: Arc<Outbox>,
        info: Arc<SessionInfo>,
        metrics: Arc<Metrics>,
        remote: SocketAddr,
    ) -> Session {
        Session { read, heavy: false, conn, outbox, info, metrics, outs: Vec::new(), events: VecDeque::new(), remote }
    }

    /// Queues outputs: bytes go to the outbox in order, events to the event queue. A `Close`
    /// output ends the connection once what came before it is queued.
    pub(crate) fn apply(&mut self, outs: Vec<Output>) -> Result<(), Ended> {
        self.outs.extend(outs);
        self.apply_outs()
    }

    /// [`apply`](Self::apply) for the outputs the protocol appended to `self.outs`.
    fn apply_outs(&mut self) -> Result<(), Ended> {
        let mut outs = std::mem::take(&mut self.outs);
        let applied = outs.drain(..).try_for_each(|o| self.apply_one(o));
        // The vector goes back emptied (`drain` drops what an early `Close` left) with its capacity.
        self.outs = outs;
        applied
    }

    fn apply_one(&mut self, o: Output) -> Result<(), Ended> {
        match o {
            Output::Send(b) => self.send(b),
            Output::Event(e) => {
                self.events.push_back(e);
                Ok(())
            }
            Output::Close(why) => Err(Ended::Closed(why)),
        }
    }

    pub(crate) fn send(&self, bytes: Bytes) -> Result<(), Ended> {
        if self.outbox.push_control(bytes) {
            Ok(())
        } else {
            Err(Ended::Outbox(self.outbox.closed_reason().unwrap_or(CloseReason::ControlOverflow)))
        }
    }

    /// Reads once and feeds the protocol. Cancel-safe: a read either completes and is fed
    /// (nothing is awaited after it), or nothing was read.
    async fn read_once(&mut self) -> Result<(), Ended> {
        let wanted = self.conn.input_wanted();
        if self.heavy
            && let Some(input) = self.conn.input_buffer()
        {
            let n = read_appending(&mut self.read, input, wanted).await.map_err(Ended::Io)?;
            self.received(n)?;
            return self.apply_outs();
        }
        loop {
            self.read.readable().await.map_err(Ended::Io)?;
            // Not held across an await: it is no part of the connection's future.
            let mut stack = [0u8; READ_BUF_SMALL];
            match self.read.try_read(&mut stack) {
                Ok(n) => {
                    self.received_small(&stack, n)?;
                    return self.apply_outs();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(Ended::Io(e)),
            }
        }
    }

    /// Feeds `n` bytes just read into the stack buffer; a read that filled it means a
    /// connection that sends a lot (a publisher), which reads into the protocol's input buffer
    /// from now on.
    fn received_small(&mut self, stack: &[u8; READ_BUF_SMALL], n: usize) -> Result<(), Ended> {
        if n == 0 {
            return Err(Ended::Eof);
        }
        self.count(n);
        let fed = self.conn.feed_into(&stack[..n], &mut self.outs);
        self.fed(fed)?;
        self.heavy |= n == READ_BUF_SMALL;
        Ok(())
    }

    /// Feeds `n` bytes a read appended to the protocol's input buffer.
    fn received(&mut self, n: usize) -> Result<(), Ended> {
        if n == 0 {
            return Err(Ended::Eof);
        }
        self.count(n);
        let fed = self.conn.fed(n, &mut self.outs);
        self.fed(fed)
    }

    /// What a feed that failed had output before it failed is never applied.
    fn fed(&mut self, fed: Result<(), ConnError>) -> Result<(), Ended> {
        fed.map_err(|e| {
            self.outs.clear();
            self.refused(e)
        })
    }

    /// Input refused: a command too large to parse (an over-long stream name or key, say) is
    /// answered with an error status saying so before the connection closes.
    fn refused(&self, e: ConnError) -> Ended {
        if let ConnError::Chunk(ChunkError::CommandTooLarge { len, max, stream_id }) = &e {
            let description = format!(
                "command of {len} bytes is larger than this edge accepts ({max} bytes): stream names and keys must be shorter"
            );
            let _ = self.send(messages::on_status(*stream_id, Level::Error, "NetStream.Failed", &description));
        }
        Ended::Protocol(e)
    }

    fn count(&self, n: usize) {
        self.metrics.bytes_received.rtmp.inc_by(n as u64);
        self.info.bytes_received.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// The next protocol event. Cancel-safe: use it in `select!`.
    pub(crate) async fn next_event(&mut self) -> Result<Event, Ended> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(e);
            }
            self.read_once().await?;
        }
    }

    /// Keeps reading while a publish/play decision is pending (the protocol buffers the bytes,
    /// bounded), so a client that gives up is noticed. Resolves only when the connection ends.
    pub(crate) async fn until_closed_while_pending(&mut self) -> Ended {
        loop {
            if let Err(e) = self.read_once().await {
                return e;
            }
        }
    }

    /// Rejects the pending request with an error status and ends the connection.
    pub(crate) fn reject(&mut self, code: &str, description: &str) -> Ended {
        let outs = self.conn.reject(code, description);
        match self.apply(outs) {
            Err(e) => e,
            Ok(()) => Ended::Closed(description.to_string()),
        }
    }

    /// The connection has become a publisher or player of `stream`: the session table shows it
    /// and the connection's span (`conn`) carries the stream from here on.
    pub(crate) fn set_role(&self, role: SessionRole, stream: String, playback: String) {
        tracing::Span::current().record("stream", stream.as_str());
        self.info.set_role(role, Some(stream), Some(playback));
    }

    /// Accepts the pending publish or play: the protocol's answer (`Publish.Start` or
    /// `Play.Start` and what goes with it) is queued.
    pub(crate) fn accept(&mut self) -> Result<(), Ended> {
        let outs = self.conn.accept().map_err(Ended::Protocol)?;
        self.apply(outs)
    }

    /// Ends an accepted session with a final status: the status is queued (the outbox writes it
    /// before it closes) and the connection ends as `Closed(why)`.
    pub(crate) fn close_with(&mut self, level: Level, code: &str, description: &str, why: &str) -> Ended {
        let bytes = self.conn.status(level, code, description);
        match self.send(bytes) {
            Err(e) => e,
            Ok(()) => Ended::Closed(why.to_string()),
        }
    }

    /// Lets the socket gather `bytes` before it wakes a read (a publisher's pacing, see
    /// `publish/read_pacing.rs`).
    pub(crate) fn wake_after(&self, bytes: usize) -> std::io::Result<()> {
        self.read.wake_after(bytes)?;
        let shown = u32::try_from(bytes).unwrap_or(u32::MAX);
        self.info.read_low_water.store(shown, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    pub(crate) async fn handshake(&mut self) -> Result<(), Ended> {
        while !self.conn.handshake_done() {
            self.read_once().await?;
        }
        Ok(())
    }
}

/// Reads into the protocol's input buffer, up to [`READ_BUF_MAX`] bytes buffered (at least
/// [`READ_BUF_SMALL`] of room): the buffer keeps one size, moving what was left unparsed to its
/// front instead of growing, once the bytes handed on from it are dropped. A chunk larger than
/// that (a peer may announce a chunk size of megabytes) gets room for what it still lacks,
/// `wanted` (up to [`READ_ROOM_MAX`]), at once: growing by small reads would leave a trail of
/// freed buffers of every size behind. Cancel-safe: only the buffer's capacity may have changed.
async fn read_appending(read: &mut Reader, input: &mut BytesMut, wanted: usize) -> std::io::Result<usize> {
    let room = READ_BUF_MAX.saturating_sub(input.len()).max(READ_BUF_SMALL).max(wanted.min(READ_ROOM_MAX));
    input.reserve(room);
    read.read_buf(&mut input.limit(room)).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rml_amf0::Amf0Value;
    use tokio::{
        io::AsyncWriteExt,
        net::{TcpListener, TcpStream},
    };

    use super::*;
    use crate::{
        connection::{config::ProtocolConfig, fuzz_harness::canned_handshake},
        fanout::OutboxLimits,
        observe::SessionTable,
        rtmp::{chunk_writer::serialize_message, msg_type},
    };

    fn command(name: &str, transaction: f64, stream_id: u32, args: Vec<Amf0Value>) -> Bytes {
        let mut values = vec![Amf0Value::Utf8String(name.into()), Amf0Value::Number(transaction)];
        values.extend(args);
        let body = rml_amf0::serialize(&values).unwrap();
        serialize_message(3, msg_type::AMF0_COMMAND, stream_id, 0, &body, 128)
    }

    /// A session on the server side of a loopback connection, and the client side.
    async fn session() -> (Session, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, remote) = listener.accept().await.unwrap();
        let (read, _write) = server.into_split();
        // The table's entry goes with the guard; the session keeps its info.
        let info = SessionTable::new().open(remote, "rtmp").info.clone();
        let outbox = Outbox::new(OutboxLimits::new(1 << 20, Duration::from_secs(5)));
        let metrics = Arc::new(Metrics::new().unwrap());
        let conn = Connection::new(ProtocolConfig::default());
        (Session::new(Reader::Tcp(read), conn, outbox, info, metrics, remote), client)
    }

    /// A publisher's bytes, written in pieces that split chunk headers and payloads anywhere,
    /// reach the session as the same messages once it reads straight into the protocol's input
    /// buffer (its reads fill the small buffer), and every byte is counted once.
    #[tokio::test]
    async fn a_publisher_read_into_the_input_buffer_gets_every_message_intact() {
        let (mut io, mut client) = session().await;
        let mut hello = canned_handshake();
        let app = [("app".to_string(), Amf0Value::Utf8String("live".into()))].into_iter().collect();
        hello.extend_from_slice(&command("connect", 1.0, 0, vec![Amf0Value::Object(app)]));
        hello.extend_from_slice(&command("createStream", 2.0, 0, vec![Amf0Value::Null]));
        hello.extend_from_slice(&command(
            "publish",
            3.0,
            1,
            vec![Amf0Value::Null, Amf0Value::Utf8String("key".into()), Amf0Value::Utf8String("live".into())],
        ));
        client.write_all(&hello).await.unwrap();
        loop {
            match io.next_event().await.unwrap() {
                Event::PublishRequested { key } => break assert_eq!(key, "key"),
                _ => continue,
            }
        }
        io.accept().unwrap();

        let payloads: Vec<Vec<u8>> =
            (0..60usize).map(|i| (0..(i * 997) % 20_000 + 1).map(|j| (i * 31 + j) as u8).collect()).collect();
        let mut wire = serialize_message(2, msg_type::SET_CHUNK_SIZE, 0, 0, &4096u32.to_be_bytes(), 128).to_vec();
        for (i, p) in payloads.iter().enumerate() {
            wire.extend_from_slice(&serialize_message(6, msg_type::VIDEO, 1, i as u32 * 33, p, 4096));
        }
        let writer = tokio::spawn({
            let wire = wire.clone();
            async move {
                let mut rest = &wire[..];
                let mut piece = 1;
                while !rest.is_empty() {
                    let (now, later) = rest.split_at(piece.min(rest.len()));
                    client.write_all(now).await.unwrap();
                    client.flush().await.unwrap();
                    tokio::time::sleep(Duration::from_micros(200)).await;
                    rest = later;
                    piece = piece * 7 % 9_973 + 1;
                }
                client
            }
        });
        for (i, p) in payloads.iter().enumerate() {
            let Event::Media(m) = io.next_event().await.unwrap() else { panic!("not media") };
            assert_eq!((m.timestamp, &m.payload[..]), (i as u32 * 33, &p[..]), "message {i}");
        }
        assert!(io.heavy, "a publisher's reads go straight into the input buffer");
        let sent = hello.len() + wire.len();
        assert_eq!(io.info.bytes_received.load(std::sync::atomic::Ordering::Relaxed), sent as u64);
        drop(writer.await.unwrap());
        assert!(matches!(io.next_event().await, Err(Ended::Eof)));
    }
}
