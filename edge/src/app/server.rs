//! The edge process: registry, listeners, the accept loops with their connection limits (total
//! and per IP address, each listener its own), background tasks (registry health, viewer
//! reports, HTTP), and the drain on SIGTERM.

use std::{net::SocketAddr, sync::Arc};

use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use super::{
    accept::{self, Public, PublicShared},
    config::Config,
    context::{Context, Settings},
    gate::Gate,
    health::{self, Health},
    http, http_server, registry_backend,
    serve::{Accepted, Listener, serve_on},
    shutdown::{self, ConnTracker, Shutdown},
    tls_reload, viewers,
};
use crate::{
    observe::Metrics,
    relay::{Relay, RelaySecret},
    transport::{ProxyMode, tls},
    workers::{self, Workers},
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Registry(#[from] registry_backend::BackendError),
    #[error("cannot listen on {what} {addr}: {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("metrics setup: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("relay secret: {0}")]
    RelaySecret(std::io::Error),
    #[error("--api-token-file: {0}")]
    ApiToken(std::io::Error),
    #[error("key-hash secret: {0}")]
    KeyHashSecret(String),
    #[error("start-up: {0}")]
    Startup(String),
    #[error("{0}")]
    Config(String),
    #[error("RTMPS certificate: {0}")]
    Tls(String),
}

/// The RTMPS listener's TLS setup: the served pair and what watches its files.
struct TlsSetup {
    acceptor: tokio_rustls::TlsAcceptor,
    watched: tls_reload::Watched,
}

/// Loads the pair (off the async workers) and builds the server config; a pair that does not
/// load stops the start, since an edge without it would refuse every RTMPS encoder.
async fn tls_setup(config: &Config) -> Result<Option<TlsSetup>, StartError> {
    let (Some(_), Some(cert), Some(key)) = (config.rtmps_listen, &config.tls_cert_file, &config.tls_key_file) else {
        return Ok(None);
    };
    let (c, k) = (cert.clone(), key.clone());
    let loaded = tokio::task::spawn_blocking(move || {
        let files = tls::read_files(&c, &k)?;
        let pair = tls::parse_pair(&files, &c, &k)?;
        Ok::<_, tls::PairError>((files, pair))
    })
    .await
    .map_err(|e| StartError::Startup(e.to_string()))?;
    let (files, pair) = loaded.map_err(|e| StartError::Tls(e.to_string()))?;
    tracing::info!(fingerprint = %pair.fingerprint, chain = pair.chain_len, "TLS certificate loaded");
    let store = tls::CertStore::new(pair.key);
    let server_config = tls::server_config(store.clone()).map_err(|e| StartError::Tls(e.to_string()))?;
    Ok(Some(TlsSetup {
        acceptor: tokio_rustls::TlsAcceptor::from(server_config),
        watched: tls_reload::Watched {
            store,
            cert: cert.clone(),
            key: key.clone(),
            interval: config.tls_reload_interval,
            loaded: files,
        },
    }))
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind { what, addr, source })
}

/// Accepts on an optional listener; never resolves without one.
async fn accept_on(listener: &Option<TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// How many worker threads the edge runs: `--worker-threads`, or one per CPU for 0.
pub fn worker_count(config: &Config) -> usize {
    match config.worker_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// The async runtime of the edge's first worker thread, the one that calls [`run`]: a
/// single-threaded runtime; `run` starts the other workers (`crate::workers` says why they are
/// not one work-stealing pool).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// Says at start how publish keys are looked up. No secret on a fleet edge is logged loudly:
/// the edge still works (records written without a secret use the legacy hash, so upgrading
/// never strands a live stream), but whoever reads Redis can test keys offline.
fn report_key_hashing(config: &Config, hasher: &streamfleet_registry::KeyHasher) {
    match hasher.secret_id() {
        Some(id) if config.streams.is_none() => {
            tracing::info!(key_hash_secret_id = %id, legacy_key_hashes = config.legacy_key_hashes, "publish keys are looked up by HMAC-SHA256 under the key-hash secret")
        }
        Some(_) => {}
        None => tracing::warn!(
            "no key-hash secret (--key-hash-secret-file / STREAMFLEET_KEY_HASH_SECRET): publish keys are looked up by their unsalted SHA-256 only, which anyone who reads Redis can test guesses against offline, and records the operator writes with a secret will not be found; give every edge and the operator the same secret (docs/registry.md, \"Key hashes\")"
        ),
    }
}

/// Runs the edge until SIGTERM/SIGINT and the drain are done.
pub async fn run(config: Config) -> Result<(), StartError> {
    config.check().map_err(StartError::Config)?;
    let tls = tls_setup(&config).await?;
    // The files and /proc entries these read are read off the async workers.
    let (mut settings, relay_secret, api_token, key_hasher) = {
        let c = config.clone();
        tokio::task::spawn_blocking(move || {
            (Settings::from_config(&c), c.relay_secret(), c.api_token(), c.key_hasher())
        })
        .await
        .map_err(|e| StartError::Startup(e.to_string()))?
    };
    let relay_secret = relay_secret.map_err(StartError::RelaySecret)?;
    let api_token = api_token.map_err(StartError::ApiToken)?.map(Arc::<str>::from);
    settings.key_hasher = key_hasher.map_err(StartError::KeyHashSecret)?;
    report_key_hashing(&config, &settings.key_hasher);
    let workers = Workers::start(worker_count(&config))
        .map_err(|e| StartError::Startup(format!("cannot start the worker threads: {e}")))?;
    tokio::spawn(crate::allocator::hand_back_freed_memory());
    let registry = registry_backend::connect(&config, &settings.key_hasher).await?;
    let metrics = Arc::new(Metrics::new()?);
    let (shutdown, shutdown_rx) = Shutdown::new();
    let ctx = Context::new(settings, registry, metrics, shutdown_rx);
    tracing::info!(
        edge = %ctx.settings.edge_id,
        relay = relay_secret.is_some(),
        api_token = api_token.is_some(),
        worker_threads = workers.count(),
        "edge starting"
    );

    let rtmp = match config.rtmp_enabled {
        true => Some(bind("--rtmp-listen", config.rtmp_listen).await?),
        false => None,
    };
    let rtmps = match config.rtmps_listen {
        Some(addr) => Some(bind("--rtmps-listen", addr).await?),
        None => None,
    };
    // No secret, no relay: nothing listens on --relay-listen and no stream is pulled.
    let relay_listener = match &relay_secret {
        Some(_) => Some(TcpListener::bind(config.relay_listen).await.map_err(|source| StartError::Bind {
            what: "--relay-listen",
            addr: config.relay_listen,
            source,
        })?),
        None => {
            tracing::info!(
                "no relay secret (--relay-secret-file / STREAMFLEET_RELAY_SECRET): cross-edge relay disabled"
            );
            None
        }
    };
    if let Some(secret) = &relay_secret {
        let relay = Relay::new(RelaySecret::new(secret), ctx.settings.relay_idle_timeout);
        let _ = ctx.relay.set(Arc::new(relay));
    }
    let http_listener = TcpListener::bind(config.http_listen).await.map_err(|source| StartError::Bind {
        what: "--http-listen",
        addr: config.http_listen,
        source,
    })?;

    let health = Arc::new(Health::default());
    health.check_once(&ctx).await;
    let background = [tokio::spawn(health::run(ctx.clone(), health.clone())), tokio::spawn(viewers::run(ctx.clone()))];
    let app = http::router(http::AppState {
        ctx: ctx.clone(),
        health: health.clone(),
        api_token,
        configured: Default::default(),
    });
    let http_addr = http_listener.local_addr().unwrap_or(config.http_listen);
    let http_limits = http_server::HttpLimits {
        header_read_timeout: config.http_header_read_timeout,
        idle_timeout: config.http_idle_timeout,
        max_connections: config.http_max_connections,
    };
    let http_task = tokio::spawn(http_server::serve(http_listener, app, http_limits, ctx.metrics.clone()));
    tracing::info!(addr = %http_addr, "http listening");
    if let Some(l) = &rtmp {
        let addr = l.local_addr().unwrap_or(config.rtmp_listen);
        tracing::info!(%addr, app = %ctx.settings.protocol.app, proxy_protocol = ?config.proxy_protocol, "rtmp listening");
    }
    if let Some(l) = &rtmps {
        let addr = l.local_addr().ok().or(config.rtmps_listen);
        let addr = addr.map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(%addr, app = %ctx.settings.protocol.app, proxy_protocol = ?config.rtmps_proxy_mode(), "rtmps listening");
    }
    let (rtmps_listener, reload_task) = match tls {
        Some(setup) => (
            Some(Public { transport: "rtmps", proxy: config.rtmps_proxy_mode(), tls: Some(setup.acceptor) }),
            Some(tokio::spawn(tls_reload::run(ctx.metrics.clone(), setup.watched))),
        ),
        None => (None, None),
    };
    let rtmp_listener = Public { transport: "rtmp", proxy: config.proxy_protocol, tls: None };

    // Every connection, for the drain; each listener's limits are its own.
    let tracker = ConnTracker::new();
    crate::srt::listener::start(&ctx, &config, tracker.clone()).await.map_err(StartError::Startup)?;
    let relay_task = relay_listener.map(|listener| {
        let addr = listener.local_addr().unwrap_or(config.relay_listen);
        tracing::info!(%addr, advertised = ?ctx.settings.advertise_addr, "relay listening");
        let gate = Gate::new(
            config.relay_max_connections,
            config.relay_max_connections_per_ip,
            ["relay_max_connections", "relay_max_connections_per_ip"],
        );
        tokio::spawn(relay_accept_loop(ctx.clone(), listener, tracker.clone(), gate))
    });
    // RTMP and RTMPS share one budget: a client's connections count the same over either.
    let public = Arc::new(PublicShared {
        gate: Gate::new(
            ctx.settings.max_connections,
            ctx.settings.max_connections_per_ip,
            ["max_connections", "max_connections_per_ip"],
        ),
        trusted: config.proxy_trusted_cidrs.clone(),
        proxy_header_timeout: config.proxy_header_timeout,
        tls_handshake_timeout: config.tls_handshake_timeout,
    });
    if config.proxy_protocol != ProxyMode::Off || config.rtmps_proxy_mode() != ProxyMode::Off {
        tracing::info!(trusted = ?config.proxy_trusted_cidrs.0, "PROXY protocol: client addresses come from the headers of trusted peers");
    }
    let signal = shutdown::signal();
    tokio::pin!(signal);
    loop {
        let (accepted, listener) = tokio::select! {
            a = accept_on(&rtmp) => (a, &rtmp_listener),
            a = accept_on(&rtmps) => match &rtmps_listener {
                Some(l) => (a, l),
                None => continue,
            },
            _ = &mut signal => break,
        };
        match accepted {
            Ok((socket, peer)) => accept::admit(&ctx, &tracker, &public, listener, socket, peer),
            Err(e) => {
                // Out of file descriptors and the like: keep serving the existing ones.
                tracing::warn!(error = %e, transport = listener.transport, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }

    // Drain: stop accepting, tell everyone, release leases (each connection task does it on
    // the shutdown signal), wait for the tasks, at most --drain-timeout.
    drop(rtmp);
    drop(rtmps);
    if let Some(t) = &relay_task {
        t.abort();
    }
    if let Some(t) = &reload_task {
        t.abort();
    }
    ctx.metrics.draining.set(1);
    shutdown.start();
    let active = tracker.active();
    tracing::info!(connections = active, timeout = %humantime::format_duration(ctx.settings.drain_timeout), "draining");
    if tracker.wait_idle(ctx.settings.drain_timeout).await {
        tracing::info!("drained; exiting");
    } else {
        tracing::warn!(connections = tracker.active(), "drain timeout reached; exiting with connections open");
    }
    for t in background {
        t.abort();
    }
    http_task.abort();
    drop(workers);
    Ok(())
}

/// Accepts relay connections until the listener task is aborted (at drain). Relay connections
/// have their own limits (`--relay-max-connections`, `--relay-max-connections-per-ip`), never
/// count towards the public port's, and are waited for by the drain like any other.
async fn relay_accept_loop(ctx: Arc<Context>, listener: TcpListener, tracker: Arc<ConnTracker>, gate: Gate) {
    loop {
        match listener.accept().await {
            Ok((socket, remote)) => admit_relay(&ctx, &tracker, &gate, socket, remote),
            Err(e) => {
                tracing::warn!(error = %e, "relay accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

fn admit_relay(ctx: &Arc<Context>, tracker: &Arc<ConnTracker>, gate: &Gate, socket: TcpStream, remote: SocketAddr) {
    if ctx.is_draining() {
        ctx.metrics.connections_refused.with_label_values(&["relay_max_connections"]).inc();
        return;
    }
    let Some(slots) = gate.enter(ctx, remote) else { return };
    let tracked = tracker.try_enter(usize::MAX);
    let ctx = ctx.clone();
    let span = tracing::info_span!("relay", %remote);
    workers::spawn_connection(socket, move |socket| {
        async move {
            serve_on(ctx, Accepted::Tcp(socket), remote, Listener::Relay, "relay").await;
            drop(slots);
            drop(tracked);
        }
        .instrument(span)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_threads_are_those_asked_for() {
        use clap::Parser;
        let parse = |extra: &[&str]| {
            let mut args = vec!["streamfleet-edge", "--streams", "streams.yaml"];
            args.extend_from_slice(extra);
            Config::try_parse_from(args).unwrap()
        };
        let workers = |c: &Config| {
            let rt = runtime().unwrap();
            rt.block_on(async { crate::workers::Workers::start(worker_count(c)).unwrap().count() })
        };
        assert_eq!(workers(&parse(&["--worker-threads", "1"])), 1);
        assert_eq!(workers(&parse(&["--worker-threads", "3"])), 3);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(workers(&parse(&[])), cpus, "0 (the default) means one per CPU");
    }
}
