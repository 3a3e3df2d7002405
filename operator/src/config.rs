//! Command line and environment: `run` (the default), `crd` and `sync`. Every flag also reads
//! the environment variable shown in `--help`, so the Helm chart and compose files configure the
//! operator through env alone.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "streamfleet-operator",
    version,
    about = "Reconciles LiveStream resources (streamfleet.io/v1alpha1) into the Streamfleet registry",
    long_about = "Reconciles LiveStream resources (streamfleet.io/v1alpha1) into the Streamfleet registry.\n\n\
        Without a subcommand it runs the controller (`run`). `crd` prints the CustomResourceDefinition;\n\
        `sync` applies a manifest file to the registry without Kubernetes.",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Log output format; the level comes from RUST_LOG (default `info`).
    #[arg(long, env = "STREAMFLEET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller against the current Kubernetes cluster (the default).
    Run(RunArgs),
    /// Print the LiveStream CustomResourceDefinition as YAML (identical to crds/livestream.yaml).
    Crd,
    /// Apply a multi-document YAML of LiveStream and Secret manifests to the registry, without
    /// Kubernetes (VM and compose deployments).
    Sync(SyncArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// How to reach the registry (Redis).
#[derive(Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Redis URL of the registry, e.g. redis://redis:6379/0 (rediss:// for TLS, redis+sentinel:// for Sentinel).
    #[arg(long, env = "STREAMFLEET_REDIS_URL", required = true)]
    pub redis_url: Option<String>,
    /// File holding the Redis password (e.g. a mounted Secret); overrides a password in the URL.
    #[arg(long, env = "STREAMFLEET_REDIS_PASSWORD_FILE")]
    pub redis_password_file: Option<PathBuf>,
    /// File with the fleet's key-hash secret (or set STREAMFLEET_KEY_HASH_SECRET; at least 16
    /// bytes): records store the HMAC-SHA256 of each publish key under it, and records still
    /// holding the legacy unsalted SHA-256 are rewritten (their publishers stay). Give the
    /// edges the same secret. Without it, records get the legacy SHA-256 (a warning at start).
    #[arg(long, env = "STREAMFLEET_KEY_HASH_SECRET_FILE", value_name = "FILE")]
    pub key_hash_secret_file: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "STREAMFLEET_HTTP_LISTEN", default_value = "0.0.0.0:8080")]
    pub http_listen: SocketAddr,
    /// Only the holder of a coordination.k8s.io Lease reconciles, so several replicas can run.
    /// Set false for a single replica without Lease RBAC.
    #[arg(long, env = "STREAMFLEET_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, env = "STREAMFLEET_LEASE_NAME", default_value = "streamfleet-operator")]
    pub lease_name: String,
    /// Namespace of the leader-election Lease [default: POD_NAMESPACE, else the client's namespace].
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,
    /// This replica's identity in the Lease and in Events [default: hostname].
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Leader Lease duration: a crashed leader is replaced after at most this long.
    #[arg(long, env = "STREAMFLEET_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
    /// Re-check a live stream's state this often (publisher, viewers, bitrate).
    #[arg(long, env = "STREAMFLEET_LIVE_REQUEUE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub live_requeue: Duration,
    /// Re-check an idle stream this often (it notices a new publisher within this time).
    #[arg(long, env = "STREAMFLEET_IDLE_REQUEUE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub idle_requeue: Duration,
    /// Patch a stream's status at most this often when only live counters changed.
    #[arg(long, env = "STREAMFLEET_STATUS_MIN_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub status_min_interval: Duration,
    /// Fleet-wide budget of status patches per second that only change live counters (viewers,
    /// bitrate, media figures); above it they are coalesced further. Changes of phase or
    /// condition are never held back, so this keeps API server capacity for them.
    #[arg(long, env = "STREAMFLEET_LIVE_PATCH_RATE", default_value_t = 50.0, value_name = "PER_SECOND")]
    pub live_patch_rate: f64,
    /// Most LiveStreams reconciled at once. Each waits mostly on the API server (a status
    /// patch) and Redis, so a burst of publishes or ends is written about this many at a time.
    #[arg(long, env = "STREAMFLEET_RECONCILE_CONCURRENCY", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub reconcile_concurrency: u16,
    /// Remove registry records without a LiveStream this often (and once at start).
    #[arg(long, env = "STREAMFLEET_GC_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub gc_interval: Duration,
    /// Poll the registry epoch this often; a new epoch (Redis restarted empty) rewrites every record.
    #[arg(long, env = "STREAMFLEET_EPOCH_POLL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub epoch_poll: Duration,
    /// Refuse publish keys that are too weak to stand guessing: shorter than 16 bytes, fewer
    /// than 6 different characters, one character over half the key, or a shorter string
    /// repeated (the LiveStream gets Ready=False, reason WeakPublishKey, and is not served).
    /// false accepts any key, e.g. while weak keys found by an upgrade are being rotated.
    #[arg(long, env = "STREAMFLEET_REQUIRE_STRONG_PUBLISH_KEYS", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub require_strong_publish_keys: bool,
    /// Reconcile LiveStreams of these namespaces only (comma-separated), with one watch per
    /// namespace, so Roles in them are all the RBAC it needs [default: every namespace].
    #[arg(long, env = "STREAMFLEET_WATCH_NAMESPACES", value_delimiter = ',', value_name = "NAMESPACES")]
    pub watch_namespaces: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct SyncArgs {
    /// Multi-document YAML of LiveStream and Secret manifests (other kinds are ignored).
    #[arg(long, env = "STREAMFLEET_MANIFESTS")]
    pub manifests: PathBuf,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Keep running: re-apply when the file changes (removing streams deleted from it) or when
    /// the registry restarts empty.
    #[arg(long, env = "STREAMFLEET_SYNC_WATCH")]
    pub watch: bool,
    /// How often `--watch` checks the file.
    #[arg(long, env = "STREAMFLEET_SYNC_POLL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// Also remove registry records that the file does not define (the file is the whole truth).
    #[arg(long, env = "STREAMFLEET_SYNC_PRUNE")]
    pub prune: bool,
    /// Declare that this Redis has never served edges (a first install, tests, benchmarks), so
    /// the first publishers need not wait out the one-lease-TTL restart quarantine. Never use it
    /// after a Redis restart: the quarantine is what keeps a lease from before the restart from
    /// overlapping a new one.
    #[arg(long, env = "STREAMFLEET_SYNC_END_QUARANTINE")]
    pub end_quarantine: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_is_the_default_and_subcommands_parse() {
        let cli =
            Cli::try_parse_from(["op", "--redis-url", "redis://r/", "--leader-election", "false"]).expect("parses");
        assert!(cli.command.is_none());
        assert!(!cli.run.leader_election);
        assert_eq!(cli.run.idle_requeue, Duration::from_secs(30));

        let cli = Cli::try_parse_from(["op", "crd"]).expect("crd needs no redis");
        assert!(matches!(cli.command, Some(Command::Crd)));

        let cli = Cli::try_parse_from(["op", "sync", "--manifests", "s.yaml", "--redis-url", "redis://r/", "--watch"])
            .expect("parses");
        let Some(Command::Sync(s)) = cli.command else { panic!("sync") };
        assert!(s.watch && !s.prune);
        assert_eq!(s.manifests, PathBuf::from("s.yaml"));

        assert!(Cli::try_parse_from(["op", "sync", "--redis-url", "redis://r/"]).is_err(), "--manifests required");
        assert!(Cli::try_parse_from(["op"]).is_err(), "run needs --redis-url");
    }
}
