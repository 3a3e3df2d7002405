//! A light RTMP client on rml_rtmp's `ClientSession` over tokio, for what the edge and fleet
//! tests must time precisely or produce in ways ffmpeg cannot: a hundred concurrent publish
//! attempts, a publisher that must notice the instant the edge drops it, a player that must
//! notice how its stream ends, silent encoders and hand-made frames.
//!
//! - [`handshake`]: the RTMP handshake alone on a TCP stream (for tests that then send raw
//!   chunks).
//! - [`RtmpClient`]: handshake, `connect("live")`, then one `publish` or `play` whose outcome is
//!   `NetStream.Publish.Start`/`NetStream.Play.Start` or a [`Refusal`]. Its socket, session and
//!   unconsumed events are public, and [`RtmpClient::read_results`]/[`RtmpClient::apply`] let a
//!   test drive the session by hand.
//! - [`LivePublisher`]: an admitted publisher that keeps sending (fake, keyframe-marked) H.264
//!   frames in the background and records the instant and manner of its end.
//! - [`LivePlayer`]: an admitted player that counts what it receives and records its statuses.
//! - [`publish_until_admitted`]: a reconnecting encoder, retrying until it gets in.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use rml_rtmp::{
    handshake::{Handshake, HandshakeProcessResult, PeerType},
    sessions::{
        ClientSession, ClientSessionConfig, ClientSessionError, ClientSessionEvent, ClientSessionResult,
        PublishRequestType,
    },
    time::RtmpTimestamp,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::oneshot,
    task::JoinHandle,
    time::{Instant, MissedTickBehavior, interval, timeout_at},
};

use crate::wait::try_wait_until;

/// Most time a connect, publish or play may take before the client gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// Frame interval of [`LivePublisher`] (25 fps) and its keyframe interval in frames.
const FRAME_INTERVAL: Duration = Duration::from_millis(40);
const GOP_FRAMES: u64 = 25;

/// Why a publish or play was not started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An `onStatus` with this code (e.g. `NetStream.Publish.BadName`).
    Status(String),
    /// The server closed the connection (or it failed) without a status.
    Closed,
    /// The server sent something the client session could not handle.
    Protocol(String),
}

impl Refusal {
    pub fn code(&self) -> &str {
        match self {
            Refusal::Status(code) => code,
            Refusal::Closed => "closed",
            Refusal::Protocol(_) => "protocol error",
        }
    }
}

/// How an admitted session ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The server said so with an `onStatus` (a clean end).
    Status(String),
    /// The connection closed without a status first.
    Closed,
}

/// The instant and manner of an end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub at: Instant,
    pub how: Ending,
}

/// Why [`RtmpClient::read_results`] has no results.
#[derive(Debug)]
pub enum ReadError {
    /// The deadline passed before any input arrived.
    TimedOut,
    /// The server closed the connection (or it failed).
    Closed,
    /// The client session could not handle the input.
    Session(ClientSessionError),
}

/// The RTMP handshake (as a client) on `socket`, before `deadline`. Returns the socket and the
/// bytes the server sent after its part of the handshake.
pub async fn handshake(mut socket: TcpStream, deadline: Instant) -> Result<(TcpStream, Vec<u8>), String> {
    let mut hs = Handshake::new(PeerType::Client);
    let c0c1 = hs.generate_outbound_p0_and_p1().map_err(|e| format!("handshake: {e:?}"))?;
    socket.write_all(&c0c1).await.map_err(|e| format!("handshake write: {e}"))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = timeout_at(deadline, socket.read(&mut buf))
            .await
            .map_err(|_| "handshake timed out".to_string())?
            .map_err(|e| format!("handshake read: {e}"))?;
        if n == 0 {
            return Err("server closed during the handshake".into());
        }
        match hs.process_bytes(&buf[..n]).map_err(|e| format!("handshake: {e:?}"))? {
            HandshakeProcessResult::InProgress { response_bytes } => {
                socket.write_all(&response_bytes).await.map_err(|e| format!("handshake write: {e}"))?
            }
            HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                socket.write_all(&response_bytes).await.map_err(|e| format!("handshake write: {e}"))?;
                return Ok((socket, remaining_bytes));
            }
        }
    }
}

/// A connected RTMP client (handshake and `connect` done).
pub struct RtmpClient {
    /// The TCP connection (a test may write to it or shut it down itself).
    pub socket: TcpStream,
    /// The client session (a test may make requests the methods here do not).
    pub session: ClientSession,
    /// Events raised and not consumed yet, oldest first.
    pub events: VecDeque<ClientSessionEvent>,
    buf: Vec<u8>,
}

impl RtmpClient {
    /// Connects to `addr`, handshakes and sends `connect("live")`, waiting for it to be
    /// accepted.
    pub async fn connect(addr: SocketAddr) -> Result<RtmpClient, String> {
        RtmpClient::connect_app(addr, "live").await
    }

    /// Like [`RtmpClient::connect`] with another application name (e.g. the edges' internal
    /// `relay` application).
    pub async fn connect_app(addr: SocketAddr, app: &str) -> Result<RtmpClient, String> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let socket = timeout_at(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect {addr}: timed out"))?
            .map_err(|e| format!("connect {addr}: {e}"))?;
        RtmpClient::connect_within(socket, app, deadline).await
    }

    /// Like [`RtmpClient::connect`] on a TCP connection the test opened itself (e.g. with a
    /// tiny receive buffer).
    pub async fn connect_socket(socket: TcpStream) -> Result<RtmpClient, String> {
        RtmpClient::connect_within(socket, "live", Instant::now() + STEP_TIMEOUT).await
    }

    async fn connect_within(socket: TcpStream, app: &str, deadline: Instant) -> Result<RtmpClient, String> {
        let peer = socket.peer_addr().map_or_else(|e| e.to_string(), |a| a.to_string());
        socket.set_nodelay(true).ok();
        let mut client = RtmpClient::handshake(socket, deadline).await?;
        let r = client.session.request_connection(app.into());
        client.apply_one(r).await.map_err(|e| format!("connect request: {e:?}"))?;
        client
            .until(deadline, |e| matches!(e, ClientSessionEvent::ConnectionRequestAccepted))
            .await
            .map_err(|r| format!("connect to {peer} refused: {r:?}"))?;
        Ok(client)
    }

    async fn handshake(socket: TcpStream, deadline: Instant) -> Result<RtmpClient, String> {
        let (socket, remaining) = handshake(socket, deadline).await?;
        let (session, initial) =
            ClientSession::new(ClientSessionConfig::new()).map_err(|e| format!("client session: {e:?}"))?;
        let buf = vec![0u8; 64 * 1024];
        let mut client = RtmpClient { socket, session, events: VecDeque::new(), buf };
        client.apply(initial).await.map_err(|e| format!("write: {e}"))?;
        if !remaining.is_empty() {
            let r = client.session.handle_input(&remaining).map_err(|e| format!("client session: {e:?}"))?;
            client.apply(r).await.map_err(|e| format!("write: {e}"))?;
        }
        Ok(client)
    }

    /// Sends `publish(key)` and waits for `NetStream.Publish.Start` or a refusal.
    pub async fn publish(&mut self, key: &str) -> Result<(), Refusal> {
        let r = self.session.request_publishing(key.into(), PublishRequestType::Live);
        self.apply_one(r).await?;
        self.until(Instant::now() + STEP_TIMEOUT, |e| matches!(e, ClientSessionEvent::PublishRequestAccepted)).await
    }

    /// Sends `play(name)` and waits for `NetStream.Play.Start` or a refusal.
    pub async fn play(&mut self, name: &str) -> Result<(), Refusal> {
        let r = self.session.request_playback(name.into());
        self.apply_one(r).await?;
        self.until(Instant::now() + STEP_TIMEOUT, |e| matches!(e, ClientSessionEvent::PlaybackRequestAccepted)).await
    }

    async fn apply_one(&mut self, r: Result<ClientSessionResult, ClientSessionError>) -> Result<(), Refusal> {
        let r = r.map_err(|e| Refusal::Protocol(format!("{e:?}")))?;
        self.apply(vec![r]).await.map_err(|_| Refusal::Closed)
    }

    /// Sends the session's outbound messages and queues its events.
    pub async fn apply(&mut self, results: Vec<ClientSessionResult>) -> std::io::Result<()> {
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => self.socket.write_all(&p.bytes).await?,
                ClientSessionResult::RaisedEvent(e) => self.events.push_back(e),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(())
    }

    /// Reads until an event matches `accepted` (Ok), or a status, refusal or close says no.
    async fn until(
        &mut self,
        deadline: Instant,
        accepted: impl Fn(&ClientSessionEvent) -> bool,
    ) -> Result<(), Refusal> {
        loop {
            while let Some(e) = self.events.pop_front() {
                if accepted(&e) {
                    return Ok(());
                }
                match e {
                    ClientSessionEvent::UnhandleableOnStatusCode { code } if !is_informational(&code) => {
                        return Err(Refusal::Status(code));
                    }
                    ClientSessionEvent::ConnectionRequestRejected { description } => {
                        return Err(Refusal::Status(format!("connect rejected: {description}")));
                    }
                    _ => {}
                }
            }
            self.read_once(deadline).await?;
        }
    }

    /// Reads one chunk of input into events. Err on close, timeout or a protocol error.
    async fn read_once(&mut self, deadline: Instant) -> Result<(), Refusal> {
        let r = self.read_results(deadline).await.map_err(|e| match e {
            ReadError::TimedOut => Refusal::Protocol("timed out waiting for the server".into()),
            ReadError::Closed => Refusal::Closed,
            ReadError::Session(e) => Refusal::Protocol(format!("{e:?}")),
        })?;
        self.apply(r).await.map_err(|_| Refusal::Closed)
    }

    /// Reads one chunk of input (waiting until `deadline` at most) and hands it to the session.
    /// The results are returned, not applied: see [`RtmpClient::apply`].
    pub async fn read_results(&mut self, deadline: Instant) -> Result<Vec<ClientSessionResult>, ReadError> {
        let n = match timeout_at(deadline, self.socket.read(&mut self.buf)).await {
            Err(_) => return Err(ReadError::TimedOut),
            Ok(Ok(0)) | Ok(Err(_)) => return Err(ReadError::Closed),
            Ok(Ok(n)) => n,
        };
        let input = self.buf[..n].to_vec();
        self.session.handle_input(&input).map_err(ReadError::Session)
    }

    /// Sends one video message with timestamp `ts` (ms).
    pub async fn send_video(&mut self, data: Bytes, ts: u32) -> std::io::Result<()> {
        let r = self
            .session
            .publish_video_data(data, RtmpTimestamp::new(ts), false)
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        self.apply(vec![r]).await
    }

    /// Sends one audio message with timestamp `ts` (ms).
    pub async fn send_audio(&mut self, data: Bytes, ts: u32) -> std::io::Result<()> {
        let r = self
            .session
            .publish_audio_data(data, RtmpTimestamp::new(ts), false)
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        self.apply(vec![r]).await
    }
}

/// An FLV AUDIODATA payload that looks like a raw AAC frame (not a sequence header) to the edge.
pub fn fake_aac(len: usize) -> Bytes {
    let mut v = vec![0xAF, 1];
    v.resize(len.max(2), 0x21);
    Bytes::from(v)
}

/// An FLV VIDEODATA payload that looks like H.264 (keyframe or inter frame) to the edge: not
/// decodable, but enough for its keyframe detection and fast start.
pub fn fake_avc(key: bool, len: usize) -> Bytes {
    let mut v = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    v.resize(len.max(5), 0xAB);
    Bytes::from(v)
}

/// What a background session task shares with its handle.
#[derive(Default)]
struct Shared {
    ended: Option<Ended>,
    /// Every `onStatus` code received, with its instant.
    statuses: Vec<(Instant, String)>,
    frames: u64,
}

type SharedState = Arc<Mutex<Shared>>;

fn lock(s: &SharedState) -> std::sync::MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The common handle of [`LivePublisher`] and [`LivePlayer`].
pub struct LiveSession {
    shared: SharedState,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl LiveSession {
    /// How it ended, once it has.
    pub fn ended(&self) -> Option<Ended> {
        lock(&self.shared).ended.clone()
    }

    /// Waits for the end; `None` if it is still going after `limit`.
    pub async fn wait_ended(&self, limit: Duration) -> Option<Ended> {
        try_wait_until(limit, || async { self.ended() }).await
    }

    /// Frames sent (publisher) or video frames received (player).
    pub fn frames(&self) -> u64 {
        lock(&self.shared).frames
    }

    /// Every `onStatus` code received since it started.
    pub fn statuses(&self) -> Vec<(Instant, String)> {
        lock(&self.shared).statuses.clone()
    }

    /// Waits until `frames()` reaches `n`; false if the session ended or `limit` passed first.
    pub async fn wait_frames(&self, n: u64, limit: Duration) -> bool {
        try_wait_until(limit, || async {
            let s = lock(&self.shared);
            if s.frames >= n {
                Some(true)
            } else if s.ended.is_some() {
                Some(false)
            } else {
                None
            }
        })
        .await
        .unwrap_or(false)
    }

    /// Closes the connection (an encoder or player going away) and waits for the task.
    pub async fn close(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An admitted publisher sending 25 fps of fake H.264 in the background.
pub type LivePublisher = LiveSession;
/// An admitted player reading in the background.
pub type LivePlayer = LiveSession;

impl RtmpClient {
    /// Turns an admitted publisher into a background one that keeps sending frames until the
    /// server ends it (any `onStatus` after `Publish.Start` means the edge stopped it) or it
    /// is closed.
    pub fn into_publisher(self) -> LivePublisher {
        self.spawn_live(true)
    }

    /// Turns an admitted player into a background one that counts video frames. Informational
    /// statuses (`PublishNotify`, `UnpublishNotify`) are recorded and do not end it; an end
    /// status (`Play.Stop`, `StreamNotFound`, `Play.Failed`, `Play.UnpublishNotify` is not one)
    /// or a close does.
    pub fn into_player(self) -> LivePlayer {
        self.spawn_live(false)
    }

    fn spawn_live(mut self, publishing: bool) -> LiveSession {
        let shared: SharedState = Arc::default();
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let state = shared.clone();
        let task = tokio::spawn(async move {
            let mut tick = interval(FRAME_INTERVAL);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let started = Instant::now();
            let end = |how: Ending| {
                let mut s = lock(&state);
                if s.ended.is_none() {
                    s.ended = Some(Ended { at: Instant::now(), how });
                }
            };
            loop {
                // Events already parsed (e.g. with the Start status) are handled first.
                while let Some(e) = self.events.pop_front() {
                    match e {
                        ClientSessionEvent::UnhandleableOnStatusCode { code } => {
                            lock(&state).statuses.push((Instant::now(), code.clone()));
                            if publishing || is_play_end(&code) {
                                return end(Ending::Status(code));
                            }
                        }
                        ClientSessionEvent::VideoDataReceived { .. } if !publishing => lock(&state).frames += 1,
                        _ => {}
                    }
                }
                tokio::select! {
                    _ = tick.tick(), if publishing => {
                        let n = lock(&state).frames;
                        let ts = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
                        let key = n.is_multiple_of(GOP_FRAMES);
                        let frame = fake_avc(key, if key { 2000 } else { 300 });
                        if self.send_video(frame, ts).await.is_err() {
                            return end(Ending::Closed);
                        }
                        lock(&state).frames += 1;
                    }
                    n = self.socket.read(&mut self.buf) => {
                        let n = match n {
                            Ok(0) | Err(_) => return end(Ending::Closed),
                            Ok(n) => n,
                        };
                        let input = self.buf[..n].to_vec();
                        match self.session.handle_input(&input) {
                            Ok(r) => {
                                if self.apply(r).await.is_err() {
                                    return end(Ending::Closed);
                                }
                            }
                            // A second Play.Start (a player resumed on a new publisher) is
                            // not in the client session's state machine; it is not an end.
                            Err(ClientSessionError::SessionInInvalidState { .. }) => {
                                lock(&state).statuses.push((Instant::now(), "NetStream.Play.Start".into()));
                            }
                            Err(e) => {
                                lock(&state).statuses.push((Instant::now(), format!("protocol error: {e:?}")));
                            }
                        }
                    }
                    _ = &mut stop_rx => {
                        let _ = self.socket.shutdown().await;
                        return;
                    }
                }
            }
        });
        LiveSession { shared, stop: Some(stop_tx), task }
    }
}

/// Statuses a server sends along the way that neither start nor refuse a session.
fn is_informational(code: &str) -> bool {
    matches!(
        code,
        "NetStream.Play.Reset"
            | "NetStream.Play.PublishNotify"
            | "NetStream.Play.UnpublishNotify"
            | "NetStream.Data.Start"
    )
}

/// Statuses that end a player's session.
fn is_play_end(code: &str) -> bool {
    matches!(code, "NetStream.Play.Stop" | "NetStream.Play.StreamNotFound" | "NetStream.Play.Failed")
}

/// The outcome of [`publish_until_admitted`].
pub struct Admission {
    pub publisher: LivePublisher,
    /// When `NetStream.Publish.Start` arrived.
    pub at: Instant,
    /// Refusals before it, in order (status codes).
    pub refusals: Vec<Refusal>,
}

/// A reconnecting encoder: connects to `edge` and publishes `key`, and on a refusal reconnects
/// and tries again (after `backoff`, as encoders do), until admitted or `limit` passes.
pub async fn publish_until_admitted(
    edge: SocketAddr,
    key: &str,
    backoff: Duration,
    limit: Duration,
) -> Result<Admission, Vec<Refusal>> {
    let deadline = Instant::now() + limit;
    let mut refusals = Vec::new();
    while Instant::now() < deadline {
        match RtmpClient::connect(edge).await {
            Ok(mut client) => match client.publish(key).await {
                Ok(()) => {
                    let at = Instant::now();
                    return Ok(Admission { publisher: client.into_publisher(), at, refusals });
                }
                Err(r) => refusals.push(r),
            },
            Err(e) => refusals.push(Refusal::Protocol(e)),
        }
        // Client-side reconnect backoff, not synchronisation: the next attempt polls again.
        tokio::time::sleep(backoff).await;
    }
    Err(refusals)
}
