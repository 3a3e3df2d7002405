//! Command line: global flags, media selection, and one subcommand per scenario. Every flag also
//! reads an environment variable (`STREAMFLEET_BENCH_*`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// RTMP load tool: publishes real media in real time and plays it back with many players in the
/// same process, measuring per-frame end-to-end latency, join times, delivery, and the server's
/// CPU per delivered GB and memory per player.
///
/// Example (nginx-rtmp on 127.0.0.1:19350, publish and play names are the same there):
///
///   streamfleet-bench --label nginx-rtmp --server-pid $(cat nginx.pid) fanout --players 200
///   --publish-url rtmp://127.0.0.1:19350/live/bench --play-url rtmp://127.0.0.1:19350/live/bench
#[derive(Debug, Parser)]
#[command(name = "streamfleet-bench", version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    /// Name of the server under test, as it appears in reports.
    #[arg(long, env = "STREAMFLEET_BENCH_LABEL", default_value = "server", global = true)]
    pub label: String,
    /// Free-form tag stored with the run (the side-by-side script groups runs by it).
    #[arg(long, env = "STREAMFLEET_BENCH_TAG", default_value = "", global = true)]
    pub tag: String,
    /// PID of the server (its children are included): reports its CPU seconds per delivered GB
    /// and RSS per connected player over the steady window.
    #[arg(long, env = "STREAMFLEET_BENCH_SERVER_PID", global = true)]
    pub server_pid: Option<u32>,
    /// Append the run's JSON line to this file instead of printing it on stdout.
    #[arg(long, env = "STREAMFLEET_BENCH_JSON_OUT", global = true)]
    pub json_out: Option<PathBuf>,
    /// Added to every `{i}` in URLs, so repeated runs can use fresh stream names.
    #[arg(long, env = "STREAMFLEET_BENCH_FIRST_INDEX", default_value_t = 0, global = true)]
    pub first_index: usize,
    /// Tokio worker threads [default: number of CPUs].
    #[arg(long, env = "STREAMFLEET_BENCH_THREADS", global = true)]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

/// Scenarios.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One publisher, N players ramped at a fixed rate; then a steady window.
    Fanout {
        /// Players to start.
        #[arg(long, env = "STREAMFLEET_BENCH_PLAYERS", default_value_t = 50)]
        players: usize,
        /// Players started per second.
        #[arg(long, env = "STREAMFLEET_BENCH_RAMP_RATE", default_value_t = 200.0)]
        ramp_rate: f64,
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        media: MediaArgs,
    },
    /// One publisher, players joining one at a time mid-stream (time to first frame/keyframe).
    Join {
        #[arg(long, env = "STREAMFLEET_BENCH_PLAYERS", default_value_t = 100)]
        players: usize,
        /// Time between two joins.
        #[arg(long, env = "STREAMFLEET_BENCH_INTERVAL", default_value = "200ms", value_parser = humantime::parse_duration)]
        interval: Duration,
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        media: MediaArgs,
    },
    /// P concurrent publishers on distinct streams (`{i}` in the URLs), each watched by players.
    Ingest {
        #[arg(long, env = "STREAMFLEET_BENCH_PUBLISHERS", default_value_t = 10)]
        publishers: usize,
        /// Players per stream (they measure delivery and latency of every stream).
        #[arg(long, env = "STREAMFLEET_BENCH_PLAYERS_PER_STREAM", default_value_t = 1)]
        players_per_stream: usize,
        /// Publishers (and players) started per second.
        #[arg(long, env = "STREAMFLEET_BENCH_RAMP_RATE", default_value_t = 50.0)]
        ramp_rate: f64,
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        media: MediaArgs,
    },
    /// Sequential connect → Publish.Start round trips, each on a new connection.
    Admission {
        /// Publish URL; `{i}` is replaced by the attempt number.
        #[arg(long, env = "STREAMFLEET_BENCH_PUBLISH_URL")]
        publish_url: String,
        #[arg(long, env = "STREAMFLEET_BENCH_COUNT", default_value_t = 500)]
        count: usize,
        /// Per-attempt deadline.
        #[arg(long, env = "STREAMFLEET_BENCH_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Aggregates JSON lines from many runs into docs/benchmarks.md and PNG charts.
    Report(ReportArgs),
}

/// Where the load goes and how long it is measured.
#[derive(Debug, Args, Clone)]
pub struct LoadArgs {
    /// Publish URL (`rtmp://host:port/app/key`); `{i}` is the stream index.
    #[arg(long, env = "STREAMFLEET_BENCH_PUBLISH_URL")]
    pub publish_url: String,
    /// Play URL (`rtmp://host:port/app/name`); `{i}` is the stream index. On nginx-rtmp it is
    /// the publish URL; on the edge it uses the playback name.
    #[arg(long, env = "STREAMFLEET_BENCH_PLAY_URL")]
    pub play_url: String,
    /// Time between publishing and the first player (the server should have seen a keyframe).
    #[arg(long, env = "STREAMFLEET_BENCH_WARMUP", default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Time between the last player joining and the steady window.
    #[arg(long, env = "STREAMFLEET_BENCH_SETTLE", default_value = "3s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// Length of the steady window.
    #[arg(long, env = "STREAMFLEET_BENCH_DURATION", default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// A client that has not started after this long counts as failed.
    #[arg(long, env = "STREAMFLEET_BENCH_JOIN_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub join_timeout: Duration,
    /// Read buffer per player, bytes.
    #[arg(long, env = "STREAMFLEET_BENCH_READ_BUFFER", default_value_t = 32 * 1024)]
    pub read_buffer: usize,
}

/// The media to publish.
#[derive(Debug, Args, Clone)]
pub struct MediaArgs {
    /// Publish this FLV file (H.264 with 4-byte NAL lengths, optional AAC) in a loop.
    #[arg(long, env = "STREAMFLEET_BENCH_FLV", conflicts_with = "synthetic")]
    pub flv: Option<PathBuf>,
    /// Publish synthetic frames (valid FLV/AVC framing around filler) instead of encoded video.
    #[arg(long, env = "STREAMFLEET_BENCH_SYNTHETIC")]
    pub synthetic: bool,
    /// Video bitrate of generated media, e.g. 3M or 800k (audio adds 128k).
    #[arg(long, env = "STREAMFLEET_BENCH_BITRATE", default_value = "3M", value_parser = parse_bitrate)]
    pub bitrate: u64,
    /// Resolution of generated media.
    #[arg(long, env = "STREAMFLEET_BENCH_RESOLUTION", default_value = "1280x720", value_parser = parse_resolution)]
    pub resolution: (u32, u32),
    #[arg(long, env = "STREAMFLEET_BENCH_FPS", default_value_t = 30)]
    pub fps: u32,
    /// Keyframe interval of generated media.
    #[arg(long, env = "STREAMFLEET_BENCH_GOP", default_value = "2s", value_parser = humantime::parse_duration)]
    pub gop: Duration,
    /// Length of generated media (it loops).
    #[arg(long, env = "STREAMFLEET_BENCH_MEDIA_SECONDS", default_value_t = 20)]
    pub media_seconds: u32,
    /// Where generated media is cached.
    #[arg(long, env = "STREAMFLEET_BENCH_MEDIA_CACHE", default_value = "target/bench-media")]
    pub media_cache: PathBuf,
}

/// Inputs and outputs of `report`.
#[derive(Debug, Args, Clone)]
pub struct ReportArgs {
    /// JSON lines written by the runs (several files allowed).
    #[arg(long, env = "STREAMFLEET_BENCH_REPORT_INPUT", required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Markdown file to write; only the part between the generated-section markers is replaced
    /// when it already exists.
    #[arg(long, env = "STREAMFLEET_BENCH_REPORT_OUT", default_value = "docs/benchmarks.md")]
    pub out: PathBuf,
    /// Directory for the PNG charts (linked from the markdown relative to it).
    #[arg(long, env = "STREAMFLEET_BENCH_REPORT_CHARTS", default_value = "docs/benchmarks")]
    pub charts: PathBuf,
    /// Label of the baseline server (ratios are other ÷ baseline).
    #[arg(long, env = "STREAMFLEET_BENCH_BASELINE", default_value = "nginx-rtmp")]
    pub baseline: String,
    /// Label of the server being compared.
    #[arg(long, env = "STREAMFLEET_BENCH_CANDIDATE", default_value = "streamfleet-edge")]
    pub candidate: String,
    /// Extra markdown (e.g. the lease micro-benchmark's figures) inserted verbatim.
    #[arg(long, env = "STREAMFLEET_BENCH_REPORT_EXTRA")]
    pub extra: Vec<PathBuf>,
    /// The command line that produced the runs, shown in the document.
    #[arg(long, env = "STREAMFLEET_BENCH_REPORT_INVOCATION", default_value = "")]
    pub invocation: String,
    /// TrueType font for chart text.
    #[arg(long, env = "STREAMFLEET_BENCH_FONT", default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")]
    pub font: PathBuf,
}

/// Parses `3M`, `800k`, `2500000` into bits per second.
pub fn parse_bitrate(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1_000.0),
        Some('m' | 'M') => (&s[..s.len() - 1], 1_000_000.0),
        _ => (s, 1.0),
    };
    let v: f64 = num.parse().map_err(|_| format!("{s:?} is not a bitrate like 3M or 800k"))?;
    if v.is_nan() || v <= 0.0 {
        return Err(format!("{s:?}: bitrate must be positive"));
    }
    Ok((v * mult).round() as u64)
}

/// Parses `1280x720`.
pub fn parse_resolution(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once('x').ok_or_else(|| format!("{s:?} is not WIDTHxHEIGHT"))?;
    let p = |v: &str| v.parse::<u32>().ok().filter(|v| *v >= 16 && v % 2 == 0);
    match (p(w), p(h)) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err(format!("{s:?}: width and height must be even numbers ≥ 16")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_bitrates_and_resolutions() {
        assert_eq!(parse_bitrate("3M"), Ok(3_000_000));
        assert_eq!(parse_bitrate("800k"), Ok(800_000));
        assert_eq!(parse_bitrate("1.5M"), Ok(1_500_000));
        assert!(parse_bitrate("fast").is_err());
        assert!(parse_bitrate("0").is_err());
        assert_eq!(parse_resolution("1280x720"), Ok((1280, 720)));
        assert!(parse_resolution("1280").is_err());
        assert!(parse_resolution("1281x720").is_err());
    }
}
