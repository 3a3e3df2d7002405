//! The result of one run: serialized as one JSON line (what `report` aggregates) and printed as
//! a readable table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::Summary;

/// Connected/failed counts for one kind of client, with the server's reasons.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientCounts {
    pub requested: usize,
    /// Reached `Play.Start`/`Publish.Start`.
    pub connected: usize,
    /// Never started.
    pub failed: usize,
    /// Started, then lost the stream before the run ended (resets, server disconnects).
    pub dropped: usize,
    /// Failure and drop reasons, with counts.
    pub reasons: BTreeMap<String, usize>,
}

/// The server process tree under test, over the steady window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerStats {
    pub pid: u32,
    pub cpu_s: f64,
    /// Share of one core, percent.
    pub cpu_pct: f64,
    /// CPU seconds per delivered GB (10^9 bytes received by players).
    pub cpu_s_per_gb: Option<f64>,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// (RSS after players joined − RSS before) ÷ connected players, KiB.
    pub rss_per_player_kib: Option<f64>,
    /// RSS before the first publisher connected, KiB (runs from older builds have none).
    #[serde(default)]
    pub rss_idle_kib: Option<u64>,
    /// (RSS once every publisher is up and the warm-up has filled the GOP caches − idle RSS) ÷
    /// connected publishers, KiB: what one live stream costs, its GOP cache included.
    #[serde(default)]
    pub rss_per_publisher_kib: Option<f64>,
}

/// The load tool's own cost over the steady window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolStats {
    pub cpu_s: f64,
    pub cpu_pct: f64,
    pub cpu_s_per_gb: Option<f64>,
    pub rss_kib: u64,
    /// Worst lateness of any publisher against its real-time schedule, ms.
    pub publisher_max_lag_ms: f64,
    /// CPU the rest of the machine used in the window (all busy CPU minus the server and the
    /// load tool), in cores: anything well above 0 means the figures were disturbed.
    #[serde(default)]
    pub other_load_cores: Option<f64>,
}

/// Frame delivery over the steady window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FrameStats {
    pub received: u64,
    pub missing: u64,
    /// Frames with another stream's marker (should be 0).
    pub foreign: u64,
    /// Longest gap between two frames at any player.
    pub max_gap_ms: f64,
    /// 99th percentile over players of each player's longest gap.
    pub player_max_gap_p99_ms: Option<f64>,
}

/// Per-stream integrity of a multi-stream run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamCounts {
    /// Streams whose publisher reached `Publish.Start`.
    pub live: usize,
    pub intact: usize,
}

/// Scenario parameters as run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub players: usize,
    pub publishers: usize,
    /// Players started per second (0 when `interval_ms` is used).
    pub ramp_per_s: f64,
    pub interval_ms: Option<f64>,
    pub window_s: f64,
    pub settle_s: f64,
    pub media: String,
    pub media_kbps: f64,
    pub gop_ms: u32,
    pub fps: f64,
}

impl Params {
    /// Bytes of one GOP of the published media (audio included): what a GOP cache holds per
    /// stream at most, the computed share of RSS per publisher that is cached media.
    pub fn gop_kib(&self) -> Option<f64> {
        (self.media_kbps > 0.0 && self.gop_ms > 0)
            .then(|| self.media_kbps * 1000.0 / 8.0 * f64::from(self.gop_ms) / 1000.0 / 1024.0)
    }
}

/// One run, one JSON line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// `fanout`, `join`, `ingest` or `admission`.
    pub scenario: String,
    /// Which server this was (`--label`, e.g. `nginx-rtmp`, `streamfleet-edge`).
    pub server: String,
    /// Free-form tag the side-by-side script uses to group runs (e.g. `fanout-200`).
    #[serde(default)]
    pub tag: String,
    pub unix_time: u64,
    pub command: String,
    pub params: Params,
    pub players: Option<ClientCounts>,
    pub publishers: Option<ClientCounts>,
    /// TCP connect → `NetStream.Play.Start`.
    pub play_start_ms: Option<Summary>,
    /// TCP connect → first video frame / first keyframe.
    pub first_frame_ms: Option<Summary>,
    pub first_keyframe_ms: Option<Summary>,
    /// Per-frame end-to-end latency in the steady window and over every frame.
    pub latency_window_ms: Option<Summary>,
    pub latency_all_ms: Option<Summary>,
    /// Bytes received by all players in the window, as Mbit/s.
    pub delivered_mbps: f64,
    /// Average per connected player, Mbit/s.
    pub per_player_mbps: Option<f64>,
    pub frames: FrameStats,
    /// Streams whose publisher and every player stayed up, and whose players received window
    /// frames with none missing and none foreign, out of the streams whose publisher started.
    #[serde(default)]
    pub streams: Option<StreamCounts>,
    pub server_stats: Option<ServerStats>,
    pub tool: ToolStats,
    /// Admission round trips (TCP connect → `Publish.Start`).
    pub admission_ms: Option<Summary>,
    /// Publishers of a load run: TCP connect → `NetStream.Publish.Start`, at the run's ramp rate.
    #[serde(default)]
    pub publish_start_ms: Option<Summary>,
    /// Every player's time to first frame (for distribution charts).
    #[serde(default)]
    pub first_frame_samples_ms: Vec<f64>,
}

fn s(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}")).unwrap_or_else(|| "-".into())
}

fn dist(name: &str, d: &Option<Summary>, out: &mut String) {
    if let Some(d) = d {
        let _ = writeln!(
            out,
            "  {name:<24} p50 {:>9.1}  p95 {:>9.1}  p99 {:>9.1}  max {:>9.1}  (n={})",
            d.p50, d.p95, d.p99, d.max, d.n
        );
    }
}

impl RunReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "== {} against {} {}", self.scenario, self.server, self.tag);
        let p = &self.params;
        let _ = writeln!(
            out,
            "  media {} ({:.0} kbit/s, GOP {} ms, {:.0} fps); window {:.1} s",
            p.media, p.media_kbps, p.gop_ms, p.fps, p.window_s
        );
        for (what, c) in [("players", &self.players), ("publishers", &self.publishers)] {
            if let Some(c) = c {
                let _ = writeln!(
                    out,
                    "  {what:<24} {} requested, {} connected, {} failed, {} dropped",
                    c.requested, c.connected, c.failed, c.dropped
                );
                for (reason, n) in &c.reasons {
                    let _ = writeln!(out, "    {n:>6} × {reason}");
                }
            }
        }
        let _ = writeln!(out, "  (milliseconds)");
        dist("play start", &self.play_start_ms, &mut out);
        dist("first frame", &self.first_frame_ms, &mut out);
        dist("first keyframe", &self.first_keyframe_ms, &mut out);
        dist("latency (window)", &self.latency_window_ms, &mut out);
        dist("latency (all frames)", &self.latency_all_ms, &mut out);
        dist("admission", &self.admission_ms, &mut out);
        dist("publish start", &self.publish_start_ms, &mut out);
        if let Some(st) = &self.streams {
            let _ = writeln!(out, "  streams                  {} live, {} intact", st.live, st.intact);
        }
        if self.players.is_some() {
            let f = &self.frames;
            let _ = writeln!(
                out,
                "  delivered                {:.1} Mbit/s ({} Mbit/s per player); frames {} received, {} missing, {} foreign; max gap {:.0} ms (p99 over players {} ms)",
                self.delivered_mbps,
                s(self.per_player_mbps, 2),
                f.received,
                f.missing,
                f.foreign,
                f.max_gap_ms,
                s(f.player_max_gap_p99_ms, 0)
            );
        }
        if let Some(sv) = &self.server_stats {
            let _ = writeln!(
                out,
                "  server pid {}              CPU {:.2} s ({:.0}% of a core), {} CPU-s/GB; RSS {} → {} KiB, {} KiB/player",
                sv.pid,
                sv.cpu_s,
                sv.cpu_pct,
                s(sv.cpu_s_per_gb, 3),
                sv.rss_before_kib,
                sv.rss_after_kib,
                s(sv.rss_per_player_kib, 1)
            );
            if let Some(idle) = sv.rss_idle_kib {
                let _ = writeln!(
                    out,
                    "  server RSS publishers    idle {idle} KiB → {} KiB/publisher (GOP cache included; one GOP of the media is {} KiB)",
                    s(sv.rss_per_publisher_kib, 1),
                    s(p.gop_kib(), 1)
                );
            }
        }
        let t = &self.tool;
        let _ = writeln!(
            out,
            "  load tool                CPU {:.2} s ({:.0}% of a core), {} CPU-s/GB; RSS {} KiB; publisher max lag {:.1} ms; other load on the machine {} cores",
            t.cpu_s,
            t.cpu_pct,
            s(t.cpu_s_per_gb, 3),
            t.rss_kib,
            t.publisher_max_lag_ms,
            s(t.other_load_cores, 2)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gop_bytes_follow_bitrate_and_keyframe_interval() {
        let p = Params { media_kbps: 1128.0, gop_ms: 2000, ..Default::default() };
        // 1128 kbit/s × 2 s = 282,000 bytes.
        assert!((p.gop_kib().unwrap() - 282_000.0 / 1024.0).abs() < 1e-9);
        assert_eq!(Params { media_kbps: 1128.0, ..Default::default() }.gop_kib(), None);
    }

    #[test]
    fn old_json_lines_without_the_density_fields_still_parse() {
        let mut v =
            serde_json::to_value(RunReport { server_stats: Some(ServerStats::default()), ..Default::default() })
                .unwrap();
        v.as_object_mut().unwrap().remove("publish_start_ms");
        v.as_object_mut().unwrap().remove("streams");
        v["server_stats"].as_object_mut().unwrap().remove("rss_idle_kib");
        let back: RunReport = serde_json::from_value(v).unwrap();
        assert_eq!(back.publish_start_ms, None);
        assert_eq!(back.server_stats.unwrap().rss_idle_kib, None);
    }
}
