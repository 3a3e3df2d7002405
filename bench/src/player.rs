//! One simulated viewer: connect, `play`, then count what arrives. Per video frame it reads the
//! marker from the first bytes and records end-to-end latency (receive time − the publisher's
//! send time, one process clock), sequence gaps and arrival gaps; everything else about the
//! payload is ignored, which is what keeps a thousand players cheap.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::media::{flv, marker};
use crate::rtmp::chunk_reader::{Message, types};
use crate::rtmp::connection::status_of_command;
use crate::rtmp::{ConnectError, RtmpConnection, RtmpUrl};

/// The steady measurement window, shared by all clients: 0 means "not yet set".
#[derive(Debug, Default)]
pub struct Window {
    start_ns: AtomicU64,
    end_ns: AtomicU64,
}

impl Window {
    /// Opens the window now.
    pub fn open(&self) {
        self.start_ns.store(clock::now_ns(), Ordering::Release);
    }

    /// Closes the window now.
    pub fn close(&self) {
        self.end_ns.store(clock::now_ns(), Ordering::Release);
    }

    /// Whether `now_ns` falls inside the window.
    pub fn contains(&self, now_ns: u64) -> bool {
        let start = self.start_ns.load(Ordering::Acquire);
        let end = self.end_ns.load(Ordering::Acquire);
        start != 0 && now_ns >= start && (end == 0 || now_ns < end)
    }
}

/// What a player is told.
#[derive(Debug, Clone)]
pub struct PlayerConfig {
    pub url: RtmpUrl,
    /// Which publisher's markers this player expects.
    pub stream: u32,
    /// Deadline for `NetStream.Play.Start` and the first video frame, from the TCP connect.
    pub join_timeout: Duration,
    pub read_buffer: usize,
}

/// What a player measured. Times are milliseconds from the start of its TCP connect.
#[derive(Debug, Default)]
pub struct PlayerOutcome {
    /// Why the player never reached `NetStream.Play.Start`.
    pub failure: Option<String>,
    /// Why a started player lost its stream before the run ended.
    pub dropped: Option<String>,
    pub play_start_ms: Option<f64>,
    pub first_frame_ms: Option<f64>,
    pub first_keyframe_ms: Option<f64>,
    pub bytes: u64,
    pub bytes_window: u64,
    pub frames: u64,
    pub frames_window: u64,
    /// Frames missing from the sequence (dropped by the server), over the run and in the window.
    pub missing: u64,
    pub missing_window: u64,
    /// Frames carrying another stream's marker (a server mixing streams up).
    pub foreign: u64,
    /// Longest time between two consecutive frames inside the window.
    pub max_gap_ms_window: f64,
    /// Per-frame latency in microseconds, all frames and window frames.
    pub latency_us: Vec<u32>,
    pub latency_window_us: Vec<u32>,
}

/// Per-connection bookkeeping while playing.
struct Tally {
    stream: u32,
    t0: Instant,
    out: PlayerOutcome,
    started: bool,
    refused: Option<String>,
    last_seq: Option<u64>,
    last_frame_ns: u64,
}

impl Tally {
    fn on_message(&mut self, m: Message<'_>, now: Instant, now_ns: u64, in_window: bool) {
        match m.type_id {
            types::VIDEO => {
                let Some(mk) = marker::read(m.data) else { return };
                if mk.stream != self.stream {
                    self.out.foreign += 1;
                    return;
                }
                let since_t0 = ms(now - self.t0);
                self.out.first_frame_ms.get_or_insert(since_t0);
                if flv::is_video_keyframe(m.data) {
                    self.out.first_keyframe_ms.get_or_insert(since_t0);
                }
                // Saturating: a frame cannot arrive before it was sent; u32 µs covers 71 minutes.
                let lat = u32::try_from(now_ns.saturating_sub(mk.sent_ns) / 1000).unwrap_or(u32::MAX);
                self.out.frames += 1;
                self.out.latency_us.push(lat);
                let missing = match self.last_seq {
                    Some(last) if mk.seq > last + 1 => mk.seq - last - 1,
                    _ => 0,
                };
                self.out.missing += missing;
                if in_window {
                    self.out.frames_window += 1;
                    self.out.missing_window += missing;
                    self.out.latency_window_us.push(lat);
                    if self.last_frame_ns != 0 {
                        let gap = (now_ns - self.last_frame_ns.min(now_ns)) as f64 / 1e6;
                        self.out.max_gap_ms_window = self.out.max_gap_ms_window.max(gap);
                    }
                }
                self.last_seq = Some(mk.seq);
                self.last_frame_ns = now_ns;
            }
            types::COMMAND_AMF0 => {
                if let Some(s) = status_of_command(m.data) {
                    if s.code == "NetStream.Play.Start" && !self.started {
                        self.started = true;
                        self.out.play_start_ms = Some(ms(now - self.t0));
                    } else if s.is_error() {
                        self.refused = Some(s.reason());
                    }
                }
            }
            _ => {}
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Plays until `cancel` fires. `resolved` gets one message when the player has received its
/// first frame or failed, so the scenario knows when everyone has joined.
pub async fn run(
    cfg: PlayerConfig,
    window: Arc<Window>,
    cancel: CancellationToken,
    resolved: mpsc::UnboundedSender<()>,
) -> PlayerOutcome {
    let t0 = Instant::now();
    let mut tally = Tally {
        stream: cfg.stream,
        t0,
        out: PlayerOutcome::default(),
        started: false,
        refused: None,
        last_seq: None,
        last_frame_ns: 0,
    };
    let deadline = tokio::time::Instant::from_std(t0 + cfg.join_timeout);
    let setup = async {
        let mut conn = RtmpConnection::open(&cfg.url, cfg.read_buffer, marker::PREFIX_LEN).await?;
        let id = conn.create_stream().await?;
        conn.send_play(id, &cfg.url.name).await?;
        Ok::<_, ConnectError>(conn)
    };
    let mut conn = tokio::select! {
        r = tokio::time::timeout_at(deadline, setup) => match r {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return fail(tally.out, e.to_string(), &resolved),
            Err(_) => return fail(tally.out, "timed out before NetStream.Play.Start".into(), &resolved),
        },
        _ = cancel.cancelled() => return fail(tally.out, "run ended before the player connected".into(), &resolved),
    };
    let mut announced = false;
    loop {
        let read = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(deadline), if !announced => {
                let reason = if tally.started { "no video frame before the join timeout" } else { "timed out before NetStream.Play.Start" };
                return fail(tally.out, reason.into(), &resolved);
            }
            r = conn.read_messages(|m| {
                // One clock reading per read: every message in it reached us at the same time.
                let now = Instant::now();
                let now_ns = clock::ns_of(now);
                let in_window = window.contains(now_ns);
                tally.on_message(m, now, now_ns, in_window);
            }) => r,
        };
        match read {
            Ok(n) => {
                tally.out.bytes += n as u64;
                if window.contains(clock::now_ns()) {
                    tally.out.bytes_window += n as u64;
                }
            }
            Err(e) => {
                if tally.started {
                    tally.out.dropped = Some(e.to_string());
                    break;
                }
                let reason = tally.refused.take().unwrap_or_else(|| e.to_string());
                return fail(tally.out, reason, &resolved);
            }
        }
        if let Some(reason) = tally.refused.take() {
            if tally.started {
                tally.out.dropped = Some(reason);
                break;
            }
            return fail(tally.out, reason, &resolved);
        }
        // Joined means playing and receiving: the steady window waits for every player's first
        // frame (nginx-rtmp makes a joiner wait for the next keyframe).
        if tally.started && tally.out.first_frame_ms.is_some() && !announced {
            announced = true;
            let _ = resolved.send(());
        }
        if conn.has_queued()
            && let Err(e) = conn.flush().await
        {
            tally.out.dropped = Some(e.to_string());
            break;
        }
    }
    if !announced {
        let _ = resolved.send(());
    }
    drop(conn);
    tally.out
}

fn fail(mut out: PlayerOutcome, reason: String, resolved: &mpsc::UnboundedSender<()>) -> PlayerOutcome {
    out.failure = Some(reason);
    let _ = resolved.send(());
    out
}
