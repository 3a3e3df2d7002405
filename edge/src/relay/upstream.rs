//! The client side of one relay pull: connect to the owner edge's relay listener, handshake,
//! `connect("relay")`, `play("<name>?auth=<token>")`, then hand out the media it sends as
//! [`Media`], the same type a local publisher's connection produces.
//!
//! The control protocol is rml_rtmp's `ClientSession`. It parses `onMetaData` into its
//! `StreamMetadata` fields, so metadata is re-encoded from those (width, height, codecs, rates,
//! encoder); audio and video payloads pass through untouched.

use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};

use bytes::Bytes;
use rml_amf0::Amf0Value;
use rml_rtmp::{
    handshake::{Handshake, HandshakeProcessResult, PeerType},
    sessions::{ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, StreamMetadata},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::{Instant, timeout, timeout_at},
};

use crate::media::{Media, MediaKind};

/// An owner that sends nothing for this long is considered gone (a SIGKILLed pod behind a
/// vanished IP sends no reset).
const SILENCE_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("RTMP handshake: {0}")]
    Handshake(String),
    #[error("RTMP session: {0}")]
    Session(String),
    #[error("refused by the owner: {0}")]
    Refused(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl UpstreamError {
    /// `relay_upstream_errors_total{stage}`.
    pub(crate) fn stage(&self) -> &'static str {
        match self {
            UpstreamError::Connect { .. } | UpstreamError::Timeout(_) | UpstreamError::Handshake(_) => "connect",
            UpstreamError::Refused(_) => "refused",
            UpstreamError::Session(_) | UpstreamError::Io(_) => "stream",
        }
    }
}

/// One playing upstream connection.
pub(crate) struct Upstream {
    socket: TcpStream,
    session: ClientSession,
    buf: Vec<u8>,
    media: VecDeque<Media>,
    /// Other session events since the last check (connect/play acceptance).
    pending_accept: Vec<ClientSessionEvent>,
    /// The owner ended the stream (`Play.Stop`, `StreamNotFound`, ...) or closed.
    ended: Option<String>,
}

impl Upstream {
    /// Connects to `addr` and plays `playback` with `token`, within `limit`.
    pub(crate) async fn play(
        addr: &str,
        playback: &str,
        token: &str,
        limit: Duration,
    ) -> Result<Upstream, UpstreamError> {
        let deadline = Instant::now() + limit;
        let socket = timeout_at(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| UpstreamError::Timeout("connect"))?
            .map_err(|source| UpstreamError::Connect { addr: addr.to_string(), source })?;
        let _ = socket.set_nodelay(true);
        let mut up = timeout_at(deadline, Upstream::handshake(socket))
            .await
            .map_err(|_| UpstreamError::Timeout("handshake"))??;
        let r = up.session.request_connection(super::APP.into()).map_err(session_err)?;
        up.apply(vec![r]).await?;
        timeout_at(deadline, up.until(|e| matches!(e, ClientSessionEvent::ConnectionRequestAccepted)))
            .await
            .map_err(|_| UpstreamError::Timeout("connect request"))??;
        let r = up.session.request_playback(format!("{playback}?auth={token}")).map_err(session_err)?;
        up.apply(vec![r]).await?;
        timeout_at(deadline, up.until(|e| matches!(e, ClientSessionEvent::PlaybackRequestAccepted)))
            .await
            .map_err(|_| UpstreamError::Timeout("play request"))??;
        Ok(up)
    }

    async fn handshake(mut socket: TcpStream) -> Result<Upstream, UpstreamError> {
        let mut hs = Handshake::new(PeerType::Client);
        let c0c1 = hs.generate_outbound_p0_and_p1().map_err(|e| UpstreamError::Handshake(format!("{e:?}")))?;
        socket.write_all(&c0c1).await?;
        let mut buf = vec![0u8; 64 * 1024];
        let remaining = loop {
            let n = socket.read(&mut buf).await?;
            if n == 0 {
                return Err(UpstreamError::Handshake("closed during the handshake".into()));
            }
            match hs.process_bytes(&buf[..n]).map_err(|e| UpstreamError::Handshake(format!("{e:?}")))? {
                HandshakeProcessResult::InProgress { response_bytes } => socket.write_all(&response_bytes).await?,
                HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                    socket.write_all(&response_bytes).await?;
                    break remaining_bytes;
                }
            }
        };
        let (session, initial) = ClientSession::new(ClientSessionConfig::new()).map_err(session_err)?;
        let mut up = Upstream { socket, session, buf, media: VecDeque::new(), pending_accept: Vec::new(), ended: None };
        up.apply(initial).await?;
        if !remaining.is_empty() {
            let r = up.session.handle_input(&remaining).map_err(session_err)?;
            up.apply(r).await?;
        }
        Ok(up)
    }

    /// Reads until an event matches `accepted`; a refusing status or a close is an error.
    async fn until(&mut self, accepted: impl Fn(&ClientSessionEvent) -> bool) -> Result<(), UpstreamError> {
        loop {
            if let Some(why) = self.ended.take() {
                return Err(UpstreamError::Refused(why));
            }
            if self.take_accepted(&accepted) {
                return Ok(());
            }
            self.read_once().await?;
        }
    }

    fn take_accepted(&mut self, accepted: &impl Fn(&ClientSessionEvent) -> bool) -> bool {
        std::mem::take(&mut self.pending_accept).iter().any(accepted)
    }

    /// The next media message; `Ok(None)` once the owner ended the stream or closed.
    pub(crate) async fn next_media(&mut self) -> Result<Option<Media>, UpstreamError> {
        loop {
            if let Some(m) = self.media.pop_front() {
                return Ok(Some(m));
            }
            if self.ended.is_some() {
                return Ok(None);
            }
            match timeout(SILENCE_LIMIT, self.read_once()).await {
                Err(_) => return Err(UpstreamError::Timeout("upstream read")),
                Ok(r) => r?,
            }
        }
    }

    /// Why the owner ended the stream, once it has.
    pub(crate) fn end_reason(&self) -> Option<&str> {
        self.ended.as_deref()
    }

    async fn read_once(&mut self) -> Result<(), UpstreamError> {
        let n = self.socket.read(&mut self.buf).await?;
        if n == 0 {
            self.ended = Some("connection closed".into());
            return Ok(());
        }
        let input = self.buf[..n].to_vec();
        let results = self.session.handle_input(&input).map_err(session_err)?;
        self.apply(results).await
    }

    async fn apply(&mut self, results: Vec<ClientSessionResult>) -> Result<(), UpstreamError> {
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => self.socket.write_all(&p.bytes).await?,
                ClientSessionResult::RaisedEvent(e) => self.event(e),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(())
    }

    fn event(&mut self, e: ClientSessionEvent) {
        match e {
            // Copied: rml_rtmp's payloads may be slices of its own reassembly buffer, and the
            // fan-out keeps a payload as long as its GOP lasts (see `Media::payload`).
            ClientSessionEvent::VideoDataReceived { timestamp, data } => self.media.push_back(Media {
                kind: MediaKind::Video,
                timestamp: timestamp.value,
                payload: Bytes::copy_from_slice(&data),
            }),
            ClientSessionEvent::AudioDataReceived { timestamp, data } => self.media.push_back(Media {
                kind: MediaKind::Audio,
                timestamp: timestamp.value,
                payload: Bytes::copy_from_slice(&data),
            }),
            ClientSessionEvent::StreamMetadataReceived { metadata } => {
                if let Some(payload) = encode_metadata(&metadata) {
                    self.media.push_back(Media { kind: MediaKind::Metadata, timestamp: 0, payload });
                }
            }
            ClientSessionEvent::UnhandleableOnStatusCode { code } if is_end(&code) => {
                self.ended.get_or_insert(code);
            }
            ClientSessionEvent::ConnectionRequestRejected { description } => {
                self.ended.get_or_insert(format!("connect rejected: {description}"));
            }
            other => self.pending_accept.push(other),
        }
    }
}

fn session_err(e: impl std::fmt::Debug) -> UpstreamError {
    UpstreamError::Session(format!("{e:?}"))
}

/// Statuses that end (or refuse) a relay play.
fn is_end(code: &str) -> bool {
    matches!(code, "NetStream.Play.Stop" | "NetStream.Play.StreamNotFound" | "NetStream.Play.Failed")
        || code.ends_with(".Rejected")
        || code.ends_with(".Failed")
}

/// `onMetaData` from the parsed fields (see the module docs).
fn encode_metadata(m: &StreamMetadata) -> Option<Bytes> {
    let mut p: HashMap<String, Amf0Value> = HashMap::new();
    let mut num = |k: &str, v: Option<f64>| {
        if let Some(v) = v {
            p.insert(k.to_string(), Amf0Value::Number(v));
        }
    };
    num("width", m.video_width.map(f64::from));
    num("height", m.video_height.map(f64::from));
    num("videocodecid", m.video_codec_id.map(f64::from));
    num("framerate", m.video_frame_rate.map(f64::from));
    num("videodatarate", m.video_bitrate_kbps.map(f64::from));
    num("audiocodecid", m.audio_codec_id.map(f64::from));
    num("audiodatarate", m.audio_bitrate_kbps.map(f64::from));
    num("audiosamplerate", m.audio_sample_rate.map(f64::from));
    num("audiochannels", m.audio_channels.map(f64::from));
    if let Some(stereo) = m.audio_is_stereo {
        p.insert("stereo".into(), Amf0Value::Boolean(stereo));
    }
    if let Some(enc) = &m.encoder {
        p.insert("encoder".into(), Amf0Value::Utf8String(enc.clone()));
    }
    rml_amf0::serialize(&vec![Amf0Value::Utf8String("onMetaData".into()), Amf0Value::Object(p)]).ok().map(Bytes::from)
}
