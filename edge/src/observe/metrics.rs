//! Prometheus metrics of the edge (`streamfleet_edge_*`), names as the shared contract in the
//! project brief fixes them. Per-stream series are labelled with the playback name only, never
//! a publish key, and are removed when the stream leaves this edge so cardinality stays bounded.

use std::{collections::HashMap, sync::Mutex};

use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use super::sharded_counter::ShardedCounter;
use crate::{
    fanout::{Outbox, WriteObserver},
    streams::{
        HubObserver,
        health::{HealthReport, MediaReport},
    },
    sync::lock,
    workers::Load,
};

const PREFIX: &str = "streamfleet_edge";

/// Every metric the edge exports.
pub(crate) struct Metrics {
    registry: Registry,
    /// `publishers_active{protocol}`: `rtmp` (RTMP and RTMPS) or `srt`.
    pub(crate) publishers_active: PerProtocol<IntGauge>,
    /// `players_active{protocol}`.
    pub(crate) players_active: PerProtocol<IntGauge>,
    pub(crate) connections_active: IntGauge,
    pub(crate) http_connections_active: IntGauge,
    pub(crate) publish_rejections: IntCounterVec,
    pub(crate) play_rejections: IntCounterVec,
    pub(crate) connections_refused: IntCounterVec,
    pub(crate) takeovers: IntCounter,
    /// The GOP caches over all streams (`--gop-cache-total-bytes`), read from the budget at
    /// each scrape ([`Metrics::observe_gop_caches`]).
    gop_cache_bytes: IntGauge,
    gop_cache_limit_bytes: IntGauge,
    gop_cache_refusals: IntCounter,
    gop_cache_refusals_seen: std::sync::atomic::AtomicU64,
    /// Each worker thread's load, read at each scrape ([`Metrics::observe_workers`]).
    worker_busy: GaugeVec,
    worker_connections: IntGaugeVec,
    pub(crate) lease_renewals: IntCounter,
    pub(crate) lease_renew_failures: IntCounter,
    pub(crate) lease_losses: IntCounterVec,
    /// `bytes_received_total{protocol}`: what RTMP connections and SRT publishers receive.
    pub(crate) bytes_received: PerProtocol<IntCounter>,
    pub(crate) bytes_sent: ShardedCounter,
    pub(crate) slow_player_dropped_messages: IntCounter,
    pub(crate) slow_player_disconnects: IntCounter,
    pub(crate) time_to_first_frame: Histogram,
    pub(crate) handshake_failures: IntCounter,
    pub(crate) protocol_errors: IntCounterVec,
    pub(crate) connection_duration: HistogramVec,
    pub(crate) registry_up: IntGauge,
    pub(crate) draining: IntGauge,
    pub(crate) stream_players: IntGaugeVec,
    pub(crate) stream_ingest_bitrate_kbps: IntGaugeVec,
    pub(crate) relay_pulls_active: IntGauge,
    pub(crate) relay_served_active: IntGauge,
    pub(crate) relay_auth_failures: IntCounter,
    pub(crate) api_auth_failures: IntCounter,
    pub(crate) publish_key_failures_delayed: IntCounter,
    pub(crate) publish_legacy_key_hash: IntCounter,
    pub(crate) relay_upstream_errors: IntCounterVec,
    pub(crate) connections_accepted: IntCounterVec,
    pub(crate) tls_handshake_failures: IntCounterVec,
    pub(crate) tls_handshake_seconds: Histogram,
    /// By protocol: from a publish request to the publisher being live.
    pub(crate) publish_admission_seconds: HistogramVec,
    pub(crate) tls_certificate_reloads: IntCounterVec,
    pub(crate) tls_certificate_stale: IntGauge,
    pub(crate) proxy_header_failures: IntCounterVec,
    /// SRT callers admitted and connected (`--srt-listen`).
    pub(crate) srt_connections_active: IntGauge,
    /// Link statistics of each stream's SRT publisher (what srt-tokio counts: no RTT).
    pub(crate) srt_link: SrtLinkSeries,
    stream_health: StreamHealthSeries,
}

/// One series per application protocol (`rtmp`: RTMP and RTMPS; `srt`), resolved once so the
/// hot paths never look a label up. Both exist from the start, at 0, so a dashboard split by
/// protocol shows both.
pub(crate) struct PerProtocol<T> {
    pub(crate) rtmp: T,
    pub(crate) srt: T,
}

impl<T> PerProtocol<T> {
    /// The series of `protocol` (`srt`; anything else is RTMP's).
    pub(crate) fn get(&self, protocol: &str) -> &T {
        if protocol == "srt" { &self.srt } else { &self.rtmp }
    }
}

/// Per-stream SRT link statistics, of the current SRT publisher (gauges: each connection
/// counts from zero, so a counter would go backwards when the encoder reconnects).
pub(crate) struct SrtLinkSeries {
    pub(crate) loss_reports: IntGaugeVec,
    pub(crate) lost: IntGaugeVec,
    pub(crate) retransmitted: IntGaugeVec,
    pub(crate) dropped: IntGaugeVec,
    pub(crate) rtt: GaugeVec,
}

impl SrtLinkSeries {
    pub(crate) fn forget(&self, playback: &str) {
        let _ = self.loss_reports.remove_label_values(&[playback]);
        let _ = self.lost.remove_label_values(&[playback]);
        let _ = self.retransmitted.remove_label_values(&[playback]);
        let _ = self.dropped.remove_label_values(&[playback]);
        let _ = self.rtt.remove_label_values(&[playback]);
    }
}

/// The per-stream health series (see `streams::health`), fed once a second by each publisher.
struct StreamHealthSeries {
    fps: GaugeVec,
    keyframe_interval: GaugeVec,
    healthy: IntGaugeVec,
    info: IntGaugeVec,
    stalls: IntCounterVec,
    anomalies: IntCounterVec,
    /// The info series' label values per stream (to remove the old series when they change), and
    /// the counts already added to the counters.
    seen: Mutex<HashMap<String, Seen>>,
}

#[derive(Default)]
struct Seen {
    info: Option<[String; 3]>,
    stalls: u64,
    backwards: u64,
    jumps: u64,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(PREFIX)
}

impl Metrics {
    pub(crate) fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::with_opts(opts(name, help))?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::with_opts(opts(name, help))?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let by_protocol_gauge = |name: &str, help: &str| -> Result<PerProtocol<IntGauge>, prometheus::Error> {
            let g = IntGaugeVec::new(opts(name, help), &["protocol"])?;
            registry.register(Box::new(g.clone()))?;
            Ok(PerProtocol { rtmp: g.with_label_values(&["rtmp"]), srt: g.with_label_values(&["srt"]) })
        };
        let by_protocol_counter = |name: &str, help: &str| -> Result<PerProtocol<IntCounter>, prometheus::Error> {
            let c = IntCounterVec::new(opts(name, help), &["protocol"])?;
            registry.register(Box::new(c.clone()))?;
            Ok(PerProtocol { rtmp: c.with_label_values(&["rtmp"]), srt: c.with_label_values(&["srt"]) })
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(opts(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let float_gauge_vec = |name: &str, help: &str| -> Result<GaugeVec, prometheus::Error> {
            let g = GaugeVec::new(opts(name, help), &["stream"])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
            let g = IntGaugeVec::new(opts(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let time_to_first_frame = Histogram::with_opts(
            HistogramOpts::new(
                "time_to_first_frame_seconds",
                "From a player's play request to its first video frame handed to the socket",
            )
            .namespace(PREFIX)
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )?;
        registry.register(Box::new(time_to_first_frame.clone()))?;
        let connection_duration = HistogramVec::new(
            HistogramOpts::new("connection_duration_seconds", "Lifetime of RTMP connections by final role")
                .namespace(PREFIX)
                .buckets(vec![0.1, 1.0, 10.0, 60.0, 600.0, 3600.0, 14400.0, 86400.0]),
            &["role"],
        )?;
        registry.register(Box::new(connection_duration.clone()))?;
        let tls_handshake_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "tls_handshake_seconds",
                "From TCP accept (after any PROXY header) to a completed TLS handshake",
            )
            .namespace(PREFIX)
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
        )?;
        registry.register(Box::new(tls_handshake_seconds.clone()))?;
        let publish_admission_seconds = HistogramVec::new(
            HistogramOpts::new(
                "publish_admission_seconds",
                "From a publish request (RTMP publish, SRT stream id) to the publisher being live: key look-up, lease and any takeover wait, by protocol",
            )
            .namespace(PREFIX)
            .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            &["protocol"],
        )?;
        registry.register(Box::new(publish_admission_seconds.clone()))?;

        Ok(Metrics {
            publishers_active: by_protocol_gauge(
                "publishers_active",
                "Publishers admitted and live on this edge, by protocol (rtmp: RTMP and RTMPS; srt)",
            )?,
            players_active: by_protocol_gauge(
                "players_active",
                "Players playing on this edge, by protocol (rtmp: RTMP and RTMPS; srt)",
            )?,
            connections_active: gauge("connections_active", "Open RTMP connections")?,
            http_connections_active: gauge(
                "http_connections_active",
                "Open HTTP connections (bounded by --http-max-connections)",
            )?,
            publish_rejections: counter_vec(
                "publish_rejections_total",
                "Publish attempts refused, by reason (unknown_key, disabled, already_active, unavailable, ...) and protocol (rtmp, srt)",
                &["reason", "protocol"],
            )?,
            play_rejections: counter_vec(
                "play_rejections_total",
                "Play attempts refused, by reason (not_found, max_viewers, not_live, unavailable, ...)",
                &["reason"],
            )?,
            connections_refused: counter_vec(
                "connections_refused_total",
                "Connections closed at accept, by limit (max_connections, max_connections_per_ip, http_max_connections)",
                &["reason"],
            )?,
            takeovers: counter("takeovers_total", "Publishers admitted by replacing the previous publisher")?,
            worker_busy: {
                let g = GaugeVec::new(
                    opts(
                        "worker_busy_ratio",
                        "Share of the last 100 ms each worker thread spent running tasks; a new connection goes to the first worker not too busy (docs/edge.md)",
                    ),
                    &["worker"],
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            worker_connections: gauge_vec(
                "worker_connections",
                "Connections running on each worker thread (RTMP, RTMPS, relay and SRT callers)",
                &["worker"],
            )?,
            gop_cache_bytes: gauge("gop_cache_bytes", "Bytes the GOP caches of all streams hold together")?,
            gop_cache_limit_bytes: gauge(
                "gop_cache_limit_bytes",
                "The most the GOP caches may hold together (--gop-cache-total-bytes; 0: no bound)",
            )?,
            gop_cache_refusals: counter(
                "gop_cache_refusals_total",
                "GOPs that did not fit in --gop-cache-total-bytes (that stream keeps no GOP until its next keyframe)",
            )?,
            gop_cache_refusals_seen: Default::default(),
            lease_renewals: counter("lease_renewals_total", "Successful publisher lease renewals")?,
            lease_renew_failures: counter("lease_renew_failures_total", "Failed lease renew attempts (retried)")?,
            lease_losses: counter_vec(
                "lease_losses_total",
                "Publisher leases lost, by reason (stolen, revoked, expired)",
                &["reason"],
            )?,
            bytes_received: by_protocol_counter(
                "bytes_received_total",
                "Bytes received, by protocol: on RTMP connections (rtmp), from SRT publishers (srt: MPEG-TS payload)",
            )?,
            bytes_sent: {
                let c = ShardedCounter::with_opts(opts("bytes_sent_total", "Bytes sent on RTMP connections"))?;
                registry.register(Box::new(c.clone()))?;
                c
            },
            slow_player_dropped_messages: counter(
                "slow_player_dropped_messages_total",
                "Media messages dropped because a player's queue was full",
            )?,
            slow_player_disconnects: counter(
                "slow_player_disconnects_total",
                "Players disconnected for staying too slow past the slow-player timeout",
            )?,
            time_to_first_frame,
            handshake_failures: counter("handshake_failures_total", "RTMP handshakes that failed or timed out")?,
            protocol_errors: counter_vec(
                "protocol_errors_total",
                "Connections closed for malformed input, by kind (chunk, amf0, session, ...)",
                &["kind"],
            )?,
            connection_duration,
            connections_accepted: counter_vec(
                "connections_accepted_total",
                "Connections accepted on the public listeners, by transport (rtmp, rtmps)",
                &["transport"],
            )?,
            tls_handshake_failures: counter_vec(
                "tls_handshake_failures_total",
                "RTMPS connections closed before a completed TLS handshake, by reason (timeout, not_tls, incompatible, client_alert, protocol, eof, io)",
                &["reason"],
            )?,
            tls_handshake_seconds,
            publish_admission_seconds,
            tls_certificate_reloads: counter_vec(
                "tls_certificate_reloads_total",
                "Changed certificate files seen, by result (ok: new handshakes use them; error: refused, the previous pair keeps serving)",
                &["result"],
            )?,
            tls_certificate_stale: gauge(
                "tls_certificate_stale",
                "1 while the certificate files on disk were refused and the previous pair is still served",
            )?,
            proxy_header_failures: counter_vec(
                "proxy_header_failures_total",
                "Connections refused for their PROXY protocol header, by reason (untrusted, timeout, missing, wrong_version, too_large, invalid, eof, io)",
                &["reason"],
            )?,
            registry_up: gauge("registry_up", "1 while the registry answers, 0 otherwise")?,
            draining: gauge("draining", "1 once SIGTERM started the drain")?,
            stream_players: gauge_vec("stream_players", "Players on this edge per stream", &["stream"])?,
            stream_ingest_bitrate_kbps: gauge_vec(
                "stream_ingest_bitrate_kbps",
                "Ingest bitrate of streams published on this edge",
                &["stream"],
            )?,
            relay_pulls_active: gauge(
                "relay_pulls_active",
                "Streams this edge is pulling from their owner edge through the relay (one per stream)",
            )?,
            relay_served_active: gauge(
                "relay_served_active",
                "Relay pulls other edges have open to this edge (streams published here)",
            )?,
            relay_auth_failures: counter(
                "relay_auth_failures_total",
                "Relay play requests refused for a missing or wrong authentication token",
            )?,
            publish_key_failures_delayed: counter(
                "publish_key_failures_delayed_total",
                "Wrong publish keys answered late because their address sent too many",
            )?,
            publish_legacy_key_hash: counter(
                "publish_legacy_key_hash_total",
                "Publishers admitted on a record whose key is stored as a legacy unsalted SHA-256 (not yet rewritten with the keyed hash)",
            )?,
            api_auth_failures: counter(
                "api_auth_failures_total",
                "HTTP /api/* requests refused for a missing or wrong bearer token",
            )?,
            relay_upstream_errors: counter_vec(
                "relay_upstream_errors_total",
                "Relay pulls that failed or broke, by stage (connect, refused, stream)",
                &["stage"],
            )?,
            srt_connections_active: gauge("srt_connections_active", "Open SRT connections (admitted callers)")?,
            srt_link: SrtLinkSeries {
                loss_reports: gauge_vec(
                    "srt_loss_reports",
                    "Loss reports (NAKs) the edge sent to the stream's SRT publisher for missing packets, since it connected",
                    &["stream"],
                )?,
                lost: gauge_vec(
                    "srt_packets_lost",
                    "Data packets of the stream's SRT publisher found missing on arrival (lost or reordered), since it connected",
                    &["stream"],
                )?,
                rtt: float_gauge_vec(
                    "srt_rtt_seconds",
                    "Smoothed round-trip time of the link to the stream's SRT publisher (0 until first measured)",
                )?,
                retransmitted: gauge_vec(
                    "srt_packets_retransmitted",
                    "Data packets the SRT publisher retransmitted, since it connected",
                    &["stream"],
                )?,
                dropped: gauge_vec(
                    "srt_packets_dropped",
                    "Data packets dropped as too late (not recovered within the latency), since it connected",
                    &["stream"],
                )?,
            },
            stream_health: StreamHealthSeries {
                fps: float_gauge_vec("stream_video_fps", "Frame rate measured from video timestamps, per stream")?,
                keyframe_interval: float_gauge_vec(
                    "stream_keyframe_interval_seconds",
                    "Last keyframe interval of streams published on this edge",
                )?,
                healthy: gauge_vec(
                    "stream_healthy",
                    "1 while the encoder of a stream published on this edge sends healthy media, 0 otherwise",
                    &["stream"],
                )?,
                info: gauge_vec(
                    "stream_media_info",
                    "Always 1; labels describe what a stream published on this edge carries",
                    &["stream", "video_codec", "resolution", "audio_codec"],
                )?,
                stalls: counter_vec(
                    "stream_stalls_total",
                    "Stalls (no media for more than 1 s while connected) per stream",
                    &["stream"],
                )?,
                anomalies: counter_vec(
                    "stream_timestamp_anomalies_total",
                    "Timestamps that went backwards or jumped ahead of the wall clock, per stream",
                    &["stream", "kind"],
                )?,
                seen: Mutex::new(HashMap::new()),
            },
            registry,
        })
    }

    /// Brings the GOP cache figures up to date (called before rendering): `used` and `max` bytes
    /// (`usize::MAX`: no bound) and the budget's refusals so far.
    pub(crate) fn observe_gop_caches(&self, used: usize, max: usize, refusals: u64) {
        self.gop_cache_bytes.set(i64::try_from(used).unwrap_or(i64::MAX));
        self.gop_cache_limit_bytes.set(if max == usize::MAX { 0 } else { i64::try_from(max).unwrap_or(i64::MAX) });
        let seen = self.gop_cache_refusals_seen.fetch_max(refusals, std::sync::atomic::Ordering::Relaxed);
        self.gop_cache_refusals.inc_by(refusals.saturating_sub(seen));
    }

    /// Sets the per-worker gauges from the workers' own accounting.
    pub(crate) fn observe_workers(&self, loads: &[Load]) {
        for (i, load) in loads.iter().enumerate() {
            let worker = i.to_string();
            self.worker_busy.with_label_values(&[&worker]).set(load.busy);
            self.worker_connections
                .with_label_values(&[&worker])
                .set(i64::try_from(load.connections).unwrap_or(i64::MAX));
        }
    }

    /// Text exposition format.
    pub(crate) fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encode error: {e}\n"))
    }

    /// Removes a stream's per-stream series when it leaves this edge.
    pub(crate) fn forget_stream(&self, playback: &str) {
        self.srt_link.forget(playback);
        let _ = self.stream_players.remove_label_values(&[playback]);
        let _ = self.stream_ingest_bitrate_kbps.remove_label_values(&[playback]);
        let h = &self.stream_health;
        let _ = h.fps.remove_label_values(&[playback]);
        let _ = h.keyframe_interval.remove_label_values(&[playback]);
        let _ = h.healthy.remove_label_values(&[playback]);
        let _ = h.stalls.remove_label_values(&[playback]);
        for kind in ["backwards", "jump"] {
            let _ = h.anomalies.remove_label_values(&[playback, kind]);
        }
        if let Some(Seen { info: Some(labels), .. }) = lock(&h.seen).remove(playback) {
            let [v, r, a] = &labels;
            let _ = h.info.remove_label_values(&[playback, v, r, a]);
        }
    }

    /// Publishes one stream's health (its publisher calls this once a second).
    pub(crate) fn observe_health(
        &self,
        playback: &str,
        codecs: (&str, &str),
        media: &MediaReport,
        health: &HealthReport,
    ) {
        let h = &self.stream_health;
        match media.video.fps {
            Some(fps) => h.fps.with_label_values(&[playback]).set(fps),
            None => h.fps.with_label_values(&[playback]).set(0.0),
        }
        if let Some(k) = media.video.keyframe_interval_s {
            h.keyframe_interval.with_label_values(&[playback]).set(k);
        }
        h.healthy.with_label_values(&[playback]).set(i64::from(health.healthy));
        let resolution = match (media.video.config.width, media.video.config.height) {
            (Some(w), Some(h)) => format!("{w}x{h}"),
            _ => match (media.announced.width, media.announced.height) {
                (Some(w), Some(h)) => format!("{w}x{h}"),
                _ => "unknown".into(),
            },
        };
        let labels = [codecs.0.to_string(), resolution, codecs.1.to_string()];
        let mut seen = lock(&h.seen);
        let seen = seen.entry(playback.to_string()).or_default();
        if seen.info.as_ref() != Some(&labels) {
            if let Some([v, r, a]) = &seen.info {
                let _ = h.info.remove_label_values(&[playback, v, r, a]);
            }
            h.info.with_label_values(&[playback, &labels[0], &labels[1], &labels[2]]).set(1);
            seen.info = Some(labels);
        }
        // The counts restart with each publisher; the counters only ever go up.
        let add = |counter: &prometheus::IntCounter, now: u64, before: &mut u64| {
            counter.inc_by(now.saturating_sub(*before));
            *before = now;
        };
        add(&h.stalls.with_label_values(&[playback]), health.stalls, &mut seen.stalls);
        add(&h.anomalies.with_label_values(&[playback, "backwards"]), health.timestamps_backwards, &mut seen.backwards);
        add(&h.anomalies.with_label_values(&[playback, "jump"]), health.timestamp_jumps, &mut seen.jumps);
    }

    /// A new publisher starts its counts from zero.
    pub(crate) fn health_publisher_changed(&self, playback: &str) {
        if let Some(seen) = lock(&self.stream_health.seen).get_mut(playback) {
            seen.stalls = 0;
            seen.backwards = 0;
            seen.jumps = 0;
        }
    }
}

/// Every completed write of every connection (one observer for all: a write touches one cache
/// line fewer than with one per connection).
impl WriteObserver for Metrics {
    fn wrote(&self, outbox: &Outbox, bytes: usize, first_video: bool) {
        self.bytes_sent.inc_by(bytes as u64);
        if first_video && let Some(t) = outbox.play_requested.get() {
            self.time_to_first_frame.observe(t.elapsed().as_secs_f64());
        }
    }

    fn dropped(&self, messages: u64) {
        self.slow_player_dropped_messages.inc_by(messages);
    }
}

/// A stream left this edge: its per-stream series go with it.
impl HubObserver for Metrics {
    fn stream_removed(&self, playback: &str) {
        self.forget_stream(playback);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_contract_names() {
        let m = Metrics::new().unwrap();
        m.publish_rejections.with_label_values(&["unknown_key", "rtmp"]).inc();
        m.stream_players.with_label_values(&["news"]).set(3);
        m.connection_duration.with_label_values(&["player"]).observe(1.0);
        let text = m.render();
        for name in [
            "streamfleet_edge_publishers_active{protocol=\"rtmp\"} 0",
            "streamfleet_edge_publishers_active{protocol=\"srt\"} 0",
            "streamfleet_edge_players_active{protocol=\"rtmp\"} 0",
            "streamfleet_edge_players_active{protocol=\"srt\"} 0",
            "streamfleet_edge_connections_active",
            "streamfleet_edge_publish_rejections_total{protocol=\"rtmp\",reason=\"unknown_key\"} 1",
            "streamfleet_edge_takeovers_total",
            "streamfleet_edge_lease_renewals_total",
            "streamfleet_edge_lease_renew_failures_total",
            "streamfleet_edge_bytes_received_total{protocol=\"rtmp\"} 0",
            "streamfleet_edge_bytes_received_total{protocol=\"srt\"} 0",
            "streamfleet_edge_bytes_sent_total",
            "streamfleet_edge_slow_player_dropped_messages_total",
            "streamfleet_edge_slow_player_disconnects_total",
            "streamfleet_edge_time_to_first_frame_seconds_bucket",
            "streamfleet_edge_handshake_failures_total",
            "streamfleet_edge_connection_duration_seconds_bucket{role=\"player\"",
            "streamfleet_edge_registry_up",
            "streamfleet_edge_draining",
            "streamfleet_edge_stream_players{stream=\"news\"} 3",
            "streamfleet_edge_relay_pulls_active",
            "streamfleet_edge_relay_served_active",
            "streamfleet_edge_relay_auth_failures_total",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
        m.forget_stream("news");
        assert!(!m.render().contains("stream=\"news\""));
    }
}
