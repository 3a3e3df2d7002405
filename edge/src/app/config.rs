//! Command line and environment: every flag also reads the `STREAMFLEET_*` variable shown in
//! `--help`. Durations use humantime (`500ms`, `10s`, `1m`); sizes accept `KiB`/`MiB`/`GiB`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{ArgGroup, Parser, ValueEnum};
use streamfleet_registry::{KeyHashSecret, KeyHasher};

use crate::transport::{ProxyMode, TrustedCidrs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Streamfleet edge: RTMP ingest and playback with cluster-wide single-publisher admission.
///
/// Publish:  rtmp://HOST:1935/live/<publishKey>
/// Play:     rtmp://HOST:1935/live/<playbackName>
///
/// Quick start (one node, no Redis):
///   streamfleet-edge --streams examples/livestreams.yaml
#[derive(Debug, Clone, Parser)]
// `about` and `long_about` both come from the doc comment (its first line and all of it), so
// `-h` and `--help` start with the same summary.
#[command(name = "streamfleet-edge", version, verbatim_doc_comment)]
#[command(group(ArgGroup::new("registry").required(true).args(["streams", "redis_url"])))]
pub struct Config {
    /// RTMP listener for encoders and players.
    #[arg(long, env = "STREAMFLEET_RTMP_LISTEN", default_value = "0.0.0.0:1935")]
    pub rtmp_listen: SocketAddr,

    /// Serve plain RTMP on --rtmp-listen; `false` serves RTMPS only (needs --rtmps-listen).
    #[arg(long, env = "STREAMFLEET_RTMP_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub rtmp_enabled: bool,

    /// RTMPS listener (RTMP over TLS 1.2/1.3, e.g. 0.0.0.0:443) [default: none]; needs
    /// --tls-cert-file and --tls-key-file.
    #[arg(long, env = "STREAMFLEET_RTMPS_LISTEN", requires_all = ["tls_cert_file", "tls_key_file"])]
    pub rtmps_listen: Option<SocketAddr>,

    /// PEM certificate chain for RTMPS, leaf first. Re-read when it changes (see
    /// --tls-reload-interval): new handshakes use the new pair, live connections keep theirs.
    #[arg(long, env = "STREAMFLEET_TLS_CERT_FILE", value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key of the certificate (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "STREAMFLEET_TLS_KEY_FILE", value_name = "FILE")]
    pub tls_key_file: Option<PathBuf>,

    /// Most time from accept (after any PROXY header) to a completed TLS handshake.
    #[arg(long, env = "STREAMFLEET_TLS_HANDSHAKE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub tls_handshake_timeout: Duration,

    /// How often the certificate files are checked for a change (contents, so a Kubernetes
    /// Secret volume's symlink swap is seen). A changed pair that does not load is refused and
    /// logged, and the previous one keeps serving.
    #[arg(long, env = "STREAMFLEET_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub tls_reload_interval: Duration,

    /// PROXY protocol on the public listeners (off, v1, v2, any): every connection must start
    /// with a header of that version from an address in --proxy-trusted-cidrs, and its source
    /// address is the client's (sessions, logs, per-IP limits, the registry). Others are refused.
    #[arg(long, env = "STREAMFLEET_PROXY_PROTOCOL", value_enum, default_value = "off")]
    pub proxy_protocol: ProxyMode,

    /// PROXY protocol on the RTMPS listener only [default: as --proxy-protocol].
    #[arg(long, env = "STREAMFLEET_RTMPS_PROXY_PROTOCOL", value_enum)]
    pub rtmps_proxy_protocol: Option<ProxyMode>,

    /// Comma-separated addresses or CIDR ranges (the load balancers) allowed to send a PROXY
    /// header; required when the PROXY protocol is on.
    #[arg(long, env = "STREAMFLEET_PROXY_TRUSTED_CIDRS", default_value = "", value_parser = parse_cidrs)]
    pub proxy_trusted_cidrs: TrustedCidrs,

    /// Most time for the PROXY header to arrive in full (it is at most 107 bytes for v1, 1 KiB
    /// for v2; longer is refused).
    #[arg(long, env = "STREAMFLEET_PROXY_HEADER_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub proxy_header_timeout: Duration,

    /// HTTP listener: /metrics, /healthz, /readyz, /api/v1/streams, /api/v1/sessions.
    #[arg(long, env = "STREAMFLEET_HTTP_LISTEN", default_value = "0.0.0.0:9090")]
    pub http_listen: SocketAddr,

    /// Internal listener other edges pull relayed streams from (cross-edge play).
    #[arg(long, env = "STREAMFLEET_RELAY_LISTEN", default_value = "0.0.0.0:1936")]
    pub relay_listen: SocketAddr,

    /// This edge's name in the registry [default: $POD_NAME, else the hostname].
    #[arg(long, env = "STREAMFLEET_EDGE_ID")]
    pub edge_id: Option<String>,

    /// In-memory registry loaded from a multi-document YAML of LiveStream and Secret manifests
    /// (the same files you would `kubectl apply`). Exclusive with --redis-url.
    #[arg(long, env = "STREAMFLEET_STREAMS", value_name = "FILE")]
    pub streams: Option<PathBuf>,

    /// Shared Redis registry (redis://, rediss://, or redis+sentinel://s1,s2,s3/<master>). Exclusive with --streams.
    #[arg(long, env = "STREAMFLEET_REDIS_URL", value_name = "URL")]
    pub redis_url: Option<String>,

    /// File holding the Redis password (overrides a password in the URL).
    #[arg(long, env = "STREAMFLEET_REDIS_PASSWORD_FILE", value_name = "FILE")]
    pub redis_password_file: Option<PathBuf>,

    /// File with the bearer token every /api/* request must present (`Authorization: Bearer
    /// <token>`), or set STREAMFLEET_API_TOKEN. Without one the API is open. /metrics, /healthz
    /// and /readyz never need it. (No flag takes the token itself: it would show in `ps`.)
    #[arg(long, env = "STREAMFLEET_API_TOKEN_FILE", value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,

    /// Relay address other edges reach this one on, advertised in the registry while it holds a
    /// publisher [default: $POD_IP:<relay port>].
    #[arg(long, env = "STREAMFLEET_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,

    /// File with the shared relay secret (or set STREAMFLEET_RELAY_SECRET); no secret, no relay.
    #[arg(long, env = "STREAMFLEET_RELAY_SECRET_FILE", value_name = "FILE")]
    pub relay_secret_file: Option<PathBuf>,

    /// File with the fleet's key-hash secret (or set STREAMFLEET_KEY_HASH_SECRET; at least 16
    /// bytes): publish keys are looked up by their HMAC-SHA256 under it, as the operator writes
    /// them. Give every edge and the operator the same one. Without it, keys are looked up by
    /// their unsalted SHA-256 (legacy records; a warning at start). With --streams and no
    /// secret, a random one is made per process.
    #[arg(long, env = "STREAMFLEET_KEY_HASH_SECRET_FILE", value_name = "FILE")]
    pub key_hash_secret_file: Option<PathBuf>,

    /// Also look publish keys up by their legacy unsalted SHA-256, for records the operator has
    /// not rewritten with the keyed hash yet (the migration; counted in
    /// streamfleet_edge_publish_legacy_key_hash_total). Set false once every record is keyed.
    #[arg(long, env = "STREAMFLEET_LEGACY_KEY_HASHES", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub legacy_key_hashes: bool,

    /// A relay pull (this edge playing a stream published on another edge) stops this long
    /// after its last local player left (a player coming back meanwhile reuses it).
    #[arg(long, env = "STREAMFLEET_RELAY_IDLE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub relay_idle_timeout: Duration,

    /// Publisher lease TTL; renew every TTL/3, stop publishing TTL/3 before it could expire.
    #[arg(long, env = "STREAMFLEET_LEASE_TTL", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_ttl: Duration,

    /// On SIGTERM: most time to tell clients, release leases and exit.
    #[arg(long, env = "STREAMFLEET_DRAIN_TIMEOUT", default_value = "25s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(long, env = "STREAMFLEET_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// RTMP application name served (the first path segment of the URL).
    #[arg(long, env = "STREAMFLEET_RTMP_APP", default_value = "live")]
    pub rtmp_app: String,

    /// Most time from TCP connect to a completed RTMP handshake.
    #[arg(long, env = "STREAMFLEET_HANDSHAKE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// Most time from TCP connect to an admitted publish or play (includes waiting for an idle
    /// publisher to be replaced).
    #[arg(long, env = "STREAMFLEET_PUBLISH_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub publish_timeout: Duration,

    /// A publisher that sends no media for this long is disconnected and its lease released.
    #[arg(long, env = "STREAMFLEET_IDLE_PUBLISHER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub idle_publisher_timeout: Duration,

    /// Largest chunk size a peer may announce (SetChunkSize); a peer announcing 0 or more than
    /// this is disconnected.
    #[arg(long, env = "STREAMFLEET_MAX_CHUNK_SIZE", default_value_t = 65_536)]
    pub max_chunk_size: u32,

    /// Largest RTMP message accepted from an admitted publisher (and most bytes of its
    /// incomplete messages buffered).
    #[arg(long, env = "STREAMFLEET_MAX_MESSAGE_SIZE", default_value = "8MiB", value_parser = parse_size)]
    pub max_message_size: u64,

    /// Largest RTMP message (and most bytes of incomplete messages buffered) from any connection
    /// that is not an admitted publisher: before its publish is admitted, and players and relay
    /// pulls for their whole life. Larger closes the connection from the message header.
    #[arg(long, env = "STREAMFLEET_MAX_MESSAGE_SIZE_UNADMITTED", default_value = "64KiB", value_parser = parse_size)]
    pub max_message_size_unadmitted: u64,

    /// Most bytes of input (unparsed bytes and incomplete messages) buffered over all
    /// connections that are not admitted publishers; a connection that would go over it is
    /// closed (protocol_errors_total{kind="input_budget"}). Admitted publishers are bounded by
    /// --max-message-size each instead, so unauthenticated peers cannot use up their memory.
    #[arg(long, env = "STREAMFLEET_INPUT_BUDGET", default_value = "64MiB", value_parser = parse_size)]
    pub input_budget: u64,

    /// Largest RTMP command message (connect, createStream, publish, play, ...), refused from
    /// its header before any of it is buffered: the connection is closed. Commands are parsed in
    /// full before the peer is authenticated, so this bounds what an anonymous peer can make
    /// the edge parse. ffmpeg's and OBS's largest command (connect) is under 1 KiB.
    #[arg(long, env = "STREAMFLEET_MAX_COMMAND_SIZE", default_value = "4KiB", value_parser = parse_size)]
    pub max_command_size: u64,

    /// Most AMF0 values in one command message (nested values and object properties count);
    /// more closes the connection. A real connect has about 30.
    #[arg(long, env = "STREAMFLEET_MAX_COMMAND_VALUES", default_value_t = 128)]
    pub max_command_values: usize,

    /// Most time an HTTP client may take to send a request's headers (a request dripped a byte
    /// at a time is closed after this).
    #[arg(long, env = "STREAMFLEET_HTTP_HEADER_READ_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub http_header_read_timeout: Duration,

    /// An HTTP connection with no bytes in either direction for this long is closed (a
    /// Prometheus scrape every 15 s keeps its connection).
    #[arg(long, env = "STREAMFLEET_HTTP_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub http_idle_timeout: Duration,

    /// Most simultaneous HTTP connections; more are closed at accept. This also bounds the file
    /// descriptors HTTP can take, so HTTP can never stop RTMP from accepting.
    #[arg(long, env = "STREAMFLEET_HTTP_MAX_CONNECTIONS", default_value_t = 64)]
    pub http_max_connections: usize,

    /// Most simultaneous RTMP connections.
    #[arg(long, env = "STREAMFLEET_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most simultaneous RTMP connections from one IP address.
    #[arg(long, env = "STREAMFLEET_MAX_CONNECTIONS_PER_IP", default_value_t = 100)]
    pub max_connections_per_ip: usize,

    /// Most simultaneous connections on the relay listener (its own budget: relay connections
    /// never count towards --max-connections, so they cannot starve the public port).
    #[arg(long, env = "STREAMFLEET_RELAY_MAX_CONNECTIONS", default_value_t = 1000)]
    pub relay_max_connections: usize,

    /// Most simultaneous relay connections from one IP address (one pulling edge holds one per
    /// stream it relays).
    #[arg(long, env = "STREAMFLEET_RELAY_MAX_CONNECTIONS_PER_IP", default_value_t = 200)]
    pub relay_max_connections_per_ip: usize,

    /// Wrong publish keys from one address answered at once; after these, each further wrong
    /// key from it is answered later (250 ms, doubling up to --key-failure-max-delay). A right
    /// key is never delayed. Failures are forgotten after 10 minutes without one.
    #[arg(long, env = "STREAMFLEET_KEY_FAILURES_BEFORE_DELAY", default_value_t = 10)]
    pub key_failures_before_delay: u32,

    /// The longest delay before a wrong publish key is refused.
    #[arg(long, env = "STREAMFLEET_KEY_FAILURE_MAX_DELAY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub key_failure_max_delay: Duration,

    /// Worker threads; 0 = one per CPU available to the process (a cgroup CPU limit counts).
    /// Each thread serves the connections placed on it; a new connection goes to the first
    /// thread that is not too busy, so a light load runs on one thread and the others take over
    /// as it grows (docs/edge.md, "Worker threads").
    #[arg(long, env = "STREAMFLEET_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,

    /// Per-player send queue bound; beyond it the player drops media until the next keyframe.
    #[arg(long, env = "STREAMFLEET_PLAYER_QUEUE_BYTES", default_value = "4MiB", value_parser = parse_size)]
    pub player_queue_bytes: u64,

    /// Write window per player: media queued within this long after the first queued message
    /// goes out in one write. Fewer, larger writes cost the edge less CPU per delivered byte at
    /// the price of up to this much added latency; 0 writes at the next wake-up (lowest
    /// latency). The first picture of a new player and control messages never wait.
    /// (`--write-batch`, its first name, still works; the environment variable and the chart's
    /// `edge.writeBatch` keep that name.)
    #[arg(
        long,
        visible_alias = "write-batch",
        env = "STREAMFLEET_WRITE_BATCH",
        default_value = "0s",
        value_parser = humantime::parse_duration
    )]
    pub write_window: Duration,

    /// Let audio messages of a stream with video wait for the next video frame (at most two in
    /// a row, one video frame interval) so each player gets one write per video frame instead
    /// of one per message, at less CPU per player (docs/benchmarks.md); a publisher's socket
    /// then also gathers that audio before it wakes the edge (docs/edge.md, "Reads paced by the
    /// socket"). `false` writes every message at once, for players that need audio the moment
    /// it arrives.
    #[arg(long, env = "STREAMFLEET_HOLD_AUDIO", default_value_t = true, action = clap::ArgAction::Set)]
    pub hold_audio: bool,

    /// A player still dropping (or blocked in one write) after this long is disconnected.
    #[arg(long, env = "STREAMFLEET_SLOW_PLAYER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub slow_player_timeout: Duration,

    /// How long a player waits for a stream that is not live (yet, or between publishers)
    /// before it gets NetStream.Play.StreamNotFound.
    #[arg(long, env = "STREAMFLEET_PLAY_WAIT_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub play_wait_timeout: Duration,

    /// Under the ReplaceIdle takeover policy, a publisher silent this long may be replaced by a
    /// new publisher with the valid key.
    #[arg(long, env = "STREAMFLEET_TAKEOVER_IDLE_THRESHOLD", default_value = "1s", value_parser = humantime::parse_duration)]
    pub takeover_idle_threshold: Duration,

    /// How long a new publisher with the valid key waits for the live publisher to become
    /// replaceable (idle, or the cooldown over) before it is rejected as already active.
    #[arg(long, env = "STREAMFLEET_TAKEOVER_WAIT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub takeover_wait: Duration,

    /// After a takeover, the stream cannot be taken over again for this long (stops two live
    /// encoders from knocking each other off in a loop).
    #[arg(long, env = "STREAMFLEET_TAKEOVER_COOLDOWN", default_value = "5s", value_parser = humantime::parse_duration)]
    pub takeover_cooldown: Duration,

    /// Most bytes of the GOP cache per stream (a stream without keyframes cannot grow it).
    #[arg(long, env = "STREAMFLEET_GOP_CACHE_MAX_BYTES", default_value = "32MiB", value_parser = parse_size)]
    pub gop_cache_max_bytes: u64,

    /// Most bytes of the GOP caches of all streams together; 0 = no bound beyond the per-stream
    /// one. A stream whose GOP does not fit keeps none until its next keyframe, and its new
    /// players start there.
    #[arg(long, env = "STREAMFLEET_GOP_CACHE_TOTAL_BYTES", default_value = "0", value_parser = parse_size)]
    pub gop_cache_total_bytes: u64,

    /// Longest keyframe interval a stream may have before it is reported unhealthy
    /// (`KeyframeInterval`): a new viewer waits up to one interval for its first picture.
    #[arg(long, env = "STREAMFLEET_HEALTH_KEYFRAME_INTERVAL", default_value = "4s", value_parser = humantime::parse_duration)]
    pub health_keyframe_interval: Duration,

    #[command(flatten)]
    pub srt: crate::srt::config::SrtArgs,
}

/// `4194304`, `64KiB`, `8MiB`, `1GiB` (binary units; `K`/`M`/`G` and `KB`/`MB`/`GB` mean the same).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size (e.g. 4194304, 64KiB, 8MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

fn parse_cidrs(s: &str) -> Result<TrustedCidrs, String> {
    s.parse()
}

impl Config {
    /// The PROXY protocol mode of the RTMPS listener.
    pub fn rtmps_proxy_mode(&self) -> ProxyMode {
        self.rtmps_proxy_protocol.unwrap_or(self.proxy_protocol)
    }

    /// Combinations the parser cannot refuse by itself.
    pub fn check(&self) -> Result<(), String> {
        if !self.rtmp_enabled && self.rtmps_listen.is_none() {
            return Err("--rtmp-enabled false needs --rtmps-listen (no listener would be left)".into());
        }
        let proxied = (self.rtmp_enabled && self.proxy_protocol != ProxyMode::Off)
            || (self.rtmps_listen.is_some() && self.rtmps_proxy_mode() != ProxyMode::Off);
        if proxied && self.proxy_trusted_cidrs.0.is_empty() {
            return Err("the PROXY protocol is on but --proxy-trusted-cidrs is empty: no peer could connect".into());
        }
        Ok(())
    }
    /// `--edge-id`, else `$POD_NAME`, else the hostname.
    pub fn edge_id(&self) -> String {
        if let Some(id) = self.edge_id.clone().filter(|s| !s.is_empty()) {
            return id;
        }
        if let Some(pod) = std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()) {
            return pod;
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "edge".to_string())
    }

    /// `--advertise-addr`, else `$POD_IP:<relay port>`, else none (no relay advertised).
    pub fn advertise_addr(&self) -> Option<String> {
        if let Some(a) = self.advertise_addr.clone().filter(|s| !s.is_empty()) {
            return Some(a);
        }
        let ip = std::env::var("POD_IP").ok().filter(|s| !s.is_empty())?;
        Some(SocketAddr::new(ip.parse().ok()?, self.relay_listen.port()).to_string())
    }

    /// The API bearer token from `--api-token-file` or `STREAMFLEET_API_TOKEN` (surrounding
    /// whitespace trimmed; empty means none).
    pub fn api_token(&self) -> Result<Option<String>, std::io::Error> {
        if let Some(path) = &self.api_token_file {
            let s = std::fs::read_to_string(path)?;
            return Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty()));
        }
        Ok(std::env::var("STREAMFLEET_API_TOKEN").ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()))
    }

    /// How publish keys are hashed for look-ups: the key-hash secret from
    /// `--key-hash-secret-file` or `STREAMFLEET_KEY_HASH_SECRET` (blocking: reads a file).
    /// Without one, a `--streams` edge makes a random one (its records never leave the
    /// process) and a Redis edge uses the legacy SHA-256, which `--legacy-key-hashes false`
    /// forbids.
    pub fn key_hasher(&self) -> Result<KeyHasher, String> {
        match KeyHashSecret::from_file_or_env(self.key_hash_secret_file.as_deref())? {
            Some(secret) => Ok(KeyHasher::new(Some(secret)).accept_legacy(self.legacy_key_hashes)),
            None if self.streams.is_some() => Ok(KeyHasher::new(Some(KeyHashSecret::random()))),
            None if !self.legacy_key_hashes => Err(
                "--legacy-key-hashes false needs a key-hash secret (--key-hash-secret-file or STREAMFLEET_KEY_HASH_SECRET): without one the legacy SHA-256 is the only way to find a key"
                    .into(),
            ),
            None => Ok(KeyHasher::legacy()),
        }
    }

    /// The relay secret from `--relay-secret-file` or `STREAMFLEET_RELAY_SECRET`.
    pub fn relay_secret(&self) -> Result<Option<String>, std::io::Error> {
        if let Some(path) = &self.relay_secret_file {
            let s = std::fs::read_to_string(path)?;
            return Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty()));
        }
        Ok(std::env::var("STREAMFLEET_RELAY_SECRET").ok().filter(|s| !s.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4194304"), Ok(4_194_304));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("8 parsecs").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn cli_is_consistent_and_needs_exactly_one_registry() {
        Config::command().debug_assert();
        let ok = Config::try_parse_from(["streamfleet-edge", "--streams", "x.yaml"]).unwrap();
        assert_eq!(ok.rtmp_listen.port(), 1935);
        assert_eq!(ok.lease_ttl, Duration::from_secs(15));
        assert_eq!(ok.player_queue_bytes, 4 << 20);
        assert!(Config::try_parse_from(["streamfleet-edge"]).is_err());
        assert!(Config::try_parse_from(["streamfleet-edge", "--streams", "x", "--redis-url", "redis://r"]).is_err());
    }

    #[test]
    fn the_key_hasher_follows_the_secret_and_the_registry() {
        // (The tests never set STREAMFLEET_KEY_HASH_SECRET: these read the flags alone.)
        let parse = |args: &[&str]| Config::try_parse_from([&["streamfleet-edge"], args].concat()).unwrap();
        let fleet = parse(&["--redis-url", "redis://r"]);
        assert!(fleet.legacy_key_hashes, "legacy hashes are accepted by default (the migration)");
        assert_eq!(fleet.key_hasher().unwrap().secret_id(), None, "no secret: legacy SHA-256, with a warning");
        let strict = parse(&["--redis-url", "redis://r", "--legacy-key-hashes", "false"]);
        assert!(strict.key_hasher().unwrap_err().contains("needs a key-hash secret"));
        // --streams never leaves the process: a random secret rather than an unsalted hash.
        assert!(parse(&["--streams", "x.yaml"]).key_hasher().unwrap().has_secret());

        let dir = std::env::temp_dir().join(format!("sf-key-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (good, short) = (dir.join("good"), dir.join("short"));
        std::fs::write(&good, "0123456789abcdef0123\n").unwrap();
        std::fs::write(&short, "tiny-secret\n").unwrap();
        let with = |f: &std::path::Path, legacy: &str| {
            parse(&[
                "--redis-url",
                "redis://r",
                "--key-hash-secret-file",
                f.to_str().unwrap(),
                "--legacy-key-hashes",
                legacy,
            ])
            .key_hasher()
        };
        let hasher = with(&good, "false").unwrap();
        assert_eq!(hasher.secret_id(), Some(KeyHashSecret::new("0123456789abcdef0123").unwrap().id()));
        assert_eq!(hasher.candidates("k").len(), 1, "--legacy-key-hashes false: the keyed hash only");
        assert_eq!(with(&good, "true").unwrap().candidates("k").len(), 2);
        let err = with(&short, "true").unwrap_err();
        assert!(err.contains("at least 16") && err.contains("short") && !err.contains("tiny-secret"), "{err}");
        let err = with(&dir.join("missing"), "true").unwrap_err();
        assert!(err.contains("cannot read"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn tls_and_proxy_flags_are_checked() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["streamfleet-edge", "--streams", "x.yaml"];
            args.extend_from_slice(extra);
            Config::try_parse_from(args)
        };
        let ok = parse(&[]).unwrap();
        assert!(ok.rtmps_listen.is_none() && ok.rtmp_enabled && ok.proxy_protocol == ProxyMode::Off);
        assert!(ok.check().is_ok());
        assert!(parse(&["--rtmps-listen", "0.0.0.0:443"]).is_err(), "RTMPS needs a certificate and key");
        let tls = ["--rtmps-listen", "0.0.0.0:443", "--tls-cert-file", "c.pem", "--tls-key-file", "k.pem"];
        assert!(parse(&tls).unwrap().check().is_ok());
        assert!(parse(&["--rtmp-enabled", "false"]).unwrap().check().is_err(), "no listener left");
        assert!(parse(&[&tls[..], &["--rtmp-enabled", "false"]].concat()).unwrap().check().is_ok());
        assert!(parse(&["--proxy-protocol", "v2"]).unwrap().check().is_err(), "no trusted peer");
        let c =
            parse(&[&tls[..], &["--proxy-protocol", "any", "--proxy-trusted-cidrs", "10.0.0.0/8"]].concat()).unwrap();
        assert!(c.check().is_ok());
        assert_eq!(c.rtmps_proxy_mode(), ProxyMode::Any);
        assert!(parse(&["--proxy-trusted-cidrs", "10.0.0.0/99"]).is_err());
    }
}
