//! What every connection task shares: settings derived from the command line, the registry,
//! the local streams, the session table, metrics and the shutdown signal.

use std::{sync::Arc, time::Duration};

use streamfleet_registry::{AcquireOptions, KeyHasher, LeaseTiming, SharedEdgeRegistry};
use tokio::sync::{Notify, watch};

use super::config::Config;
use crate::{
    connection::ProtocolConfig,
    fanout::{OutboxLimits, WindowFlusher},
    media::Media,
    observe::{Metrics, SessionTable},
    publish::key_failures::KeyFailures,
    relay::Relay,
    rtmp::chunk_reader::{InputBudget, ReaderLimits},
    streams::{GopBudget, GopLimits, Stream, StreamHub, health::HealthRules},
};

/// Timeouts and limits, resolved once from the [`Config`].
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) edge_id: String,
    pub(crate) advertise_addr: Option<String>,
    pub(crate) protocol: ProtocolConfig,
    pub(crate) handshake_timeout: Duration,
    pub(crate) publish_timeout: Duration,
    pub(crate) idle_publisher_timeout: Duration,
    pub(crate) play_wait_timeout: Duration,
    pub(crate) outbox: OutboxLimits,
    pub(crate) lease_timing: LeaseTiming,
    pub(crate) acquire: AcquireOptions,
    /// A publisher silent this long reports itself idle to the registry; the newcomer's
    /// `idle_threshold` is the takeover threshold minus this, so a takeover needs exactly
    /// `--takeover-idle-threshold` of silence in total.
    pub(crate) idle_report_after: Duration,
    /// Most time a new publisher waits for the live one to become replaceable.
    pub(crate) takeover_wait: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_ip: usize,
    pub(crate) drain_timeout: Duration,
    pub(crate) gop_cache_max_bytes: usize,
    /// Over all streams; `usize::MAX` when unbounded.
    pub(crate) gop_cache_total_bytes: usize,
    pub(crate) health_keyframe_interval: std::time::Duration,
    pub(crate) relay_idle_timeout: Duration,
    pub(crate) key_failures_free: u32,
    pub(crate) key_failure_max_delay: Duration,
    /// How a presented publish key is hashed for look-ups (the start-up sets it from the
    /// key-hash secret, [`Config::key_hasher`]; until then the legacy SHA-256).
    pub(crate) key_hasher: KeyHasher,
}

impl Settings {
    pub(crate) fn from_config(c: &Config) -> Settings {
        let lease_timing = LeaseTiming::from_ttl(c.lease_ttl);
        let idle_report_after = (c.takeover_idle_threshold / 4).min(Duration::from_millis(250));
        let acquire = AcquireOptions {
            ttl: lease_timing.ttl,
            idle_threshold: c.takeover_idle_threshold.saturating_sub(idle_report_after),
            takeover_cooldown: c.takeover_cooldown,
        };
        let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Settings {
            edge_id: c.edge_id(),
            advertise_addr: c.advertise_addr(),
            protocol: ProtocolConfig {
                app: c.rtmp_app.clone(),
                limits: ReaderLimits {
                    max_chunk_size: c.max_chunk_size,
                    max_message_size: u32::try_from(c.max_message_size).unwrap_or(0x00FF_FFFF).min(0x00FF_FFFF),
                    max_message_size_unadmitted: u32::try_from(c.max_message_size_unadmitted)
                        .unwrap_or(0x00FF_FFFF)
                        .min(0x00FF_FFFF),
                    max_chunk_streams: 64,
                    max_command_size: u32::try_from(c.max_command_size).unwrap_or(u32::MAX),
                },
                max_pending_input: 256 * 1024,
                max_command_values: c.max_command_values,
                budget: InputBudget::new(to_usize(c.input_budget)),
            },
            handshake_timeout: c.handshake_timeout,
            publish_timeout: c.publish_timeout,
            idle_publisher_timeout: c.idle_publisher_timeout,
            play_wait_timeout: c.play_wait_timeout,
            outbox: OutboxLimits {
                max_bytes: to_usize(c.player_queue_bytes),
                slow_timeout: c.slow_player_timeout,
                write_window: c.write_window,
                hold_audio: c.hold_audio,
            },
            lease_timing,
            acquire,
            idle_report_after,
            takeover_wait: c.takeover_wait,
            max_connections: c.max_connections,
            max_connections_per_ip: c.max_connections_per_ip,
            drain_timeout: c.drain_timeout,
            gop_cache_max_bytes: to_usize(c.gop_cache_max_bytes),
            gop_cache_total_bytes: match c.gop_cache_total_bytes {
                0 => usize::MAX,
                n => to_usize(n),
            },
            health_keyframe_interval: c.health_keyframe_interval,
            relay_idle_timeout: c.relay_idle_timeout,
            key_failures_free: c.key_failures_before_delay,
            key_failure_max_delay: c.key_failure_max_delay,
            key_hasher: KeyHasher::legacy(),
        }
    }
}

/// Shared by all tasks of one edge process.
pub(crate) struct Context {
    pub(crate) settings: Settings,
    pub(crate) registry: SharedEdgeRegistry,
    pub(crate) hub: StreamHub,
    pub(crate) sessions: Arc<SessionTable>,
    pub(crate) metrics: Arc<Metrics>,
    /// `true` once draining started (SIGTERM): connection tasks end their sessions.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Poked when a stream's local viewer count changes (the reporter batches the writes).
    pub(crate) viewers_changed: Notify,
    /// Local viewer counts as last reported to the registry (for maxViewers accounting).
    pub(crate) reported_viewers: std::sync::Mutex<std::collections::HashMap<streamfleet_registry::StreamId, u32>>,
    /// `maxViewers` slots this edge's players hold in the registry (renewed with the viewer
    /// report, released when the player leaves), by stream.
    pub(crate) viewer_slots:
        std::sync::Mutex<std::collections::HashMap<streamfleet_registry::StreamId, std::collections::HashSet<String>>>,
    /// Prefix of this process's slot names: `<edge id>/<random token>/` (a restarted edge with
    /// the same id never shares a name with its previous life's slots).
    pub(crate) slot_prefix: String,
    /// Cross-edge play, set at start when a relay secret is configured (no secret, no relay).
    pub(crate) relay: std::sync::OnceLock<Arc<Relay>>,
    /// Writes players' media at the end of their write window (`--write-window`; none without).
    pub(crate) window: Option<Arc<WindowFlusher>>,
    /// Wrong publish keys per address (answered later and later).
    pub(crate) key_failures: KeyFailures,
}

impl Context {
    pub(crate) fn new(
        settings: Settings,
        registry: SharedEdgeRegistry,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Context> {
        let rules = HealthRules { keyframe_interval: settings.health_keyframe_interval, ..HealthRules::default() };
        let gop = GopLimits {
            per_stream: settings.gop_cache_max_bytes,
            budget: Arc::new(GopBudget::new(settings.gop_cache_total_bytes)),
        };
        let hub = StreamHub::new(gop, metrics.clone()).with_health_rules(rules);
        let settings_window = settings.outbox.write_window;
        let (key_failures_free, key_failure_max_delay) = (settings.key_failures_free, settings.key_failure_max_delay);
        let slot_prefix = format!("{}/{}/", settings.edge_id, streamfleet_registry::new_lease_token());
        Arc::new(Context {
            settings,
            registry,
            hub,
            sessions: SessionTable::new(),
            metrics,
            shutdown,
            viewers_changed: Notify::new(),
            reported_viewers: std::sync::Mutex::new(Default::default()),
            viewer_slots: std::sync::Mutex::new(Default::default()),
            slot_prefix,
            relay: std::sync::OnceLock::new(),
            window: (!settings_window.is_zero()).then(|| WindowFlusher::new(settings_window)),
            key_failures: KeyFailures::new(key_failures_free, key_failure_max_delay),
        })
    }

    /// Hands one message of `stream`'s publisher (an encoder or a relay pull) to its players,
    /// counts what slow players had to drop, and writes the players of any stream whose write
    /// window has ended: the publisher's task is awake anyway, so no timer has to wake for them
    /// (see `write_window`).
    /// `now`: the caller's clock reading for this message (one per message is enough).
    pub(crate) fn deliver(&self, stream: &Stream, session: u64, media: Media, now: tokio::time::Instant) {
        if let Some(dropped) = stream.publish_at(session, media, now)
            && dropped > 0
        {
            self.metrics.slow_player_dropped_messages.inc_by(dropped as u64);
        }
        if let Some(window) = &self.window {
            window.write_due(now);
        }
    }

    pub(crate) fn is_draining(&self) -> bool {
        *self.shutdown.borrow()
    }
}
