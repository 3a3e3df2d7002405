//! Runs a load scenario: publishers start (ramped), the stream warms up, players join (ramped),
//! the run settles, then a steady window is measured: per-frame latency, delivery, and the
//! server's CPU and memory over exactly that window. `fanout`, `join` and `ingest` are all this
//! one engine with different shapes (one stream and many players; players joining one at a time;
//! many streams with a player each).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::error::BenchError;
use crate::media::plan::MediaPlan;
use crate::player::{self, PlayerConfig, PlayerOutcome, Window};
use crate::procstat::{self, ProcSample};
use crate::publisher::{self, PublisherConfig, PublisherOutcome};
use crate::rtmp::RtmpUrl;
use crate::stats::Summary;
use crate::stats::run_report::{ClientCounts, FrameStats, Params, RunReport, ServerStats, StreamCounts, ToolStats};

/// The shape of a load run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub scenario: String,
    pub server_label: String,
    pub tag: String,
    /// Publish and play URL templates (`{i}` = stream index).
    pub publish_url: String,
    pub play_url: String,
    pub publishers: usize,
    /// Total players, spread round-robin over the streams whose publisher started.
    pub players: usize,
    pub publisher_interval: Duration,
    pub player_interval: Duration,
    /// After the publishers start, before players join (lets the server see a keyframe).
    pub warmup: Duration,
    /// After everyone joined, before the window (lets a GOP-cache burst drain).
    pub settle: Duration,
    pub window: Duration,
    pub join_timeout: Duration,
    pub server_pid: Option<u32>,
    pub read_buffer: usize,
    pub media_name: String,
    /// Added to the stream index in `{i}` (fresh names per run).
    pub first_index: usize,
}

/// Runs the scenario and returns its report.
pub async fn run_load(spec: &LoadSpec, plan: Arc<MediaPlan>) -> Result<RunReport, BenchError> {
    let cancel = CancellationToken::new();
    // Stop every client however this function ends.
    let _stop = cancel.clone().drop_guard();
    let server_sample = |when: &str| -> Result<Option<ProcSample>, BenchError> {
        match spec.server_pid {
            None => Ok(None),
            Some(pid) => procstat::sample_tree(pid)
                .map(Some)
                .map_err(|m| BenchError::Proc { pid, message: format!("{m} ({when})") }),
        }
    };
    // Idle RSS: with the warm-up's sample it gives the memory per live stream (density).
    let idle = server_sample("at start")?;

    // Publishers' connections are set up (and timed) on a thread of their own: the send thread of
    // a thousand publishers runs tens of milliseconds late at times, and a handshake queued behind
    // it would time the load tool, not the server's admission. Declared first, so it outlives the
    // publishers' runtime (a TLS connection stays registered with it).
    let setup_rt = RuntimeGuard::one_thread("sf-bench-setup", "set-up")?;
    // Publishers get their own runtime thread, so a thousand players' reads never delay a frame's
    // send (its send time is stamped when it is written, but the schedule should stay real time).
    let publisher_rt = RuntimeGuard::one_thread("sf-bench-publisher", "publisher")?;
    let mut pub_tasks = Vec::new();
    let mut pub_ready = Vec::new();
    let mut ticker = tokio::time::interval(spec.publisher_interval.max(Duration::from_micros(1)));
    for i in 0..spec.publishers {
        ticker.tick().await;
        let url = RtmpUrl::parse_indexed(&spec.publish_url, spec.first_index + i)
            .map_err(|message| BenchError::Url { url: spec.publish_url.clone(), message })?;
        let cfg = PublisherConfig {
            url,
            stream: i as u32,
            plan: plan.clone(),
            start_timeout: spec.join_timeout,
            setup: Some(setup_rt.handle().clone()),
        };
        let (tx, rx) = oneshot::channel();
        pub_tasks.push(publisher_rt.handle().spawn(publisher::run(cfg, cancel.clone(), tx)));
        pub_ready.push(rx);
    }
    let mut live = Vec::new();
    let mut first_failure = None;
    for (i, rx) in pub_ready.into_iter().enumerate() {
        match rx.await {
            Ok(Ok(())) => live.push(i),
            Ok(Err(reason)) => {
                first_failure.get_or_insert(reason);
            }
            Err(_) => {
                first_failure.get_or_insert("publisher task ended".to_string());
            }
        }
    }
    if live.is_empty() {
        return Err(BenchError::Publisher(first_failure.unwrap_or_else(|| "no publishers requested".into())));
    }
    tokio::time::sleep(spec.warmup).await;
    let before = server_sample("before players")?;

    // Players.
    let window = Arc::new(Window::default());
    let (resolved_tx, mut resolved_rx) = mpsc::unbounded_channel();
    let mut player_tasks = Vec::with_capacity(spec.players);
    let mut player_streams = Vec::with_capacity(spec.players);
    let mut ticker = tokio::time::interval(spec.player_interval.max(Duration::from_micros(1)));
    for i in 0..spec.players {
        ticker.tick().await;
        let stream = live[i % live.len()];
        let url = RtmpUrl::parse_indexed(&spec.play_url, spec.first_index + stream)
            .map_err(|message| BenchError::Url { url: spec.play_url.clone(), message })?;
        let cfg =
            PlayerConfig { url, stream: stream as u32, join_timeout: spec.join_timeout, read_buffer: spec.read_buffer };
        player_tasks.push(tokio::spawn(player::run(cfg, window.clone(), cancel.clone(), resolved_tx.clone())));
        player_streams.push(stream);
    }
    drop(resolved_tx);
    // Every player reports once (started or failed); each has its own join deadline, so this
    // ends by the last player's deadline at the latest.
    let mut resolved = 0;
    while resolved < spec.players && resolved_rx.recv().await.is_some() {
        resolved += 1;
    }
    tokio::time::sleep(spec.settle).await;

    // The steady window.
    let tool_start = procstat::sample_self();
    let machine_start = procstat::machine_busy_s();
    let server_start = server_sample("window start")?;
    window.open();
    let opened = tokio::time::Instant::now();
    tokio::time::sleep(spec.window).await;
    window.close();
    let window_s = opened.elapsed().as_secs_f64();
    let server_end = server_sample("window end")?;
    let tool_end = procstat::sample_self();
    let machine_end = procstat::machine_busy_s();

    cancel.cancel();
    let mut players = Vec::with_capacity(player_tasks.len());
    for t in player_tasks {
        players.push(
            t.await.unwrap_or_else(|e| PlayerOutcome { failure: Some(format!("task: {e}")), ..Default::default() }),
        );
    }
    let mut pubs = Vec::with_capacity(pub_tasks.len());
    for t in pub_tasks {
        pubs.push(
            t.await.unwrap_or_else(|e| PublisherOutcome { failure: Some(format!("task: {e}")), ..Default::default() }),
        );
    }

    let streams = intact_streams(&pubs, player_streams.iter().copied().zip(players.iter()));
    let mut report = summarize(spec, &plan, players, &pubs, window_s);
    report.streams = Some(streams);
    let gb = report.delivered_mbps * window_s / 8.0 / 1000.0;
    let per_gb = |cpu: f64| (gb > 0.0).then(|| cpu / gb);
    if let (Some(pid), Some(b), Some(s), Some(e)) = (spec.server_pid, before, server_start, server_end) {
        let cpu = e.cpu_since(&s);
        let connected = report.players.as_ref().map(|p| p.connected).unwrap_or(0);
        let publishers = live.len();
        report.server_stats = Some(ServerStats {
            pid,
            cpu_s: cpu,
            cpu_pct: cpu / window_s * 100.0,
            cpu_s_per_gb: per_gb(cpu),
            rss_before_kib: b.rss_kib,
            rss_after_kib: e.rss_kib,
            rss_per_player_kib: (connected > 0).then(|| (e.rss_kib as f64 - b.rss_kib as f64) / connected as f64),
            rss_idle_kib: idle.map(|i| i.rss_kib),
            rss_per_publisher_kib: idle.map(|i| (b.rss_kib as f64 - i.rss_kib as f64) / publishers as f64),
        });
    }
    let tool_cpu = tool_end.cpu_since(&tool_start);
    let server_cpu = report.server_stats.as_ref().map(|s| s.cpu_s);
    let other_load_cores = match (machine_start, machine_end, server_cpu) {
        // Tick-based totals against nanosecond parts: clamp the rounding noise at 0.
        (Some(a), Some(b), Some(server)) => Some(((b - a - server - tool_cpu) / window_s).max(0.0)),
        _ => None,
    };
    report.tool = ToolStats {
        other_load_cores,
        cpu_s: tool_cpu,
        cpu_pct: tool_cpu / window_s * 100.0,
        cpu_s_per_gb: per_gb(tool_cpu),
        rss_kib: tool_end.rss_kib,
        publisher_max_lag_ms: pubs.iter().map(|p| p.max_lag_ms).fold(0.0, f64::max),
    };
    Ok(report)
}

/// Counts the streams that came through whole: publisher up to the end, at least one player,
/// and every player of the stream up to the end with window frames, none missing, none foreign.
pub fn intact_streams<'a>(
    pubs: &[PublisherOutcome],
    players: impl Iterator<Item = (usize, &'a PlayerOutcome)>,
) -> StreamCounts {
    // Per stream: (has a player, every player so far is whole).
    let mut seen: Vec<(bool, bool)> = vec![(false, true); pubs.len()];
    for (stream, p) in players {
        let Some(s) = seen.get_mut(stream) else { continue };
        let whole = p.failure.is_none()
            && p.dropped.is_none()
            && p.frames_window > 0
            && p.missing_window == 0
            && p.foreign == 0;
        *s = (true, s.1 && whole);
    }
    let live = pubs.iter().filter(|p| p.failure.is_none()).count();
    let intact = pubs
        .iter()
        .zip(&seen)
        .filter(|(p, (watched, whole))| p.failure.is_none() && p.dropped.is_none() && *watched && *whole)
        .count();
    StreamCounts { live, intact }
}

fn count<'a>(
    requested: usize,
    outcomes: impl Iterator<Item = (&'a Option<String>, &'a Option<String>)>,
) -> ClientCounts {
    let mut c = ClientCounts { requested, ..Default::default() };
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for (failure, dropped) in outcomes {
        match failure {
            Some(f) => {
                c.failed += 1;
                *reasons.entry(f.clone()).or_default() += 1;
            }
            None => {
                c.connected += 1;
                if let Some(d) = dropped {
                    c.dropped += 1;
                    *reasons.entry(format!("dropped: {d}")).or_default() += 1;
                }
            }
        }
    }
    c.reasons = reasons;
    c
}

/// Owns one of the tool's runtimes and shuts it down without blocking (dropping a runtime inside async
/// code would panic).
struct RuntimeGuard(Option<tokio::runtime::Runtime>);

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl RuntimeGuard {
    /// A runtime with one worker thread named `thread`; `what` names it in the error.
    fn one_thread(thread: &str, what: &str) -> Result<RuntimeGuard, BenchError> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(thread)
            .enable_all()
            .build()
            .map(|rt| RuntimeGuard(Some(rt)))
            .map_err(|e| BenchError::Publisher(format!("cannot start the {what} runtime: {e}")))
    }

    fn handle(&self) -> tokio::runtime::Handle {
        match &self.0 {
            Some(rt) => rt.handle().clone(),
            // Only `drop` takes the runtime out.
            None => unreachable!("runtime used after shutdown"),
        }
    }
}

/// Turns the clients' outcomes into the report (server and tool figures are added by the caller).
pub fn summarize(
    spec: &LoadSpec,
    plan: &MediaPlan,
    mut players: Vec<PlayerOutcome>,
    pubs: &[PublisherOutcome],
    window_s: f64,
) -> RunReport {
    let player_counts = count(spec.players, players.iter().map(|p| (&p.failure, &p.dropped)));
    let pub_counts = count(spec.publishers, pubs.iter().map(|p| (&p.failure, &p.dropped)));
    let mut publish_start: Vec<f64> = pubs.iter().filter_map(|p| p.publish_start_ms).collect();
    let collect = |f: &dyn Fn(&PlayerOutcome) -> Option<f64>| -> Option<Summary> {
        let mut v: Vec<f64> = players.iter().filter_map(f).collect();
        Summary::of(&mut v)
    };
    let play_start_ms = collect(&|p| p.play_start_ms);
    let first_frame_samples_ms: Vec<f64> = players.iter().filter_map(|p| p.first_frame_ms).collect();
    let first_frame_ms = collect(&|p| p.first_frame_ms);
    let first_keyframe_ms = collect(&|p| p.first_keyframe_ms);
    let mut gaps: Vec<f64> = players.iter().filter(|p| p.frames_window > 1).map(|p| p.max_gap_ms_window).collect();
    gaps.sort_by(f64::total_cmp);
    let frames = FrameStats {
        received: players.iter().map(|p| p.frames_window).sum(),
        missing: players.iter().map(|p| p.missing_window).sum(),
        foreign: players.iter().map(|p| p.foreign).sum(),
        max_gap_ms: gaps.last().copied().unwrap_or(0.0),
        player_max_gap_p99_ms: crate::stats::percentile(&gaps, 99.0),
    };
    let bytes_window: u64 = players.iter().map(|p| p.bytes_window).sum();
    let delivered_mbps = bytes_window as f64 * 8.0 / window_s.max(1e-9) / 1e6;
    let mut all: Vec<u32> = Vec::with_capacity(players.iter().map(|p| p.latency_us.len()).sum());
    let mut steady: Vec<u32> = Vec::with_capacity(players.iter().map(|p| p.latency_window_us.len()).sum());
    for p in &mut players {
        all.append(&mut p.latency_us);
        steady.append(&mut p.latency_window_us);
    }
    RunReport {
        scenario: spec.scenario.clone(),
        server: spec.server_label.clone(),
        tag: spec.tag.clone(),
        unix_time: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        params: Params {
            players: spec.players,
            publishers: spec.publishers,
            ramp_per_s: 1.0 / spec.player_interval.as_secs_f64().max(1e-9),
            interval_ms: Some(spec.player_interval.as_secs_f64() * 1000.0),
            window_s,
            settle_s: spec.settle.as_secs_f64(),
            media: spec.media_name.clone(),
            media_kbps: plan.bitrate_bps() / 1000.0,
            gop_ms: plan.gop_ms,
            fps: plan.fps,
        },
        per_player_mbps: (player_counts.connected > 0).then(|| delivered_mbps / player_counts.connected as f64),
        players: Some(player_counts),
        publishers: Some(pub_counts),
        play_start_ms,
        first_frame_ms,
        first_keyframe_ms,
        latency_window_ms: Summary::of_micros_as_ms(&mut steady),
        latency_all_ms: Summary::of_micros_as_ms(&mut all),
        delivered_mbps,
        frames,
        server_stats: None,
        tool: ToolStats::default(),
        admission_ms: None,
        publish_start_ms: Summary::of(&mut publish_start),
        streams: None,
        first_frame_samples_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn player(frames: u64, missing: u64, dropped: bool) -> PlayerOutcome {
        PlayerOutcome {
            frames_window: frames,
            missing_window: missing,
            dropped: dropped.then(|| "reset".to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn a_stream_is_intact_only_if_its_publisher_and_every_player_came_through() {
        let ok = PublisherOutcome::default();
        let refused = PublisherOutcome { failure: Some("refused".into()), ..Default::default() };
        let dropped = PublisherOutcome { dropped: Some("reset".into()), ..Default::default() };
        // Streams: 0 whole (two players), 1 one player missed frames, 2 publisher refused,
        // 3 publisher dropped, 4 no player, 5 player dropped, 6 whole.
        let pubs = vec![ok.clone(), ok.clone(), refused, dropped, ok.clone(), ok.clone(), ok];
        let players = [
            (0, player(60, 0, false)),
            (0, player(60, 0, false)),
            (1, player(60, 0, false)),
            (1, player(55, 5, false)),
            (3, player(60, 0, false)),
            (5, player(60, 0, true)),
            (6, player(60, 0, false)),
            // Out of range (never happens in a run) is ignored rather than a panic.
            (99, player(60, 0, false)),
        ];
        let c = intact_streams(&pubs, players.iter().map(|(s, p)| (*s, p)));
        assert_eq!(c, StreamCounts { live: 6, intact: 2 });
        let starved = [(0, player(0, 0, false))];
        let c = intact_streams(&pubs[..1], starved.iter().map(|(s, p)| (*s, p)));
        assert_eq!(c, StreamCounts { live: 1, intact: 0 });
    }

    #[test]
    fn summarize_reports_the_publishers_admission_times() {
        let spec = LoadSpec {
            scenario: "ingest".into(),
            server_label: "x".into(),
            tag: "density-3".into(),
            publish_url: String::new(),
            play_url: String::new(),
            publishers: 3,
            players: 0,
            publisher_interval: Duration::from_millis(10),
            player_interval: Duration::from_millis(10),
            warmup: Duration::ZERO,
            settle: Duration::ZERO,
            window: Duration::from_secs(1),
            join_timeout: Duration::from_secs(1),
            server_pid: None,
            read_buffer: 1024,
            media_name: "m".into(),
            first_index: 0,
        };
        let plan = crate::media::synthetic::plan(crate::media::synthetic::SyntheticSpec {
            video_bps: 1_000_000,
            fps: 30,
            gop_frames: 60,
            frames: 120,
            audio: false,
        });
        let p = |ms: Option<f64>| PublisherOutcome {
            publish_start_ms: ms,
            failure: ms.is_none().then(|| "refused".into()),
            ..Default::default()
        };
        let r = summarize(&spec, &plan, Vec::new(), &[p(Some(4.0)), p(Some(2.0)), p(None)], 1.0);
        let s = r.publish_start_ms.unwrap();
        assert_eq!((s.n, s.p50, s.max), (2, 2.0, 4.0));
        assert_eq!(r.publishers.unwrap().failed, 1);
        assert_eq!(r.params.gop_ms, 2000);
        // 1 Mbit/s video over a 2 s GOP is 250,000 bytes (filler rounding aside).
        let gop = r.params.gop_kib().unwrap();
        assert!((gop - 250_000.0 / 1024.0).abs() < 2.0, "{gop}");
    }
}
