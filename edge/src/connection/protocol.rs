//! One RTMP connection as a sans-IO state machine: bytes in, bytes to send and events out.
//!
//! Inbound path: `rml_rtmp` handshake → [`ChunkReader`] (limits, reassembly) → per message:
//! protocol control handled here, audio/video/script data turned into [`Media`] events for an
//! admitted publisher, and commands validated ([`amf0_guard`]) then re-serialized into
//! `rml_rtmp`'s [`ServerSession`], which runs the connect/createStream/publish/play state
//! machine and produces its responses. Only validated, well-formed commands ever reach the
//! session, and every call into `rml_rtmp` is additionally wrapped in `catch_unwind`: a
//! malformed connection ends that connection, never the process.
//!
//! Publish and play requests need the registry (async), so they suspend input processing until
//! the session handle calls [`Connection::accept`] or [`Connection::reject`]; bytes arriving
//! meanwhile are buffered (bounded). The fuzz target drives this type directly.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use rml_amf0::Amf0Value;
use rml_rtmp::{
    chunk_io::ChunkSerializer,
    handshake::{Handshake, HandshakeProcessResult, PeerType},
    messages::MessagePayload,
    sessions::{ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult},
    time::RtmpTimestamp,
};

use super::{
    config::ProtocolConfig,
    errors::ConnError,
    events::{Event, Output},
};
use crate::{
    media::{Media, MediaKind},
    rtmp::{
        OUT_CHUNK_SIZE, amf0_guard,
        chunk_reader::{ChunkReader, Message},
        messages::{self, Level},
        msg_type,
    },
};

/// The chunk stream rml_rtmp's serializer uses for data messages (types 18/19).
const SESSION_DATA_CSID: u8 = 3;

/// The decision a pending request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    Publish { request_id: u32, stream_id: u32 },
    Play { request_id: u32, stream_id: u32 },
}

/// What this connection has become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Unknown,
    Waiting(Pending),
    Publishing { stream_id: u32 },
    Playing { stream_id: u32 },
    Closed,
}

struct Session {
    session: ServerSession,
    /// Re-serializes validated commands for the session's own deserializer (both sides start at
    /// chunk size 128 and never change, so they stay in step).
    feeder: ChunkSerializer,
    reader: ChunkReader,
}

enum Phase {
    Handshake(Box<Handshake>),
    Session(Box<Session>),
    /// A player after its `play` was accepted: `rml_rtmp`'s session (several KiB per
    /// connection, most of it a 4 KiB input buffer) is dropped, and the few commands a player
    /// still sends are handled here (see [`Connection::player_command`]).
    Playing(ChunkReader),
}

/// One RTMP connection's protocol state.
pub struct Connection {
    config: ProtocolConfig,
    phase: Phase,
    role: Role,
    /// flashVer/tcUrl of the last `connect`, reported with `Connected`.
    connect_info: (Option<String>, Option<String>),
    /// Transaction id of the last `connect`, for an `_error` answer of our own.
    connect_transaction: f64,
    /// Acknowledgement window the peer asked for (`None` until it sends one).
    peer_ack_window: Option<u32>,
    received_total: u64,
    received_since_ack: u64,
}

fn guarded<T>(what: &'static str, f: impl FnOnce() -> T) -> Result<T, ConnError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| ConnError::Panic(what))
}

impl Connection {
    pub fn new(config: ProtocolConfig) -> Self {
        Connection {
            config,
            phase: Phase::Handshake(Box::new(Handshake::new(PeerType::Server))),
            role: Role::Unknown,
            connect_info: (None, None),
            connect_transaction: 1.0,
            peer_ack_window: None,
            received_total: 0,
            received_since_ack: 0,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the handshake is done (the handshake timeout no longer applies).
    pub fn handshake_done(&self) -> bool {
        !matches!(self.phase, Phase::Handshake(_))
    }

    /// Feeds received bytes. While a decision is pending the bytes are only buffered.
    pub fn feed(&mut self, input: &[u8]) -> Result<Vec<Output>, ConnError> {
        let mut out = Vec::new();
        self.feed_into(input, &mut out)?;
        Ok(out)
    }

    /// [`feed`](Self::feed), appending the outputs to `out`: a caller that keeps one vector
    /// for all its reads allocates nothing for outputs once it has grown.
    pub fn feed_into(&mut self, input: &[u8], out: &mut Vec<Output>) -> Result<(), ConnError> {
        if self.role == Role::Closed {
            return Err(ConnError::Closed);
        }
        match &mut self.phase {
            Phase::Handshake(hs) => {
                let result = guarded("handshake", || hs.process_bytes(input))?
                    .map_err(|e| ConnError::Handshake(e.to_string()))?;
                match result {
                    HandshakeProcessResult::InProgress { response_bytes } => {
                        if !response_bytes.is_empty() {
                            out.push(Output::Send(Bytes::from(response_bytes)));
                        }
                    }
                    HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                        if !response_bytes.is_empty() {
                            out.push(Output::Send(Bytes::from(response_bytes)));
                        }
                        let config = ServerSessionConfig { chunk_size: OUT_CHUNK_SIZE, ..ServerSessionConfig::new() };
                        let (session, initial) = guarded("session start", || ServerSession::new(config))?
                            .map_err(|e| ConnError::Session(e.to_string()))?;
                        push_results(out, initial);
                        let mut reader = ChunkReader::with_budget(self.config.limits, self.config.budget.clone());
                        reader.push(&remaining_bytes);
                        reader.charge()?;
                        self.count_received(remaining_bytes.len(), out);
                        self.phase =
                            Phase::Session(Box::new(Session { session, feeder: ChunkSerializer::new(), reader }));
                        self.process(out)?;
                    }
                }
            }
            Phase::Session(_) | Phase::Playing(_) => {
                let Some(reader) = self.reader() else { return Err(ConnError::Closed) };
                reader.push(input);
                self.buffered(input.len(), out)?;
            }
        }
        Ok(())
    }

    /// The chunk reader's input, for a read straight into it (no copy through a read buffer of
    /// the caller's); `None` during the handshake and once closed. Bytes appended to it must be
    /// announced with [`fed`](Self::fed) at once: only that applies the limits and the acks.
    pub fn input_buffer(&mut self) -> Option<&mut BytesMut> {
        if self.role == Role::Closed {
            return None;
        }
        self.reader().map(ChunkReader::input)
    }

    /// Bytes the chunk reader's input still lacks for the chunk it stopped at (0: unknown), so
    /// a read can make room for all of them at once.
    pub fn input_wanted(&mut self) -> usize {
        self.reader().map_or(0, |r| r.wanted())
    }

    /// [`feed_into`](Self::feed_into) for `n` bytes a read appended to
    /// [`input_buffer`](Self::input_buffer): the same limits, acks and parsing.
    pub fn fed(&mut self, n: usize, out: &mut Vec<Output>) -> Result<(), ConnError> {
        if self.role == Role::Closed {
            return Err(ConnError::Closed);
        }
        self.buffered(n, out)
    }

    /// What follows `n` new bytes in the chunk reader's input: the budget and the pending limit
    /// are checked, the bytes counted (acks), and the input parsed unless a decision is pending.
    fn buffered(&mut self, n: usize, out: &mut Vec<Output>) -> Result<(), ConnError> {
        let Some(reader) = self.reader() else { return Err(ConnError::Closed) };
        let buffered = reader.buffered();
        reader.charge()?;
        self.count_received(n, out);
        if matches!(self.role, Role::Waiting(_)) {
            if buffered > self.config.max_pending_input {
                return Err(ConnError::PendingInputOverflow(buffered));
            }
            return Ok(());
        }
        self.process(out)?;
        // What was parsed no longer counts towards the shared budget.
        if let Some(reader) = self.reader() {
            reader.charge()?;
        }
        Ok(())
    }

    /// The request waiting for a decision, if any.
    pub fn pending(&self) -> Option<Pending> {
        match self.role {
            Role::Waiting(p) => Some(p),
            _ => None,
        }
    }

    /// Accepts the pending publish or play: sends the session's start responses, then resumes
    /// processing the input buffered meanwhile.
    pub fn accept(&mut self) -> Result<Vec<Output>, ConnError> {
        let Some(pending) = self.pending() else { return Err(ConnError::Session("no request is pending".into())) };
        let Phase::Session(s) = &mut self.phase else { return Err(ConnError::Closed) };
        let (request_id, role) = match pending {
            Pending::Publish { request_id, stream_id } => (request_id, Role::Publishing { stream_id }),
            Pending::Play { request_id, stream_id } => (request_id, Role::Playing { stream_id }),
        };
        let results = guarded("accept", || s.session.accept_request(request_id))?
            .map_err(|e| ConnError::Session(e.to_string()))?;
        let mut out = Vec::new();
        if let Role::Playing { stream_id } = role {
            // rml_rtmp follows Play.Start with two data messages stamped with its session clock
            // (|RtmpSampleAccess and onStatus NetStream.Data.Start). FFmpeg's FLV demuxer turns
            // script data with a non-zero timestamp into extra subtitle/data streams, so they are
            // replaced by |RtmpSampleAccess at timestamp 0. They are the only messages the
            // session writes on its data chunk stream, so leaving them out cannot desynchronise
            // its header compression.
            let results = results.into_iter().filter(|r| match r {
                ServerSessionResult::OutboundResponse(p) => {
                    p.bytes.first().map(|b| b & 0x3f) != Some(SESSION_DATA_CSID)
                }
                _ => true,
            });
            push_results(&mut out, results.collect());
            out.push(Output::Send(messages::sample_access(stream_id)));
        } else {
            push_results(&mut out, results);
        }
        self.role = role;
        if matches!(role, Role::Publishing { .. }) {
            s.reader.admit_publisher();
        }
        if matches!(role, Role::Playing { .. })
            && let Phase::Session(s) =
                std::mem::replace(&mut self.phase, Phase::Playing(ChunkReader::new(self.config.limits)))
        {
            // The reader keeps its state (chunk size, partial messages, buffered input).
            self.phase = Phase::Playing(s.reader);
        }
        self.process(&mut out)?;
        if let Some(reader) = self.reader() {
            reader.charge()?;
        }
        Ok(out)
    }

    fn reader(&mut self) -> Option<&mut ChunkReader> {
        match &mut self.phase {
            Phase::Session(s) => Some(&mut s.reader),
            Phase::Playing(reader) => Some(reader),
            Phase::Handshake(_) => None,
        }
    }

    /// Rejects the pending request with `onStatus(level=error, code, description)` and closes.
    pub fn reject(&mut self, code: &str, description: &str) -> Vec<Output> {
        let stream_id = match self.pending() {
            Some(Pending::Publish { stream_id, .. } | Pending::Play { stream_id, .. }) => stream_id,
            None => 0,
        };
        self.role = Role::Closed;
        vec![
            Output::Send(messages::on_status(stream_id, Level::Error, code, description)),
            Output::Close(format!("{code}: {description}")),
        ]
    }

    /// An `onStatus` on the publisher's or player's message stream (e.g. a drop notice).
    pub fn status(&self, level: Level, code: &str, description: &str) -> Bytes {
        let stream_id = match self.role {
            Role::Publishing { stream_id } | Role::Playing { stream_id } => stream_id,
            Role::Waiting(Pending::Publish { stream_id, .. } | Pending::Play { stream_id, .. }) => stream_id,
            _ => 0,
        };
        messages::on_status(stream_id, level, code, description)
    }

    /// Marks the connection closed: later input is refused.
    pub fn close(&mut self) {
        self.role = Role::Closed;
    }

    fn count_received(&mut self, n: usize, out: &mut Vec<Output>) {
        self.received_total += n as u64;
        self.received_since_ack += n as u64;
        if let Some(ack_window) = self.peer_ack_window
            && self.received_since_ack >= u64::from(ack_window)
        {
            self.received_since_ack = 0;
            // The sequence number is the byte count mod 2^32, as the spec defines it.
            out.push(Output::Send(messages::acknowledgement(self.received_total as u32)));
        }
    }

    /// Parses buffered input until it runs out or a decision becomes pending.
    fn process(&mut self, out: &mut Vec<Output>) -> Result<(), ConnError> {
        loop {
            if !matches!(self.role, Role::Unknown | Role::Publishing { .. } | Role::Playing { .. }) {
                return Ok(());
            }
            let Some(reader) = self.reader() else { return Ok(()) };
            let Some(msg) = reader.next_message()? else { return Ok(()) };
            self.handle(msg, out)?;
        }
    }

    fn handle(&mut self, msg: Message, out: &mut Vec<Output>) -> Result<(), ConnError> {
        match msg.type_id {
            msg_type::WINDOW_ACK_SIZE if msg.payload.len() >= 4 => {
                let size = u32::from_be_bytes([msg.payload[0], msg.payload[1], msg.payload[2], msg.payload[3]]);
                // A tiny ack window would make every read answer with an ack; no client needs that.
                self.peer_ack_window = Some(size.max(4096));
            }
            // PingRequest (6): answer with PingResponse carrying the same timestamp.
            msg_type::USER_CONTROL if msg.payload.len() >= 6 && msg.payload[..2] == [0, 6] => {
                let ts = u32::from_be_bytes([msg.payload[2], msg.payload[3], msg.payload[4], msg.payload[5]]);
                out.push(Output::Send(messages::ping_response(ts)));
            }
            msg_type::AUDIO | msg_type::VIDEO => {
                if matches!(self.role, Role::Publishing { .. }) {
                    let kind = if msg.type_id == msg_type::AUDIO { MediaKind::Audio } else { MediaKind::Video };
                    out.push(Output::Event(Event::Media(Media {
                        kind,
                        timestamp: msg.timestamp,
                        payload: msg.payload,
                    })));
                }
            }
            msg_type::AMF0_DATA => {
                if matches!(self.role, Role::Publishing { .. })
                    && let Some(media) = script_data(msg.timestamp, msg.payload)?
                {
                    out.push(Output::Event(Event::Media(media)));
                }
            }
            msg_type::AMF0_COMMAND | msg_type::AMF3_COMMAND => {
                let mut payload = msg.payload;
                if msg.type_id == msg_type::AMF3_COMMAND && payload.first() == Some(&0) {
                    // AMF3 command messages from Flash-era clients carry AMF0 after a zero byte.
                    payload = payload.slice(1..);
                }
                self.command(msg.stream_id, payload, out)?;
            }
            // SetChunkSize and Abort were applied by the reader; acks, peer bandwidth and other
            // types need nothing from an edge.
            _ => {}
        }
        Ok(())
    }

    fn command(&mut self, stream_id: u32, payload: Bytes, out: &mut Vec<Output>) -> Result<(), ConnError> {
        // The reader bounded the size (--max-command-size); this bounds the values, so what
        // the two parses below allocate is bounded too.
        amf0_guard::check_at_most(&payload, self.config.max_command_values)?;
        let values = guarded("amf0", || rml_amf0::deserialize(&mut std::io::Cursor::new(&payload[..])))?
            .map_err(|e| ConnError::Session(format!("AMF0: {e}")))?;
        // rml_rtmp indexes the first three values without checking (it panics on fewer), so
        // anything that is not [name, transaction id, object, ...] stops here.
        let name = match (values.first(), values.get(1), values.get(2)) {
            (Some(Amf0Value::Utf8String(name)), Some(Amf0Value::Number(_)), Some(_)) => name.clone(),
            _ => return Err(ConnError::Session("command is not [name, transaction id, object, ...]".into())),
        };
        if name == "connect" {
            self.connect_info = connect_info(&values);
            if let Some(Amf0Value::Number(t)) = values.get(1) {
                self.connect_transaction = *t;
            }
        }
        if matches!(self.phase, Phase::Playing(_)) {
            self.player_command(&name, stream_id, &values, out);
            return Ok(());
        }
        let Phase::Session(s) = &mut self.phase else { return Err(ConnError::Closed) };
        let message = MessagePayload {
            timestamp: RtmpTimestamp::new(0),
            type_id: msg_type::AMF0_COMMAND,
            message_stream_id: stream_id,
            data: payload,
        };
        let packet = s.feeder.serialize(&message, false, false).map_err(|e| ConnError::Session(e.to_string()))?;
        let results = guarded("session input", || s.session.handle_input(&packet.bytes))?
            .map_err(|e| ConnError::Session(e.to_string()))?;
        for result in results {
            match result {
                ServerSessionResult::OutboundResponse(p) => out.push(Output::Send(Bytes::from(p.bytes))),
                ServerSessionResult::RaisedEvent(event) => self.session_event(event, stream_id, out)?,
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(())
    }

    /// A command from a player whose play was accepted, as `rml_rtmp` would treat it:
    /// `closeStream`/`deleteStream` of the played stream end the play; a second `play` or a
    /// `publish` is refused (one role per connection); anything else needs no answer from an
    /// edge (`rml_rtmp` raises nothing for it either).
    fn player_command(&mut self, name: &str, msg_stream_id: u32, values: &[Amf0Value], out: &mut Vec<Output>) {
        let Role::Playing { stream_id } = self.role else { return };
        match name {
            "closeStream" | "deleteStream" => {
                // The stream id is the first argument after the command object.
                if matches!(values.get(3), Some(Amf0Value::Number(id)) if *id as u32 == stream_id) {
                    out.push(Output::Event(Event::PlayFinished));
                }
            }
            "play" => {
                self.role = Role::Waiting(Pending::Play { request_id: 0, stream_id: msg_stream_id });
                out.extend(self.reject("NetStream.Play.Failed", "this connection is already publishing or playing"));
            }
            "publish" => {
                self.role = Role::Waiting(Pending::Publish { request_id: 0, stream_id: msg_stream_id });
                out.extend(self.reject("NetStream.Publish.Denied", "this connection is already publishing or playing"));
            }
            _ => {}
        }
    }

    fn session_event(
        &mut self,
        event: ServerSessionEvent,
        stream_id: u32,
        out: &mut Vec<Output>,
    ) -> Result<(), ConnError> {
        let Phase::Session(s) = &mut self.phase else { return Err(ConnError::Closed) };
        match event {
            ServerSessionEvent::ConnectionRequested { request_id, app_name } => {
                let app = app_name.split('?').next().unwrap_or_default().trim_matches('/');
                if app != self.config.app {
                    let description =
                        format!("unknown application {app:?}; publish and play on rtmp://HOST/{}/...", self.config.app);
                    // FFmpeg takes any `_error` answering `connect` for an authentication
                    // challenge ("Unknown connect error (unsupported authentication method?)")
                    // but an error `onStatus` for a plain refusal ("Server error: ..."), and
                    // stops reading there; librtmp (rtmpdump, OBS) closes on
                    // `NetConnection.Connect.InvalidApp`. GStreamer's rtmp2 ignores that
                    // `onStatus` and reads the `_error`, which also follows the standard.
                    out.push(Output::Send(messages::on_status(
                        0,
                        Level::Error,
                        "NetConnection.Connect.InvalidApp",
                        &description,
                    )));
                    out.push(Output::Send(messages::command_error(
                        self.connect_transaction,
                        "NetConnection.Connect.Rejected",
                        &description,
                    )));
                    self.role = Role::Closed;
                    out.push(Output::Close(description));
                    return Ok(());
                }
                let results = guarded("accept connect", || s.session.accept_request(request_id))?
                    .map_err(|e| ConnError::Session(e.to_string()))?;
                push_results(out, results);
                let (flash_ver, tc_url) = self.connect_info.clone();
                out.push(Output::Event(Event::Connected { flash_ver, tc_url }));
            }
            ServerSessionEvent::PublishStreamRequested { request_id, stream_key, .. } => {
                if self.role != Role::Unknown {
                    self.role = Role::Waiting(Pending::Publish { request_id, stream_id });
                    out.extend(
                        self.reject("NetStream.Publish.Denied", "this connection is already publishing or playing"),
                    );
                    return Ok(());
                }
                self.role = Role::Waiting(Pending::Publish { request_id, stream_id });
                out.push(Output::Event(Event::PublishRequested { key: strip_query(&stream_key) }));
            }
            ServerSessionEvent::PlayStreamRequested { request_id, stream_key, stream_id, duration, .. } => {
                if self.role != Role::Unknown {
                    self.role = Role::Waiting(Pending::Play { request_id, stream_id });
                    out.extend(
                        self.reject("NetStream.Play.Failed", "this connection is already publishing or playing"),
                    );
                    return Ok(());
                }
                self.role = Role::Waiting(Pending::Play { request_id, stream_id });
                let query = stream_key.split_once('?').map(|(_, q)| q.to_string()).unwrap_or_default();
                // `play`'s len argument, in milliseconds on the wire (rtmpdump's --stop); 0 asks
                // for a single frame of a recording, which a live edge has no use for.
                let duration = duration.filter(|ms| *ms > 0).map(|ms| Duration::from_millis(u64::from(ms)));
                out.push(Output::Event(Event::PlayRequested {
                    name: strip_query(&stream_key),
                    query,
                    stream_id,
                    duration,
                }));
            }
            ServerSessionEvent::PublishStreamFinished { .. } => out.push(Output::Event(Event::PublishFinished)),
            ServerSessionEvent::PlayStreamFinished { .. } => out.push(Output::Event(Event::PlayFinished)),
            _ => {}
        }
        Ok(())
    }
}

fn push_results(out: &mut Vec<Output>, results: Vec<ServerSessionResult>) {
    for r in results {
        if let ServerSessionResult::OutboundResponse(p) = r {
            out.push(Output::Send(Bytes::from(p.bytes)));
        }
    }
}

/// `key?param=…` → `key` (encoders append query strings; they are not part of the key).
fn strip_query(s: &str) -> String {
    s.split('?').next().unwrap_or_default().to_string()
}

fn connect_info(values: &[Amf0Value]) -> (Option<String>, Option<String>) {
    let Some(Amf0Value::Object(obj)) = values.get(2) else { return (None, None) };
    let get = |k: &str| match obj.get(k) {
        Some(Amf0Value::Utf8String(s)) => Some(s.chars().take(256).collect()),
        _ => None,
    };
    (get("flashVer"), get("tcUrl"))
}

/// `@setDataFrame("onMetaData", {...})` → the `onMetaData` message players expect (the wrapper
/// string is cut off without re-encoding, so every property passes through untouched).
fn script_data(timestamp: u32, payload: Bytes) -> Result<Option<Media>, ConnError> {
    amf0_guard::check(&payload)?;
    const SET_DATA_FRAME: &[u8] = b"\x02\x00\x0d@setDataFrame";
    const CLEAR_DATA_FRAME: &[u8] = b"\x02\x00\x0f@clearDataFrame";
    const ON_METADATA: &[u8] = b"\x02\x00\x0aonMetaData";
    if payload.starts_with(CLEAR_DATA_FRAME) {
        return Ok(None);
    }
    let body = if payload.starts_with(SET_DATA_FRAME) { payload.slice(SET_DATA_FRAME.len()..) } else { payload };
    if body.is_empty() {
        return Ok(None);
    }
    let kind = if body.starts_with(ON_METADATA) { MediaKind::Metadata } else { MediaKind::Data };
    Ok(Some(Media { kind, timestamp, payload: body }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::sessions::{
        ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
    };

    /// Drives a real rml_rtmp client against the state machine, in memory.
    struct Pair {
        server: Connection,
        client: ClientSession,
        events: Vec<Event>,
        closed: Option<String>,
        client_events: Vec<ClientSessionEvent>,
    }

    impl Pair {
        fn new() -> Pair {
            Pair::with(ProtocolConfig::default())
        }

        fn with(config: ProtocolConfig) -> Pair {
            let mut server = Connection::new(config);
            let mut hs = Handshake::new(PeerType::Client);
            let c0c1 = hs.generate_outbound_p0_and_p1().unwrap();
            let mut to_client = Vec::new();
            for o in server.feed(&c0c1).unwrap() {
                if let Output::Send(b) = o {
                    to_client.extend_from_slice(&b);
                }
            }
            let HandshakeProcessResult::Completed { response_bytes, remaining_bytes } =
                hs.process_bytes(&to_client).unwrap()
            else {
                panic!("client handshake incomplete")
            };
            assert!(remaining_bytes.is_empty());
            let (client, initial) = ClientSession::new(ClientSessionConfig::new()).unwrap();
            let mut pair = Pair { server, client, events: vec![], closed: None, client_events: vec![] };
            pair.feed_server(&response_bytes);
            pair.client_results(initial);
            pair
        }

        fn feed_server(&mut self, bytes: &[u8]) {
            let outs = self.server.feed(bytes).unwrap();
            self.apply(outs);
        }

        fn apply(&mut self, outs: Vec<Output>) {
            let mut to_client = Vec::new();
            for o in outs {
                match o {
                    Output::Send(b) => to_client.extend_from_slice(&b),
                    Output::Event(e) => self.events.push(e),
                    Output::Close(r) => self.closed = Some(r),
                }
            }
            if !to_client.is_empty() {
                let results = self.client.handle_input(&to_client).unwrap();
                self.client_results(results);
            }
        }

        fn client_results(&mut self, results: Vec<ClientSessionResult>) {
            for r in results {
                match r {
                    ClientSessionResult::OutboundResponse(p) => self.feed_server(&p.bytes),
                    ClientSessionResult::RaisedEvent(e) => self.client_events.push(e),
                    ClientSessionResult::UnhandleableMessageReceived(_) => {}
                }
            }
        }

        fn client_do(&mut self, r: Result<ClientSessionResult, rml_rtmp::sessions::ClientSessionError>) {
            self.client_results(vec![r.unwrap()]);
        }
    }

    #[test]
    fn publish_flow_with_rml_client() {
        let mut p = Pair::new();
        let r = p.client.request_connection("live".into());
        p.client_do(r);
        assert!(matches!(p.events[0], Event::Connected { .. }), "{:?}", p.events);
        let r = p.client.request_publishing("secret-key?x=1".into(), PublishRequestType::Live);
        p.client_do(r);
        assert_eq!(p.events.last(), Some(&Event::PublishRequested { key: "secret-key".into() }));
        assert!(matches!(p.server.pending(), Some(Pending::Publish { .. })));

        // Media sent before the decision is buffered, then delivered after accept.
        // (rml_rtmp's client refuses to send before acceptance, so write the chunk directly.)
        let early = crate::rtmp::chunk_writer::serialize_message(20, msg_type::VIDEO, 1, 0, &[0x17, 0, 1, 2], 4096);
        p.feed_server(&early);
        assert!(!p.events.iter().any(|e| matches!(e, Event::Media(_))));
        let outs = p.server.accept().unwrap();
        p.apply(outs);
        assert!(p.client_events.iter().any(|e| matches!(e, ClientSessionEvent::PublishRequestAccepted)));
        let media: Vec<_> =
            p.events.iter().filter_map(|e| if let Event::Media(m) = e { Some(m) } else { None }).collect();
        assert_eq!(media.len(), 1);
        assert_eq!(media[0].kind, MediaKind::Video);
        assert_eq!(&media[0].payload[..], &[0x17, 0, 1, 2]);
    }

    /// Appends `bytes` to the connection's input buffer as a read straight into it would, in
    /// pieces of `piece` bytes, announcing each with `fed`.
    fn feed_in_place(server: &mut Connection, bytes: &[u8], piece: usize) -> Result<Vec<Output>, ConnError> {
        let mut out = Vec::new();
        for part in bytes.chunks(piece) {
            server.input_buffer().expect("past the handshake").extend_from_slice(part);
            server.fed(part.len(), &mut out)?;
        }
        Ok(out)
    }

    fn media(outs: &[Output]) -> Vec<&Media> {
        outs.iter().filter_map(|o| if let Output::Event(Event::Media(m)) = o { Some(m) } else { None }).collect()
    }

    /// A publisher (chunk size 4096 announced) whose publish is pending.
    fn pending_publisher(config: ProtocolConfig) -> Pair {
        let mut p = Pair::with(config);
        let r = p.client.request_connection("live".into());
        p.client_do(r);
        let r = p.client.request_publishing("key".into(), PublishRequestType::Live);
        p.client_do(r);
        assert!(matches!(p.server.pending(), Some(Pending::Publish { .. })));
        p
    }

    /// Bytes read straight into the connection's input buffer, split anywhere (inside headers,
    /// inside payloads, across messages), give the same messages as the same bytes fed.
    #[test]
    fn reads_into_the_input_buffer_split_anywhere_give_the_same_messages() {
        let mut wire = Vec::new();
        for (i, len) in [10usize, 4096, 9000, 1, 20_000].into_iter().enumerate() {
            let payload: Vec<u8> = (0..len).map(|j| (j * 7 + i) as u8).collect();
            let (csid, type_id) = if i % 2 == 0 { (6, msg_type::VIDEO) } else { (4, msg_type::AUDIO) };
            wire.extend_from_slice(&crate::rtmp::chunk_writer::serialize_message(
                csid,
                type_id,
                1,
                40 * i as u32,
                &payload,
                4096,
            ));
        }
        let publishing = || {
            let mut p = pending_publisher(ProtocolConfig::default());
            let outs = p.server.accept().unwrap();
            p.apply(outs);
            p.server
        };
        let fed = publishing().feed(&wire).unwrap();
        assert_eq!(media(&fed).len(), 5);
        for piece in [1, 3, 11, 12, 13, 100, 4096, 4097, 4109, 10_000, wire.len()] {
            let outs = feed_in_place(&mut publishing(), &wire, piece).unwrap();
            assert_eq!(media(&outs), media(&fed), "pieces of {piece} bytes");
        }
    }

    /// Reads into the input buffer are held to the same limits as fed bytes: while a decision
    /// is pending, `max_pending_input` and the shared input budget.
    #[test]
    fn reads_into_the_input_buffer_keep_the_pending_and_budget_limits() {
        let early = crate::rtmp::chunk_writer::serialize_message(6, msg_type::VIDEO, 1, 0, &[0x17; 3000], 4096);

        let config = ProtocolConfig { max_pending_input: 10_000, ..ProtocolConfig::default() };
        let mut p = pending_publisher(config);
        feed_in_place(&mut p.server, &early, 1000).unwrap();
        feed_in_place(&mut p.server, &early, 1000).unwrap();
        let err = feed_in_place(&mut p.server, &[&early[..], &early[..]].concat(), 1000).unwrap_err();
        assert!(matches!(err, ConnError::PendingInputOverflow(n) if n > 10_000), "{err:?}");

        let budget = crate::rtmp::chunk_reader::InputBudget::new(1000);
        let mut p = pending_publisher(ProtocolConfig { budget: budget.clone(), ..ProtocolConfig::default() });
        let err = feed_in_place(&mut p.server, &[&early[..]; 4].concat(), 4096).unwrap_err();
        assert!(
            matches!(err, ConnError::Chunk(crate::rtmp::chunk_reader::ChunkError::InputBudgetExhausted { .. })),
            "{err:?}"
        );

        // And the acknowledgements count them.
        let mut p = pending_publisher(ProtocolConfig::default());
        p.server.peer_ack_window = Some(4096);
        let outs = feed_in_place(&mut p.server, &early, 5000).unwrap();
        assert_eq!(outs.len(), 0, "{outs:?}");
        let outs = feed_in_place(&mut p.server, &early, 5000).unwrap();
        assert!(matches!(outs[..], [Output::Send(_)]), "an ack: {outs:?}");
    }

    /// A command as a player sends it on message stream `stream_id` (chunk stream 3).
    fn command_chunk(name: &str, stream_id: u32, args: Vec<Amf0Value>) -> Vec<u8> {
        let mut values = vec![Amf0Value::Utf8String(name.into()), Amf0Value::Number(0.0), Amf0Value::Null];
        values.extend(args);
        let body = rml_amf0::serialize(&values).unwrap();
        crate::rtmp::chunk_writer::serialize_message(3, msg_type::AMF0_COMMAND, stream_id, 0, &body, 128).to_vec()
    }

    fn playing_pair() -> (Pair, u32) {
        let mut p = Pair::new();
        let r = p.client.request_connection("live".into());
        p.client_do(r);
        let r = p.client.request_playback("demo".into());
        p.client_do(r);
        let Some(Event::PlayRequested { stream_id, .. }) = p.events.last().cloned() else {
            panic!("no play request: {:?}", p.events)
        };
        let outs = p.server.accept().unwrap();
        p.apply(outs);
        assert!(p.client_events.iter().any(|e| matches!(e, ClientSessionEvent::PlaybackRequestAccepted)));
        assert!(matches!(p.server.phase, Phase::Playing(_)), "the session is dropped once playing");
        (p, stream_id)
    }

    #[test]
    fn a_playing_connection_ends_its_play_on_delete_stream_of_its_own_stream_only() {
        let (mut p, stream_id) = playing_pair();
        p.events.clear();
        // Pings are still answered and other commands ignored.
        p.feed_server(&command_chunk("getStreamLength", stream_id, vec![Amf0Value::Utf8String("demo".into())]));
        p.feed_server(&command_chunk("deleteStream", 0, vec![Amf0Value::Number(f64::from(stream_id + 7))]));
        assert!(p.events.is_empty(), "{:?}", p.events);
        p.feed_server(&command_chunk("deleteStream", 0, vec![Amf0Value::Number(f64::from(stream_id))]));
        assert_eq!(p.events, vec![Event::PlayFinished]);
        assert!(p.closed.is_none());
    }

    #[test]
    fn a_playing_connection_is_refused_a_second_play_or_a_publish() {
        let (mut p, stream_id) = playing_pair();
        p.feed_server(&command_chunk("play", stream_id, vec![Amf0Value::Utf8String("other".into())]));
        assert!(p.closed.as_deref().unwrap_or_default().contains("NetStream.Play.Failed"), "{:?}", p.closed);
        assert_eq!(p.server.role(), Role::Closed);

        let (mut p, stream_id) = playing_pair();
        p.feed_server(&command_chunk("publish", stream_id, vec![Amf0Value::Utf8String("key".into())]));
        assert!(p.closed.as_deref().unwrap_or_default().contains("NetStream.Publish.Denied"), "{:?}", p.closed);
    }

    #[test]
    fn wrong_app_is_rejected_and_closed() {
        let mut p = Pair::new();
        let r = p.client.request_connection("other".into());
        p.client_do(r);
        assert!(p.closed.as_deref().unwrap_or_default().contains("unknown application"));
        assert_eq!(p.server.role(), Role::Closed);
        // Both answers: the error onStatus (FFmpeg, librtmp) and the `_error` matched to the
        // connect's transaction (GStreamer, the standard).
        assert!(
            p.client_events.iter().any(|e| matches!(e, ClientSessionEvent::UnhandleableOnStatusCode { code }
                if code == "NetConnection.Connect.InvalidApp")),
            "{:?}",
            p.client_events
        );
        assert!(
            p.client_events.iter().any(|e| matches!(e, ClientSessionEvent::ConnectionRequestRejected { description }
                if description.contains("unknown application \"other\"; publish and play on rtmp://HOST/live/"))),
            "{:?}",
            p.client_events
        );
    }

    #[test]
    fn play_carries_the_requested_duration() {
        let play = |args: Vec<Amf0Value>| {
            let mut p = Pair::new();
            let r = p.client.request_connection("live".into());
            p.client_do(r);
            p.feed_server(&command_chunk("createStream", 0, vec![]));
            let mut play_args = vec![Amf0Value::Utf8String("demo".into())];
            play_args.extend(args);
            p.feed_server(&command_chunk("play", 1, play_args));
            match p.events.last() {
                Some(Event::PlayRequested { duration, .. }) => *duration,
                other => panic!("no play request: {other:?}"),
            }
        };
        // rtmpdump -v --stop 5: start -1000 (live), len 5000 ms.
        assert_eq!(play(vec![Amf0Value::Number(-1000.0), Amf0Value::Number(5000.0)]), Some(Duration::from_secs(5)));
        assert_eq!(play(vec![Amf0Value::Number(-1000.0), Amf0Value::Number(-1.0)]), None);
        assert_eq!(play(vec![Amf0Value::Number(-1000.0), Amf0Value::Number(0.0)]), None);
        assert_eq!(play(vec![]), None);
    }

    #[test]
    fn short_commands_that_panic_rml_rtmp_are_refused() {
        let mut p = Pair::new();
        // ["connect", 1.0] only: rml_rtmp's `drain(..3)` would panic on this.
        let body = rml_amf0::serialize(&vec![Amf0Value::Utf8String("connect".into()), Amf0Value::Number(1.0)]).unwrap();
        let chunk = crate::rtmp::chunk_writer::serialize_message(3, msg_type::AMF0_COMMAND, 0, 0, &body, 128);
        let err = p.server.feed(&chunk).unwrap_err();
        assert!(matches!(err, ConnError::Session(_)), "{err:?}");
    }

    #[test]
    fn set_data_frame_is_unwrapped() {
        let mut obj = std::collections::HashMap::new();
        obj.insert("width".to_string(), Amf0Value::Number(640.0));
        let body = rml_amf0::serialize(&vec![
            Amf0Value::Utf8String("@setDataFrame".into()),
            Amf0Value::Utf8String("onMetaData".into()),
            Amf0Value::Object(obj.clone()),
        ])
        .unwrap();
        let m = script_data(5, Bytes::from(body)).unwrap().unwrap();
        assert_eq!(m.kind, MediaKind::Metadata);
        let parsed = rml_amf0::deserialize(&mut std::io::Cursor::new(&m.payload[..])).unwrap();
        assert_eq!(parsed, vec![Amf0Value::Utf8String("onMetaData".into()), Amf0Value::Object(obj)]);
    }
}
