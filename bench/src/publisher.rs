//! One simulated encoder: publishes a media plan in real time, looping it with increasing
//! timestamps, and stamps every coded video frame with a marker carrying its sequence number and
//! send time. It also measures how late it sends against the plan's schedule: a late publisher
//! means the load tool (or the machine) is saturated, and the run's latencies are suspect.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::media::flv::TagKind;
use crate::media::marker::{self, Marker};
use crate::media::plan::MediaPlan;
use crate::rtmp::chunk_reader::types;
use crate::rtmp::connection::status_of_command;
use crate::rtmp::{ConnectError, RtmpConnection, RtmpUrl};

/// What a publisher is told.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    pub url: RtmpUrl,
    /// Stream index written into markers; players of this stream expect it.
    pub stream: u32,
    pub plan: Arc<MediaPlan>,
    /// Deadline for `NetStream.Publish.Start`, from the TCP connect.
    pub start_timeout: Duration,
    /// Where the connection is set up and timed (connect to `NetStream.Publish.Start`); `None`:
    /// on the runtime that sends the media.
    pub setup: Option<tokio::runtime::Handle>,
}

/// What a publisher measured.
#[derive(Debug, Default, Clone)]
pub struct PublisherOutcome {
    pub failure: Option<String>,
    pub dropped: Option<String>,
    /// TCP connect → `NetStream.Publish.Start`, milliseconds.
    pub publish_start_ms: Option<f64>,
    pub video_frames: u64,
    pub bytes: u64,
    /// Worst lateness of a send against the real-time schedule, milliseconds.
    pub max_lag_ms: f64,
}

/// Publishes until `cancel` fires; `ready` receives `Ok` once publishing started (or the reason
/// it could not).
pub async fn run(
    cfg: PublisherConfig,
    cancel: CancellationToken,
    ready: oneshot::Sender<Result<(), String>>,
) -> PublisherOutcome {
    let mut out = PublisherOutcome::default();
    let (url, start_timeout) = (cfg.url.clone(), cfg.start_timeout);
    let setup = async move {
        let t0 = Instant::now();
        let setup = RtmpConnection::open_publishing(&url, 16 * 1024);
        let started =
            tokio::time::timeout(start_timeout, setup).await.unwrap_or(Err(ConnectError::PublishStartTimeout));
        (started, t0.elapsed())
    };
    let (started, took) = match &cfg.setup {
        None => setup.await,
        Some(handle) => handle
            .spawn(setup)
            .await
            .unwrap_or_else(|e| (Err(ConnectError::Protocol(format!("setup task failed: {e}"))), Duration::ZERO)),
    };
    let started = started.and_then(|(conn, id)| Ok((conn.into_current_runtime()?, id)));
    let (mut conn, stream_id) = match started {
        Ok(x) => x,
        Err(e) => {
            out.failure = Some(e.to_string());
            let _ = ready.send(Err(e.to_string()));
            return out;
        }
    };
    out.publish_start_ms = Some(took.as_secs_f64() * 1000.0);
    if let Err(e) = send_loop(&mut conn, stream_id, &cfg, &cancel, &mut out, ready).await {
        out.dropped = Some(e.to_string());
    }
    let _ = conn.delete_stream(stream_id).await;
    conn.shutdown().await;
    out
}

async fn send_loop(
    conn: &mut RtmpConnection,
    stream_id: u32,
    cfg: &PublisherConfig,
    cancel: &CancellationToken,
    out: &mut PublisherOutcome,
    ready: oneshot::Sender<Result<(), String>>,
) -> Result<(), ConnectError> {
    let plan = &cfg.plan;
    if let Some(meta) = &plan.metadata {
        conn.queue_metadata(stream_id, meta)?;
    }
    conn.queue_media(types::VIDEO, 0, stream_id, plan.video_header.clone())?;
    if let Some(a) = &plan.audio_header {
        conn.queue_media(types::AUDIO, 0, stream_id, a.clone())?;
    }
    conn.flush().await?;
    let _ = ready.send(Ok(()));
    let start = tokio::time::Instant::now();
    let (mut index, mut lap, mut seq) = (0usize, 0u64, 0u64);
    loop {
        let frame = &plan.frames[index];
        let ts_ms = lap * u64::from(plan.loop_ms) + u64::from(frame.offset_ms);
        let due = start + Duration::from_millis(ts_ms);
        if tokio::time::Instant::now() < due {
            let mut refused = None;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(due) => {}
                r = conn.read_messages(|m| {
                    if m.type_id == types::COMMAND_AMF0
                        && let Some(s) = status_of_command(m.data)
                        && s.is_error()
                    {
                        refused = Some(s.reason());
                    }
                }) => { r?; }
            }
            if let Some(reason) = refused {
                return Err(ConnectError::Refused(reason));
            }
            if tokio::time::Instant::now() < due {
                conn.flush().await?;
                continue;
            }
        }
        out.max_lag_ms = out.max_lag_ms.max((tokio::time::Instant::now() - due).as_secs_f64() * 1000.0);
        // RTMP timestamps are 32-bit milliseconds and wrap after 49 days, as the spec intends.
        let ts = ts_ms as u32;
        let data = match frame.kind {
            TagKind::Video => {
                let m = Marker { stream: cfg.stream, seq, sent_ns: clock::now_ns() };
                seq += 1;
                out.video_frames += 1;
                marker::stamp(&frame.data, &m)
            }
            _ => frame.data.clone(),
        };
        out.bytes += data.len() as u64;
        conn.queue_media(frame.kind.rtmp_type(), ts, stream_id, data)?;
        index += 1;
        if index == plan.frames.len() {
            index = 0;
            lap += 1;
        }
        // Frames due at the same instant go out in one write.
        let next = &plan.frames[index];
        let next_ts = lap * u64::from(plan.loop_ms) + u64::from(next.offset_ms);
        if next_ts != ts_ms {
            conn.flush().await?;
        }
    }
}
