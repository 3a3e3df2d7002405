//! Shared harness of the edge's process tests: starts the real `streamfleet-edge` binary on
//! free loopback ports (it binds port 0 and logs the addresses; the harness waits for those log
//! lines), talks HTTP to it, runs ffmpeg/ffprobe, and drives raw RTMP clients for behaviour
//! ffmpeg cannot produce (silent encoders, readers that stop reading). Every child process is
//! killed on drop; every wait has a deadline.
//!
//! The RTMP client, HTTP GET, metric parsing and waiting come from `streamfleet-testkit`;
//! [`RawClient`] is its client with the edge tests' conventions (panics on setup failures,
//! every event kept, refusals as the status code).

#![allow(dead_code)]

pub mod tls;

use std::{
    net::SocketAddr,
    ops::{Deref, DerefMut},
    path::PathBuf,
    process::Stdio,
    time::Duration,
};

use bytes::Bytes;
use rml_rtmp::sessions::{ClientSessionError, ClientSessionEvent, ClientSessionResult, PublishRequestType};
use streamfleet_testkit::{
    child_output::OutputLines,
    http,
    rtmp_client::{ReadError, RtmpClient},
    wait::wait_until,
};
use tokio::{
    io::AsyncReadExt,
    net::TcpStream,
    process::{Child, Command},
    time::{Instant, timeout},
};

/// Manifests every test edge loads: `demo` (ReplaceIdle), `solo` (Reject), `limited`
/// (maxViewers 1).
pub const STREAMS_YAML: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: demo-key}
stringData: {publishKey: demo-publish-key}
---
apiVersion: streamfleet.io/v1alpha1
kind: LiveStream
metadata: {name: demo}
spec:
  publishKeySecretRef: {name: demo-key, key: publishKey}
---
apiVersion: v1
kind: Secret
metadata: {name: solo-key}
stringData: {publishKey: solo-publish-key}
---
apiVersion: streamfleet.io/v1alpha1
kind: LiveStream
metadata: {name: solo}
spec:
  publishKeySecretRef: {name: solo-key, key: publishKey}
  takeoverPolicy: Reject
---
apiVersion: v1
kind: Secret
metadata: {name: limited-key}
stringData: {publishKey: limited-publish-key}
---
apiVersion: streamfleet.io/v1alpha1
kind: LiveStream
metadata: {name: limited}
spec:
  publishKeySecretRef: {name: limited-key, key: publishKey}
  maxViewers: 1
"#;

/// A temporary file removed on drop.
pub struct TempFile(pub PathBuf);

impl TempFile {
    pub fn new(name: &str, contents: &str) -> TempFile {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("sf-edge-test-{}-{n}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("write temp file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A running edge process.
pub struct Edge {
    pub child: Child,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    pub pid: u32,
    logs: OutputLines,
    _streams: Option<TempFile>,
}

impl Edge {
    /// An edge with the in-memory registry loaded from [`STREAMS_YAML`], plus `extra` flags.
    pub async fn start(extra: &[&str]) -> Edge {
        Edge::start_on_streams(&[], extra).await
    }

    /// An edge with exactly these flags (plus loopback listeners on free ports).
    pub async fn start_with(args: Vec<String>) -> Edge {
        Edge::start_wrapped(&[], args).await
    }

    /// Like [`Edge::start`], with the process's file-descriptor limit set to `nofile` (soft and
    /// hard, with `prlimit`, which execs the edge: the pid stays the edge's).
    pub async fn start_with_fd_limit(nofile: u32, extra: &[&str]) -> Edge {
        let limit = format!("--nofile={nofile}:{nofile}");
        Edge::start_on_streams(&["prlimit", &limit, "--"], extra).await
    }

    /// Like [`Edge::start`], with `vars` (`NAME=value`) added to the edge's environment (by
    /// `env`, which execs the edge: the pid stays the edge's).
    pub async fn start_with_env(vars: &[&str], extra: &[&str]) -> Edge {
        let mut wrapper = vec!["env"];
        wrapper.extend(vars);
        Edge::start_on_streams(&wrapper, extra).await
    }

    /// The edge on the in-memory registry loaded from [`STREAMS_YAML`], plus `extra` flags, run
    /// by `wrapper` (see [`Edge::start_wrapped`]).
    async fn start_on_streams(wrapper: &[&str], extra: &[&str]) -> Edge {
        let file = TempFile::new("streams.yaml", STREAMS_YAML);
        let mut args: Vec<String> = vec!["--streams".into(), file.0.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut edge = Edge::start_wrapped(wrapper, args).await;
        edge._streams = Some(file);
        edge
    }

    /// The edge binary run by `wrapper` (a command that execs its arguments), if not empty.
    async fn start_wrapped(wrapper: &[&str], mut args: Vec<String>) -> Edge {
        args.extend(["--rtmp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"].map(String::from));
        // STREAMFLEET_EDGE_BIN runs the tests against another build (e.g. the one before a fix,
        // to see a regression test fail).
        let bin =
            std::env::var("STREAMFLEET_EDGE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_streamfleet-edge").into());
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = command
            .args(&args)
            .env("RUST_LOG", "info,streamfleet_edge=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn streamfleet-edge");
        let pid = child.id().expect("edge pid");
        let logs = OutputLines::capture(&mut child);
        let [rtmp, http] = logs
            .wait_addrs(&mut child, "edge", ["rtmp listening addr=", "http listening addr="], Duration::from_secs(20))
            .await;
        Edge { child, rtmp, http, pid, logs, _streams: None }
    }

    pub fn url(&self, name: &str) -> String {
        format!("rtmp://{}/live/{name}", self.rtmp)
    }

    pub fn logs(&self) -> String {
        self.logs.text()
    }

    /// The address logged after `marker` (e.g. `rtmps listening addr=`), waiting for it.
    pub async fn wait_logged_addr(&self, marker: &str) -> SocketAddr {
        wait_until(&format!("log line {marker:?}"), Duration::from_secs(10), || async { self.logs.logged_addr(marker) })
            .await
    }

    /// Waits until a log line contains `needle`.
    pub async fn wait_log(&self, needle: &str, limit: Duration) {
        wait_until(&format!("log line {needle:?}"), limit, || async { (self.logs.count(needle) > 0).then_some(()) })
            .await
    }

    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.logs.count(needle)
    }

    /// `GET path` → (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.http, path).await
    }

    pub async fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// The value of one exposition line, e.g. `streamfleet_edge_publish_rejections_total{reason="unknown_key"}`;
    /// 0 when the series does not exist yet.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.get("/metrics").await;
        http::metric_value(&body, series)
    }

    /// The stream entry of `/api/v1/streams` for a playback name.
    pub async fn stream(&self, playback: &str) -> Option<serde_json::Value> {
        let v = self.json("/api/v1/streams").await;
        v["streams"].as_array()?.iter().find(|s| s["playback_name"] == playback).cloned()
    }

    /// Waits until the stream is live and has received at least `frames` messages.
    pub async fn wait_live(&self, playback: &str, frames: u64, limit: Duration) -> serde_json::Value {
        wait_until(&format!("stream {playback} live with {frames} frames"), limit, || async {
            self.stream(playback).await.filter(|s| s["live"] == true && s["frames_in"].as_u64().unwrap_or(0) >= frames)
        })
        .await
    }

    pub async fn sessions(&self) -> Vec<serde_json::Value> {
        self.json("/api/v1/sessions").await["sessions"].as_array().cloned().unwrap_or_default()
    }

    /// Resident memory of the edge process in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The most resident memory the edge process has had, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

/// `GET path` on the edge's own endpoints; panics if it does not answer within 5 s.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http::get_within(addr, path, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("GET http://{addr}{path} failed"))
}

/// ffmpeg publishing a generated pattern (H.264 + AAC) in real time for `seconds`.
pub fn ffmpeg_publish(url: &str, seconds: u32, gop: u32) -> Child {
    ffmpeg_publish_args(url, seconds, gop, &[])
}

pub fn ffmpeg_publish_args(url: &str, seconds: u32, gop: u32, video_args: &[&str]) -> Child {
    streamfleet_testkit::require_tool("ffmpeg");
    let t = seconds.to_string();
    let g = gop.to_string();
    let mut args: Vec<&str> = vec![
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "warning",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-g",
        &g,
        "-pix_fmt",
        "yuv420p",
    ];
    args.extend_from_slice(video_args);
    args.extend_from_slice(&["-c:a", "aac", "-b:a", "64k", "-t", &t, "-f", "flv", url]);
    Command::new("ffmpeg")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg")
}

/// Waits for a child with a deadline; returns (success, stderr).
pub async fn finish(child: Child, limit: Duration) -> (bool, String) {
    match timeout(limit, child.wait_with_output()).await {
        Ok(Ok(out)) => (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned()),
        Ok(Err(e)) => panic!("waiting for child: {e}"),
        Err(_) => panic!("child did not finish within {limit:?}"),
    }
}

/// `ffprobe` output (compact format) for an RTMP URL.
pub async fn ffprobe(args: &[&str], url: &str, limit: Duration) -> (bool, String, String) {
    streamfleet_testkit::require_tool("ffprobe");
    let child = Command::new("ffprobe")
        .args(["-hide_banner", "-v", "error", "-rw_timeout", "15000000"])
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffprobe");
    match timeout(limit, child.wait_with_output()).await {
        Ok(Ok(out)) => (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Ok(Err(e)) => panic!("ffprobe: {e}"),
        Err(_) => panic!("ffprobe did not finish within {limit:?}"),
    }
}

/// The testkit's [`RtmpClient`] as the edge tests use it: setup failures panic, every event
/// stays in `events` (through `Deref`, with `socket` and `session`) until a test clears it, and a
/// refused publish or play is the status code.
pub struct RawClient(RtmpClient);

impl Deref for RawClient {
    type Target = RtmpClient;

    fn deref(&self) -> &RtmpClient {
        &self.0
    }
}

impl DerefMut for RawClient {
    fn deref_mut(&mut self) -> &mut RtmpClient {
        &mut self.0
    }
}

impl RawClient {
    /// Connects, handshakes and sends `connect("live")`, waiting for it to be accepted.
    pub async fn connect(addr: SocketAddr) -> RawClient {
        RawClient(RtmpClient::connect(addr).await.unwrap_or_else(|e| panic!("{e}")))
    }

    /// Like [`RawClient::connect`] on a TCP connection the test opened itself.
    pub async fn connect_socket(socket: TcpStream) -> RawClient {
        RawClient(RtmpClient::connect_socket(socket).await.unwrap_or_else(|e| panic!("{e}")))
    }

    async fn results(&mut self, results: Vec<ClientSessionResult>) {
        self.0.apply(results).await.expect("write to the edge");
    }

    pub async fn one(&mut self, r: Result<ClientSessionResult, ClientSessionError>) {
        self.results(vec![r.expect("client session")]).await;
    }

    /// Reads until an event matches (Ok) or an error status / EOF arrives (Err with details).
    pub async fn until(&mut self, what: &str, pred: impl Fn(&ClientSessionEvent) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.events.iter().any(&pred) {
                return Ok(());
            }
            if let Some(code) = self.events.iter().find_map(|e| match e {
                ClientSessionEvent::UnhandleableOnStatusCode { code }
                    if code.contains("BadName")
                        || code.contains("Denied")
                        || code.contains("NotFound")
                        || code.contains("Failed") =>
                {
                    Some(code.clone())
                }
                _ => None,
            }) {
                return Err(code);
            }
            let r = match self.0.read_results(deadline).await {
                Err(ReadError::TimedOut) => panic!("timed out waiting for {what}; events: {:?}", self.events),
                Err(ReadError::Closed) => return Err(format!("connection closed while waiting for {what}")),
                Err(ReadError::Session(e)) => return Err(format!("client session: {e:?}")),
                Ok(r) => r,
            };
            self.results(r).await;
        }
    }

    pub async fn publish(&mut self, key: &str) -> Result<(), String> {
        let r = self.session.request_publishing(key.into(), PublishRequestType::Live);
        self.one(r).await;
        self.until("publish accepted", |e| matches!(e, ClientSessionEvent::PublishRequestAccepted)).await
    }

    pub async fn play(&mut self, name: &str) -> Result<(), String> {
        let r = self.session.request_playback(name.into());
        self.one(r).await;
        self.until("play accepted", |e| matches!(e, ClientSessionEvent::PlaybackRequestAccepted)).await
    }

    pub async fn send_video(&mut self, data: Bytes, ts: u32) {
        self.0.send_video(data, ts).await.expect("send video");
    }

    pub async fn send_audio(&mut self, data: Bytes, ts: u32) {
        self.0.send_audio(data, ts).await.expect("send audio");
    }

    /// Whether the server closed the connection within `limit` (reading and discarding input).
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            match self.0.read_results(deadline).await {
                Err(ReadError::TimedOut) => return false,
                Err(ReadError::Closed) => return true,
                Err(ReadError::Session(_)) => {}
                Ok(r) => {
                    for x in r {
                        if let ClientSessionResult::RaisedEvent(e) = x {
                            self.events.push_back(e);
                        }
                    }
                }
            }
        }
    }
}

/// Whether a raw socket is closed by the server within `limit` (reads and discards).
pub async fn socket_closed_within(socket: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Completes an RTMP handshake on a raw socket and returns it (the chunk stream starts next).
pub async fn raw_handshake(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).await.expect("connect");
    streamfleet_testkit::rtmp_client::handshake(s, tokio::time::Instant::now() + Duration::from_secs(5))
        .await
        .expect("handshake")
        .0
}

/// A type-0 chunk header on chunk stream 3 for a message of `len` bytes and type `type_id`.
pub fn header(type_id: u8, len: u32) -> Vec<u8> {
    let l = len.to_be_bytes();
    vec![0x03, 0, 0, 0, l[1], l[2], l[3], type_id, 0, 0, 0, 0]
}

/// A Set Chunk Size protocol message.
pub fn set_chunk_size(size: u32) -> Vec<u8> {
    let mut v = header(1, 4);
    v.extend_from_slice(&size.to_be_bytes());
    v
}
