//! Turns parsed flags into a run: loads or generates the media, builds the scenario, runs it and
//! writes the JSON line and the table.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::admission::{self, AdmissionConfig};
use crate::cli::{Cli, Command, LoadArgs, MediaArgs};
use crate::error::BenchError;
use crate::media::flv;
use crate::media::generate::{self, GenerateSpec};
use crate::media::plan::MediaPlan;
use crate::media::synthetic::{self, SyntheticSpec};
use crate::report;
use crate::scenario::{self, LoadSpec};
use crate::stats::run_report::{ClientCounts, Params};
use crate::stats::{RunReport, Summary};

/// Loads the media the flags ask for; returns the plan and a short description.
pub async fn load_media(m: &MediaArgs) -> Result<(Arc<MediaPlan>, String), BenchError> {
    let gop_frames = (m.gop.as_secs_f64() * f64::from(m.fps)).round().max(1.0) as u32;
    if m.synthetic {
        let spec = SyntheticSpec {
            video_bps: m.bitrate,
            fps: m.fps,
            gop_frames,
            frames: (m.media_seconds * m.fps).max(gop_frames),
            audio: true,
        };
        return Ok((Arc::new(synthetic::plan(spec)), format!("synthetic {}k", m.bitrate / 1000)));
    }
    let path = match &m.flv {
        Some(p) => p.clone(),
        None => {
            let spec = GenerateSpec {
                width: m.resolution.0,
                height: m.resolution.1,
                fps: m.fps,
                video_kbps: (m.bitrate / 1000) as u32,
                gop_seconds: m.gop.as_secs().max(1) as u32,
                seconds: m.media_seconds,
            };
            generate::cached(&spec, &m.media_cache).await?
        }
    };
    let bytes = tokio::fs::read(&path).await.map_err(|source| BenchError::File { path: path.clone(), source })?;
    let tags = flv::parse(Bytes::from(bytes)).map_err(|source| BenchError::Flv { path: path.clone(), source })?;
    let plan = MediaPlan::from_tags(&tags).map_err(|e| BenchError::Media(format!("{}: {e}", path.display())))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok((Arc::new(plan), name))
}

fn load_spec(cli: &Cli, scenario: &str, load: &LoadArgs, media_name: String) -> LoadSpec {
    LoadSpec {
        scenario: scenario.into(),
        server_label: cli.label.clone(),
        tag: cli.tag.clone(),
        publish_url: load.publish_url.clone(),
        play_url: load.play_url.clone(),
        publishers: 1,
        players: 0,
        publisher_interval: Duration::from_millis(1),
        player_interval: Duration::from_millis(5),
        warmup: load.warmup,
        settle: load.settle,
        window: load.duration,
        join_timeout: load.join_timeout,
        server_pid: cli.server_pid,
        read_buffer: load.read_buffer,
        media_name,
        first_index: cli.first_index,
    }
}

fn interval_for_rate(rate: f64) -> Duration {
    Duration::from_secs_f64(1.0 / rate.max(0.001))
}

/// Runs the selected subcommand.
pub async fn run(cli: Cli) -> Result<(), BenchError> {
    let report = match &cli.command {
        Command::Fanout { players, ramp_rate, load, media } => {
            let (plan, name) = load_media(media).await?;
            let mut spec = load_spec(&cli, "fanout", load, name);
            spec.players = *players;
            spec.player_interval = interval_for_rate(*ramp_rate);
            scenario::run_load(&spec, plan).await?
        }
        Command::Join { players, interval, load, media } => {
            let (plan, name) = load_media(media).await?;
            let mut spec = load_spec(&cli, "join", load, name);
            spec.players = *players;
            spec.player_interval = *interval;
            scenario::run_load(&spec, plan).await?
        }
        Command::Ingest { publishers, players_per_stream, ramp_rate, load, media } => {
            let (plan, name) = load_media(media).await?;
            let mut spec = load_spec(&cli, "ingest", load, name);
            spec.publishers = *publishers;
            spec.players = publishers * players_per_stream;
            spec.publisher_interval = interval_for_rate(*ramp_rate);
            spec.player_interval = interval_for_rate(*ramp_rate);
            scenario::run_load(&spec, plan).await?
        }
        Command::Admission { publish_url, count, timeout } => {
            let cfg = AdmissionConfig {
                url_template: publish_url.clone(),
                count: *count,
                timeout: *timeout,
                first_index: cli.first_index,
            };
            let tool_start = crate::procstat::sample_self();
            let started = std::time::Instant::now();
            let out =
                admission::run(&cfg).await.map_err(|message| BenchError::Url { url: publish_url.clone(), message })?;
            let elapsed = started.elapsed().as_secs_f64();
            let tool_end = crate::procstat::sample_self();
            let mut accepted = out.accepted_ms.clone();
            RunReport {
                scenario: "admission".into(),
                server: cli.label.clone(),
                tag: cli.tag.clone(),
                unix_time: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
                command: std::env::args().collect::<Vec<_>>().join(" "),
                params: Params { publishers: *count, window_s: elapsed, ..Default::default() },
                publishers: Some(ClientCounts {
                    requested: *count,
                    connected: out.accepted_ms.len(),
                    failed: out.failures.values().sum(),
                    dropped: 0,
                    reasons: out.failures.clone(),
                }),
                admission_ms: Summary::of(&mut accepted),
                tool: crate::stats::run_report::ToolStats {
                    cpu_s: tool_end.cpu_since(&tool_start),
                    cpu_pct: tool_end.cpu_since(&tool_start) / elapsed.max(1e-9) * 100.0,
                    rss_kib: tool_end.rss_kib,
                    ..Default::default()
                },
                ..Default::default()
            }
        }
        Command::Report(args) => return report::run(args),
    };
    emit(&cli, &report)
}

fn emit(cli: &Cli, report: &RunReport) -> Result<(), BenchError> {
    let line = serde_json::to_string(report).map_err(|e| BenchError::Report(e.to_string()))?;
    match &cli.json_out {
        Some(path) => {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| BenchError::File { path: path.clone(), source })?;
            writeln!(f, "{line}").map_err(|source| BenchError::File { path: path.clone(), source })?;
            print!("{}", report.table());
        }
        None => {
            println!("{line}");
            eprint!("{}", report.table());
        }
    }
    Ok(())
}
