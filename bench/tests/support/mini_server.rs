//! A minimal in-process RTMP relay built on rml_rtmp's `ServerSession` (an implementation
//! independent of the load tool's client code): it accepts one publisher per stream name, refuses
//! a second one with `NetStream.Publish.BadName` ("Already publishing", as nginx-rtmp does), and
//! forwards the publisher's audio and video to every player of that name. It binds 127.0.0.1 and
//! stops when dropped.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult};
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

#[derive(Clone, Debug)]
enum Media {
    Video(Bytes, RtmpTimestamp),
    Audio(Bytes, RtmpTimestamp),
}

#[derive(Default)]
struct Hub {
    streams: Mutex<HashMap<String, broadcast::Sender<Media>>>,
    publishing: Mutex<HashSet<String>>,
}

impl Hub {
    fn channel(&self, name: &str) -> broadcast::Sender<Media> {
        let mut s = self.streams.lock().unwrap();
        s.entry(name.to_string()).or_insert_with(|| broadcast::channel(1024).0).clone()
    }
}

/// The running server.
pub struct MiniServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for MiniServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MiniServer {
    pub async fn start() -> MiniServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hub = Arc::new(Hub::default());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                let hub = hub.clone();
                conns.spawn(async move {
                    let _ = serve(socket, hub).await;
                });
            }
        });
        MiniServer { addr, task }
    }

    pub fn url(&self, name: &str) -> String {
        format!("rtmp://{}/live/{name}", self.addr)
    }
}

type Fallible = Result<(), Box<dyn std::error::Error + Send + Sync>>;

async fn serve(mut socket: TcpStream, hub: Arc<Hub>) -> Fallible {
    socket.set_nodelay(true)?;
    let mut hs = Handshake::new(PeerType::Server);
    let mut buf = vec![0u8; 64 * 1024];
    let leftover = loop {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        match hs.process_bytes(&buf[..n])? {
            HandshakeProcessResult::InProgress { response_bytes } => socket.write_all(&response_bytes).await?,
            HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                socket.write_all(&response_bytes).await?;
                break remaining_bytes;
            }
        }
    };
    let (mut session, initial) = ServerSession::new(ServerSessionConfig::new())?;
    let mut conn = Conn { publishing: None, playing: None, hub: hub.clone() };
    let mut out = Vec::new();
    conn.absorb(&mut session, initial, &mut out)?;
    let results = session.handle_input(&leftover)?;
    conn.absorb(&mut session, results, &mut out)?;
    socket.write_all(&out).await?;
    let result = loop {
        out.clear();
        let rx = conn.playing.as_mut().map(|(_, rx)| rx);
        tokio::select! {
            r = socket.read(&mut buf) => {
                let n = match r { Ok(0) | Err(_) => break Ok(()), Ok(n) => n };
                let results = session.handle_input(&buf[..n])?;
                conn.absorb(&mut session, results, &mut out)?;
            }
            m = recv(rx) => {
                let Some(m) = m else { break Ok(()) };
                let Some((id, _)) = conn.playing.as_ref() else { continue };
                let packet = match m {
                    Media::Video(d, ts) => session.send_video_data(*id, d, ts, false)?,
                    Media::Audio(d, ts) => session.send_audio_data(*id, d, ts, false)?,
                };
                out.extend_from_slice(&packet.bytes);
            }
        }
        if !out.is_empty() && socket.write_all(&out).await.is_err() {
            break Ok(());
        }
    };
    if let Some(name) = conn.publishing.take() {
        hub.publishing.lock().unwrap().remove(&name);
    }
    result
}

async fn recv(rx: Option<&mut broadcast::Receiver<Media>>) -> Option<Media> {
    match rx {
        None => std::future::pending().await,
        Some(rx) => loop {
            match rx.recv().await {
                Ok(m) => return Some(m),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        },
    }
}

struct Conn {
    publishing: Option<String>,
    playing: Option<(u32, broadcast::Receiver<Media>)>,
    hub: Arc<Hub>,
}

impl Conn {
    fn absorb(
        &mut self,
        session: &mut ServerSession,
        results: Vec<ServerSessionResult>,
        out: &mut Vec<u8>,
    ) -> Fallible {
        let mut todo: std::collections::VecDeque<ServerSessionResult> = results.into();
        while let Some(r) = todo.pop_front() {
            match r {
                ServerSessionResult::OutboundResponse(p) => out.extend_from_slice(&p.bytes),
                ServerSessionResult::RaisedEvent(e) => match e {
                    ServerSessionEvent::ConnectionRequested { request_id, .. } => {
                        todo.extend(session.accept_request(request_id)?);
                    }
                    ServerSessionEvent::PublishStreamRequested { request_id, stream_key, .. } => {
                        if self.hub.publishing.lock().unwrap().insert(stream_key.clone()) {
                            self.publishing = Some(stream_key);
                            todo.extend(session.accept_request(request_id)?);
                        } else {
                            todo.extend(session.reject_request(
                                request_id,
                                "NetStream.Publish.BadName",
                                "Already publishing",
                            )?);
                        }
                    }
                    ServerSessionEvent::PlayStreamRequested { request_id, stream_key, stream_id, .. } => {
                        self.playing = Some((stream_id, self.hub.channel(&stream_key).subscribe()));
                        todo.extend(session.accept_request(request_id)?);
                    }
                    ServerSessionEvent::VideoDataReceived { stream_key, data, timestamp, .. } => {
                        let _ = self.hub.channel(&stream_key).send(Media::Video(data, timestamp));
                    }
                    ServerSessionEvent::AudioDataReceived { stream_key, data, timestamp, .. } => {
                        let _ = self.hub.channel(&stream_key).send(Media::Audio(data, timestamp));
                    }
                    ServerSessionEvent::PublishStreamFinished { stream_key, .. } => {
                        self.hub.publishing.lock().unwrap().remove(&stream_key);
                        self.publishing = None;
                    }
                    _ => {}
                },
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(())
    }
}
