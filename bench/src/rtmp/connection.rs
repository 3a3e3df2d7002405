//! One client connection: TCP connect (with `TCP_NODELAY`, as a low-latency player would), the
//! RTMP handshake, `connect`, `createStream`, `play`/`publish`, and the housekeeping every client
//! owes a server (answering pings, acknowledging received bytes).
//!
//! Everything serialized for the peer goes through one `ChunkSerializer` and is appended to
//! `out` in order, and only [`RtmpConnection::flush`] writes: header compression requires that
//! chunks reach the peer in serialization order, and reading never writes, so reads can be raced
//! against timers without tearing a write in half.

use std::collections::HashMap;

use bytes::Bytes;
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::{MessagePayload, RtmpMessage, UserControlEventType};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::either::Either;

use super::chunk_reader::{ChunkError, ChunkReader, Message, types};
use super::command::{self, ServerCommand, Status};
use super::url::RtmpUrl;

/// Chunk size we send with (the common encoder choice; fewer chunk headers than 128).
const OUT_CHUNK_SIZE: u32 = 4096;
/// Window we announce for the server's acknowledgements of our bytes.
const OUR_ACK_WINDOW: u32 = 2_500_000;

/// Why a connection failed or ended. The `Display` text is what reports count as the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("TCP connect: {0}")]
    Tcp(std::io::Error),
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    #[error("handshake: {0}")]
    Handshake(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("server closed the connection")]
    Closed,
    #[error("connect rejected: {0}")]
    ConnectRejected(String),
    #[error("createStream failed: {0}")]
    CreateStream(String),
    #[error("{0}")]
    Refused(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("timed out before NetStream.Publish.Start")]
    PublishStartTimeout,
}

impl From<ChunkError> for ConnectError {
    fn from(e: ChunkError) -> Self {
        ConnectError::Protocol(e.to_string())
    }
}

/// An established RTMP connection (handshake and `connect` done).
pub struct RtmpConnection {
    stream: Either<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>,
    reader: ChunkReader,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    serializer: ChunkSerializer,
    out: Vec<u8>,
    bytes_in: u64,
    ack_window: u64,
    acked_at: u64,
    next_tx: u32,
    app: String,
    tc_url: String,
}

impl RtmpConnection {
    /// Connects to `url`'s server and application. `buf_size` is the read buffer (it bounds how
    /// much one read takes from the socket); `capture` how many bytes of each media message the
    /// caller gets to see.
    pub async fn open(url: &RtmpUrl, buf_size: usize, capture: usize) -> Result<Self, ConnectError> {
        let stream = TcpStream::connect(url.addr()).await.map_err(ConnectError::Tcp)?;
        stream.set_nodelay(true).map_err(ConnectError::Tcp)?;
        let stream = match url.tls {
            false => Either::Left(stream),
            true => Either::Right(super::tls::connect(&url.host, stream).await.map_err(ConnectError::Tls)?),
        };
        let mut conn = RtmpConnection {
            stream,
            reader: ChunkReader::new(capture),
            buf: vec![0; buf_size.max(4096)],
            start: 0,
            end: 0,
            serializer: ChunkSerializer::new(),
            out: Vec::with_capacity(512),
            bytes_in: 0,
            ack_window: 0,
            acked_at: 0,
            next_tx: 1,
            app: url.app.clone(),
            tc_url: url.tc_url(),
        };
        conn.handshake().await?;
        conn.connect().await?;
        Ok(conn)
    }

    /// Moves the socket to the runtime this is called on: the load tool sets publishers up on a
    /// thread of their own, so that a thousand streams' sends cannot delay the handshake it
    /// times, and sends their media from another. A TLS connection stays registered where it
    /// was opened (that runtime must outlive it).
    pub fn into_current_runtime(mut self) -> std::io::Result<Self> {
        self.stream = match self.stream {
            Either::Left(tcp) => Either::Left(TcpStream::from_std(tcp.into_std()?)?),
            tls => tls,
        };
        Ok(self)
    }

    async fn handshake(&mut self) -> Result<(), ConnectError> {
        let mut hs = Handshake::new(PeerType::Client);
        let c0c1 = hs.generate_outbound_p0_and_p1().map_err(|e| ConnectError::Handshake(e.to_string()))?;
        self.stream.write_all(&c0c1).await?;
        let mut tmp = [0u8; 4096];
        loop {
            let n = self.stream.read(&mut tmp).await?;
            if n == 0 {
                return Err(ConnectError::Closed);
            }
            match hs.process_bytes(&tmp[..n]).map_err(|e| ConnectError::Handshake(e.to_string()))? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    if !response_bytes.is_empty() {
                        self.stream.write_all(&response_bytes).await?;
                    }
                }
                HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                    self.stream.write_all(&response_bytes).await?;
                    // Bytes after S2 are already RTMP chunks.
                    self.buf[..remaining_bytes.len()].copy_from_slice(&remaining_bytes);
                    self.end = remaining_bytes.len();
                    return Ok(());
                }
            }
        }
    }

    async fn connect(&mut self) -> Result<(), ConnectError> {
        let tx = self.take_tx();
        let mut props = HashMap::new();
        let s = |v: &str| Amf0Value::Utf8String(v.to_string());
        props.insert("app".to_string(), s(&self.app));
        props.insert("type".to_string(), s("nonprivate"));
        props.insert("flashVer".to_string(), s("FMLE/3.0 (compatible; streamfleet-bench)"));
        props.insert("tcUrl".to_string(), s(&self.tc_url));
        props.insert("fpad".to_string(), Amf0Value::Boolean(false));
        props.insert("capabilities".to_string(), Amf0Value::Number(15.0));
        props.insert("audioCodecs".to_string(), Amf0Value::Number(3191.0));
        props.insert("videoCodecs".to_string(), Amf0Value::Number(252.0));
        props.insert("videoFunction".to_string(), Amf0Value::Number(1.0));
        props.insert("objectEncoding".to_string(), Amf0Value::Number(0.0));
        self.queue_command("connect", tx, Amf0Value::Object(props), vec![], 0)?;
        self.flush().await?;
        self.wait_command(|c| match c {
            ServerCommand::Result { tx: t, .. } if t == tx => Some(Ok(())),
            ServerCommand::Error { tx: t, status } if t == tx => {
                Some(Err(ConnectError::ConnectRejected(status.reason())))
            }
            ServerCommand::OnStatus(s) if s.is_error() => Some(Err(ConnectError::ConnectRejected(s.reason()))),
            _ => None,
        })
        .await?;
        self.queue(RtmpMessage::WindowAcknowledgement { size: OUR_ACK_WINDOW }, 0)?;
        let packet = self
            .serializer
            .set_max_chunk_size(OUT_CHUNK_SIZE, RtmpTimestamp::new(0))
            .map_err(|e| ConnectError::Protocol(e.to_string()))?;
        self.out.extend_from_slice(&packet.bytes);
        self.flush().await
    }

    /// `createStream`; returns the message stream id the server assigned.
    pub async fn create_stream(&mut self) -> Result<u32, ConnectError> {
        let tx = self.take_tx();
        self.queue_command("createStream", tx, Amf0Value::Null, vec![], 0)?;
        self.flush().await?;
        self.wait_command(|c| match c {
            ServerCommand::Result { tx: t, args } if t == tx => Some(match args.first() {
                // Stream ids are small positive integers sent as AMF0 numbers.
                Some(Amf0Value::Number(n)) if *n >= 0.0 => Ok(*n as u32),
                other => Err(ConnectError::CreateStream(format!("no stream id in the result ({other:?})"))),
            }),
            ServerCommand::Error { tx: t, status } if t == tx => Some(Err(ConnectError::CreateStream(status.reason()))),
            _ => None,
        })
        .await
    }

    /// Sends `play` for `name`; the caller watches for `NetStream.Play.Start` (media may arrive
    /// before it) in its own read loop.
    pub async fn send_play(&mut self, stream_id: u32, name: &str) -> Result<(), ConnectError> {
        self.queue(
            RtmpMessage::UserControl {
                event_type: UserControlEventType::SetBufferLength,
                stream_id: Some(stream_id),
                buffer_length: Some(1000),
                timestamp: None,
            },
            0,
        )?;
        self.queue_command("play", 0, Amf0Value::Null, vec![Amf0Value::Utf8String(name.to_string())], stream_id)?;
        self.flush().await
    }

    /// Sends `publish` (live) for `name` and waits for `NetStream.Publish.Start`; a refusal comes
    /// back with the server's code and description.
    pub async fn publish(&mut self, stream_id: u32, name: &str) -> Result<(), ConnectError> {
        let args = vec![Amf0Value::Utf8String(name.to_string()), Amf0Value::Utf8String("live".into())];
        self.queue_command("publish", 0, Amf0Value::Null, args, stream_id)?;
        self.flush().await?;
        self.wait_command(|c| match c {
            ServerCommand::OnStatus(s) if s.code == "NetStream.Publish.Start" => Some(Ok(())),
            ServerCommand::OnStatus(s) if s.is_error() => Some(Err(ConnectError::Refused(s.reason()))),
            ServerCommand::Error { status, .. } => Some(Err(ConnectError::Refused(status.reason()))),
            _ => None,
        })
        .await
    }

    /// Opens a connection and publishes `url`'s name on a new stream: connect, handshake,
    /// `connect`, `createStream`, `publish`, until `NetStream.Publish.Start`. Returns the
    /// connection and its message stream id.
    pub async fn open_publishing(url: &RtmpUrl, buf_size: usize) -> Result<(Self, u32), ConnectError> {
        let mut conn = RtmpConnection::open(url, buf_size, 0).await?;
        let id = conn.create_stream().await?;
        conn.publish(id, &url.name).await?;
        Ok((conn, id))
    }

    /// Sends `deleteStream`, as a polite client does before hanging up.
    pub async fn delete_stream(&mut self, stream_id: u32) -> Result<(), ConnectError> {
        self.queue_command("deleteStream", 0, Amf0Value::Null, vec![Amf0Value::Number(f64::from(stream_id))], 0)?;
        self.flush().await
    }

    /// Queues `@setDataFrame` with an FLV script body (`onMetaData`, ...) as its payload.
    pub fn queue_metadata(&mut self, stream_id: u32, script_body: &[u8]) -> Result<(), ConnectError> {
        let mut data = Vec::with_capacity(16 + script_body.len());
        data.extend_from_slice(&[0x02, 0x00, 13]);
        data.extend_from_slice(b"@setDataFrame");
        data.extend_from_slice(script_body);
        self.queue_raw(types::DATA_AMF0, 0, stream_id, Bytes::from(data))
    }

    /// Queues an audio/video message.
    pub fn queue_media(
        &mut self,
        type_id: u8,
        timestamp: u32,
        stream_id: u32,
        data: Bytes,
    ) -> Result<(), ConnectError> {
        self.queue_raw(type_id, timestamp, stream_id, data)
    }

    fn queue_raw(&mut self, type_id: u8, timestamp: u32, stream_id: u32, data: Bytes) -> Result<(), ConnectError> {
        let payload =
            MessagePayload { timestamp: RtmpTimestamp::new(timestamp), type_id, message_stream_id: stream_id, data };
        let packet =
            self.serializer.serialize(&payload, false, false).map_err(|e| ConnectError::Protocol(e.to_string()))?;
        self.out.extend_from_slice(&packet.bytes);
        Ok(())
    }

    fn queue(&mut self, msg: RtmpMessage, stream_id: u32) -> Result<(), ConnectError> {
        let payload = msg
            .into_message_payload(RtmpTimestamp::new(0), stream_id)
            .map_err(|e| ConnectError::Protocol(e.to_string()))?;
        let packet =
            self.serializer.serialize(&payload, false, false).map_err(|e| ConnectError::Protocol(e.to_string()))?;
        self.out.extend_from_slice(&packet.bytes);
        Ok(())
    }

    fn queue_command(
        &mut self,
        name: &str,
        tx: u32,
        object: Amf0Value,
        args: Vec<Amf0Value>,
        stream_id: u32,
    ) -> Result<(), ConnectError> {
        let msg = RtmpMessage::Amf0Command {
            command_name: name.to_string(),
            transaction_id: f64::from(tx),
            command_object: object,
            additional_arguments: args,
        };
        self.queue(msg, stream_id)
    }

    fn take_tx(&mut self) -> u32 {
        let tx = self.next_tx;
        self.next_tx += 1;
        tx
    }

    /// Writes everything queued, in order.
    pub async fn flush(&mut self) -> Result<(), ConnectError> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// True when replies (pongs, acknowledgements) are waiting for [`Self::flush`].
    pub fn has_queued(&self) -> bool {
        !self.out.is_empty()
    }

    /// Reads once from the socket and hands every completed message to `on_message`, after
    /// handling pings and acknowledgement windows itself (replies are queued, not written).
    /// Returns the number of bytes read. Cancel-safe: nothing is lost if the future is dropped.
    pub async fn read_messages(&mut self, mut on_message: impl FnMut(Message<'_>)) -> Result<usize, ConnectError> {
        if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(ConnectError::Closed);
        }
        self.end += n;
        self.bytes_in += n as u64;
        let mut pings: Vec<[u8; 4]> = Vec::new();
        let mut window = None;
        let used = self.reader.feed(&self.buf[self.start..self.end], |m| {
            match m.type_id {
                types::USER_CONTROL if m.data.len() >= 6 && m.data[..2] == [0, 6] => {
                    pings.push([m.data[2], m.data[3], m.data[4], m.data[5]]);
                }
                types::WINDOW_ACK_SIZE if m.data.len() >= 4 => {
                    window = Some(u32::from_be_bytes([m.data[0], m.data[1], m.data[2], m.data[3]]));
                }
                _ => {}
            }
            on_message(m);
        })?;
        self.start += used;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        for ts in pings {
            let ts = RtmpTimestamp::new(u32::from_be_bytes(ts));
            self.queue(
                RtmpMessage::UserControl {
                    event_type: UserControlEventType::PingResponse,
                    stream_id: None,
                    buffer_length: None,
                    timestamp: Some(ts),
                },
                0,
            )?;
        }
        if let Some(w) = window {
            self.ack_window = u64::from(w);
        }
        if self.ack_window > 0 && self.bytes_in - self.acked_at >= self.ack_window {
            self.acked_at = self.bytes_in;
            // The sequence number is the byte count so far, wrapping at 2^32 as the spec says.
            self.queue(RtmpMessage::Acknowledgement { sequence_number: self.bytes_in as u32 }, 0)?;
        }
        Ok(n)
    }

    /// Reads until `pick` accepts a server command (other messages are dropped), writing any
    /// replies the reads produced.
    async fn wait_command<T>(
        &mut self,
        mut pick: impl FnMut(ServerCommand) -> Option<Result<T, ConnectError>>,
    ) -> Result<T, ConnectError> {
        loop {
            let mut commands = Vec::new();
            let mut bad = None;
            self.read_messages(|m| {
                if m.type_id == types::COMMAND_AMF0 {
                    match command::decode(m.data) {
                        Ok(c) => commands.push(c),
                        Err(e) => bad = Some(e),
                    }
                }
            })
            .await?;
            self.flush().await?;
            if let Some(e) = bad {
                return Err(ConnectError::Protocol(e));
            }
            for c in commands {
                if let Some(r) = pick(c) {
                    return r;
                }
            }
        }
    }

    /// Total bytes received on this connection (RTMP chunks, after the handshake).
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    /// Closes the write side; the server sees a clean disconnect.
    pub async fn shutdown(mut self) {
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }
}

/// Decodes a server status from a command body, for callers with their own read loops.
pub fn status_of_command(body: &[u8]) -> Option<Status> {
    match command::decode(body) {
        Ok(ServerCommand::OnStatus(s)) => Some(s),
        Ok(ServerCommand::Error { status, .. }) => Some(status),
        _ => None,
    }
}
