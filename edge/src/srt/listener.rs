//! The SRT listener (`--srt-listen`): every caller's handshake is decided before it completes,
//! and an admitted publisher is run through the same life as an RTMP one.
//!
//! A handshake is answered within [`DECISION_TIME`] (libsrt callers give up after 3 s): first
//! the listener's own limits (connections in all and per address, draining), then the stream
//! ID, then the publish key through the registry and the lease, exactly as an RTMP `publish`
//! ([`crate::publish::admission`]). A refusal carries SRT's access-control reject code (1401
//! unknown key, 1403 disabled, 1409 already published, 1503 unavailable, ...) and is counted in
//! `publish_rejections_total{protocol="srt"}`; nothing is buffered for a refused caller. Only
//! an admitted caller's handshake completes: its MPEG-TS is demuxed into media for the stream
//! ([`crate::mpegts`]), and its link statistics are exported per stream while it publishes.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use futures::StreamExt;
use srt_protocol::{packet::CoreRejectReason, settings::KeySettings};
use srt_tokio::{
    ConnectionRequest, SrtIncoming, SrtListener, SrtSocket,
    access::{RejectReason, ServerRejectReason},
    options::{ByteCount, DataRate, KeySize, LiveBandwidthMode, Passphrase},
};
use streamfleet_registry::{IngestProtocol, RegistryError, StreamRecord};
use tokio::time::{Instant, timeout_at};
use tracing::Instrument;

use super::stream_id::{self, Request};
use crate::{
    app::{
        config::Config,
        context::Context,
        gate::PerIp,
        shutdown::{self, ConnTracker},
    },
    connection::session::Ended,
    media::Media,
    mpegts::{demux::Demuxer, to_media::ToMedia},
    observe::{Metrics, SessionInfo, SessionRole, log_text::refusal_logged},
    play::admission as play_admission,
    publish::{
        admission::{self, Rejection},
        publisher::{self, PublisherConn},
    },
    relay,
    rtmp::messages::Level,
};

/// Most time from a caller's handshake to its answer: under libsrt's default connect timeout
/// (3 s), so a caller hears the refusal rather than timing out, and above the takeover wait (2 s).
pub(crate) const DECISION_TIME: Duration = Duration::from_millis(2500);
/// How often a publisher's link statistics are exported.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// The listener's limits and settings, resolved at start.
pub(crate) struct SrtSettings {
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_ip: usize,
    pub(crate) passphrase: Option<String>,
    /// Largest PES packet (one video frame) a publisher may send: `--max-message-size`.
    pub(crate) max_frame: usize,
}

/// Bytes an SRT connection's sender buffers before SRT sends and the peer acknowledges them,
/// as libsrt's default (8192 packets). srt-tokio's default, 46 592 bytes (32 packets), is less
/// than one HD keyframe, let alone a player's fast-start burst (the cached GOP, handed to SRT at
/// once and paced out at --srt-max-bandwidth): a burst beyond it dropped packets never sent,
/// which wedged srt-protocol's sender for good (patched now to drop them and go on:
/// third_party/srt-protocol/PATCHES.md), so the player never started. The buffer holds only what
/// is unacknowledged: on a healthy link, a few round trips of the stream.
pub(crate) const SEND_BUFFER: u64 = 12 * 1024 * 1024;

/// Starts the SRT listener when `--srt-listen` is set: binds it and spawns the task deciding
/// its handshakes, which keeps refusing new callers (1503) through the drain.
pub(crate) async fn start(ctx: &Arc<Context>, config: &Config, tracker: Arc<ConnTracker>) -> Result<(), String> {
    let args = config.srt.clone();
    let Some(addr) = args.srt_listen else { return Ok(()) };
    let passphrase = {
        let args = args.clone();
        tokio::task::spawn_blocking(move || args.passphrase()).await.map_err(|e| e.to_string())??
    };
    let bind_error = |e: std::io::Error| format!("cannot listen on --srt-listen {addr}: {e}");
    // Bound here so the log names the port taken (port 0 in tests).
    let socket = tokio::net::UdpSocket::bind(addr).await.map_err(bind_error)?;
    let addr = socket.local_addr().map_err(bind_error)?;
    let (listener, incoming) = SrtListener::builder()
        .latency(args.srt_latency)
        .bandwidth(LiveBandwidthMode::Max(DataRate(args.srt_max_bandwidth.max(1) * 1_000_000 / 8)))
        .set(|o| o.sender.buffer_size = ByteCount(SEND_BUFFER))
        .socket(socket)
        .bind(addr)
        .await
        .map_err(bind_error)?;
    tracing::info!(%addr, latency = ?args.srt_latency, encrypted = passphrase.is_some(), "srt listening");
    let settings = SrtSettings {
        max_connections: args.srt_max_connections,
        max_connections_per_ip: args.srt_max_connections_per_ip,
        passphrase,
        max_frame: usize::try_from(config.max_message_size).unwrap_or(usize::MAX),
    };
    tokio::spawn(accept_loop(ctx.clone(), listener, incoming, settings, tracker));
    Ok(())
}

/// Decides every handshake for as long as the process runs; each admitted caller's connection
/// is tracked for the drain like an RTMP one.
async fn accept_loop(
    ctx: Arc<Context>,
    listener: SrtListener,
    mut incoming: SrtIncoming,
    settings: SrtSettings,
    tracker: Arc<ConnTracker>,
) {
    // Dropping the listener would close every SRT connection at once.
    let _listener = listener;
    let settings = Arc::new(settings);
    let slots = ConnTracker::new();
    let per_ip = Arc::new(PerIp::default());
    // The listener's task waits for each request to be taken, so requests are only ever handed
    // to a task of their own here, never decided inline.
    while let Some(request) = incoming.incoming().next().await {
        let remote = request.remote();
        let (ctx, settings, tracker, slots, per_ip) =
            (ctx.clone(), settings.clone(), tracker.clone(), slots.clone(), per_ip.clone());
        let span = tracing::info_span!("srt", %remote, stream = tracing::field::Empty);
        crate::workers::spawn_placed(
            async move {
                if ctx.is_draining() {
                    reject(request, down()).await;
                    return;
                }
                let Some(total) = slots.try_enter(settings.max_connections) else {
                    ctx.metrics.connections_refused.with_label_values(&["srt_max_connections"]).inc();
                    reject(request, RejectReason::Server(ServerRejectReason::Overload)).await;
                    return;
                };
                let Some(ip) = per_ip.try_enter(remote.ip(), settings.max_connections_per_ip) else {
                    ctx.metrics.connections_refused.with_label_values(&["srt_max_connections_per_ip"]).inc();
                    reject(request, RejectReason::Server(ServerRejectReason::Overload)).await;
                    return;
                };
                let tracked = tracker.try_enter(usize::MAX);
                serve(&ctx, &settings, request).await;
                drop((total, ip, tracked));
            }
            .instrument(span),
        );
    }
}

fn down() -> RejectReason {
    RejectReason::Server(ServerRejectReason::Down)
}

async fn reject(request: ConnectionRequest, reason: RejectReason) {
    if let Err(e) = request.reject(reason).await {
        tracing::debug!(error = %e, "SRT rejection not sent (listener closed)");
    }
}

/// `Rejection::Other` label of a plain caller refused because the stream (or the edge)
/// requires a passphrase: answered with libsrt's "unsecure" code, as before any look-up.
const UNENCRYPTED: &str = "unencrypted";

/// The SRT reject code for a refused publish, as libsrt's access-control codes name them.
fn reject_code(rejection: &Rejection) -> RejectReason {
    if matches!(rejection, Rejection::Other { label: UNENCRYPTED, .. }) {
        return RejectReason::Core(CoreRejectReason::Unsecure);
    }
    RejectReason::Server(match rejection {
        Rejection::UnknownKey => ServerRejectReason::Unauthorized,
        Rejection::Disabled { .. } => ServerRejectReason::Forbidden,
        Rejection::AlreadyActive { .. } => ServerRejectReason::Conflict,
        Rejection::Unavailable(_) | Rejection::Other { .. } => ServerRejectReason::Down,
    })
}

async fn serve(ctx: &Arc<Context>, settings: &SrtSettings, request: ConnectionRequest) {
    let deadline = Instant::now() + DECISION_TIME;
    let remote = request.remote();
    let parsed = match request.stream_id() {
        None => Err(stream_id::StreamIdError::Empty),
        Some(id) => stream_id::parse(id),
    };
    let request_kind = match parsed {
        Ok(r) => r,
        Err(e) => {
            ctx.metrics.protocol_errors.with_label_values(&["srt_stream_id"]).inc();
            if refusal_logged() {
                tracing::info!(error = ?e, "SRT caller refused: unreadable stream ID");
            }
            let reason = match e {
                stream_id::StreamIdError::BadMode => ServerRejectReason::BadMode,
                _ => ServerRejectReason::BadRequest,
            };
            return reject(request, RejectReason::Server(reason)).await;
        }
    };
    // A libsrt caller with a passphrase always sends keying material, and the (patched) listener
    // reports its key length: `Unspecified` means a plain caller. With a fleet-wide passphrase
    // every caller must encrypt, so a plain one is refused before anything is looked up; a
    // stream's own passphrase (its record's) is applied once the record is known.
    let key_size = request.key_size();
    if settings.passphrase.is_some() && key_size == KeySize::Unspecified {
        unencrypted(ctx, &request_kind);
        return reject(request, RejectReason::Core(CoreRejectReason::Unsecure)).await;
    }
    let key = match request_kind {
        Request::Publish { key } => key,
        Request::Play { name } => return serve_play(ctx, settings, request, name, deadline).await,
    };
    let candidates = ctx.settings.key_hasher.candidates(&key);
    drop(key);
    let Some(key_hash) = candidates.first().map(|c| c.hash) else {
        return reject(request, RejectReason::Server(ServerRejectReason::Unauthorized)).await;
    };
    let asked = Instant::now();
    let mut shutdown = ctx.shutdown.clone();
    // A plain caller of a stream with its own passphrase is refused before the lease is taken.
    let check = |record: &StreamRecord| match key_settings(settings, record, key_size) {
        Err(NeedsPassphrase) => {
            Err(Rejection::Other { label: UNENCRYPTED, message: "the stream requires an SRT passphrase".into() })
        }
        Ok(_) => Ok(()),
    };
    let admitted = tokio::select! {
        r = admission::admit_checked(ctx, &candidates, remote, IngestProtocol::Srt, deadline, check) => r,
        _ = shutdown::draining(&mut shutdown) => return reject(request, down()).await,
    };
    let admitted = match admitted {
        Ok(a) => a,
        Err(rejection) => {
            let delay = publisher::refused(ctx, &rejection, remote, &key_hash, "srt");
            if !delay.is_zero() {
                tokio::time::sleep_until(deadline.min(Instant::now() + delay)).await;
            }
            return reject(request, reject_code(&rejection)).await;
        }
    };
    let Ok(key_settings) = key_settings(settings, &admitted.record, key_size) else {
        // Checked before the lease was taken; the record cannot have changed since.
        let _ = admitted.keeper.release().await;
        return reject(request, RejectReason::Core(CoreRejectReason::Unsecure)).await;
    };
    let mut socket = match request.accept(key_settings).await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(error = %e, "SRT caller gone before its handshake completed; releasing the lease");
            let keeper = admitted.keeper;
            let _ = keeper.release().await;
            return;
        }
    };
    let guard = ctx.sessions.open(remote, "srt");
    guard.info.set_protocol("srt");
    let playback = admitted.record.playback_name.clone();
    tracing::Span::current().record("stream", tracing::field::display(&admitted.record.id));
    ctx.metrics.srt_connections_active.inc();
    let started = Instant::now();
    let stats =
        tokio::spawn(export_stats(Box::pin(socket.statistics().clone()), ctx.metrics.clone(), playback.clone()));
    let mut conn = SrtPublisher {
        socket,
        info: guard.info.clone(),
        demux: Demuxer::new(settings.max_frame),
        media: ToMedia::new(),
        pending: VecDeque::new(),
        metrics: ctx.metrics.clone(),
    };
    let ended = publisher::run_admitted(ctx, &mut conn, admitted, &key_hash, asked).await;
    // Closed here, not on drop: the caller hears the shutdown before a draining process exits
    // (a dropped socket's task may not get to send it), rather than after its peer timeout.
    let _ = tokio::time::timeout(super::CLOSE_WAIT, conn.socket.close_and_finish()).await;
    stats.abort();
    ctx.metrics.srt_link.forget(&playback);
    ended.record(&ctx.metrics);
    let s = guard.info.snapshot();
    tracing::info!(
        role = "publisher",
        protocol = "srt",
        duration_s = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        bytes_received = s.bytes_received,
        damaged_pes = conn.demux.damaged_pes,
        reason = %ended.summary(),
        "session ended"
    );
    ctx.metrics.srt_connections_active.dec();
    ctx.metrics.connection_duration.with_label_values(&["publisher"]).observe(started.elapsed().as_secs_f64());
}

/// A play request (`m=request`, `read:`): decided at the handshake like a publish (name,
/// `maxViewers`), then served by [`super::play`].
async fn serve_play(
    ctx: &Arc<Context>,
    settings: &SrtSettings,
    request: ConnectionRequest,
    name: String,
    deadline: Instant,
) {
    let refuse = |reason: &'static str, code: ServerRejectReason| {
        ctx.metrics.play_rejections.with_label_values(&[reason]).inc();
        if refusal_logged() {
            tracing::info!(reason, "SRT play refused");
        }
        RejectReason::Server(code)
    };
    if name.len() > play_admission::MAX_NAME_BYTES {
        return reject(request, refuse("not_found", ServerRejectReason::Notfound)).await;
    }
    let record = match timeout_at(deadline, ctx.registry.lookup_playback(&name)).await {
        Ok(Ok(r)) => r,
        Ok(Err(RegistryError::NotFound { .. })) => {
            return reject(request, refuse("not_found", ServerRejectReason::Notfound)).await;
        }
        // A stream published on this edge stays watchable while the registry is unreachable.
        _ => match ctx.hub.live_record(&name) {
            Some(r) => r,
            None => return reject(request, refuse("unavailable", ServerRejectReason::Down)).await,
        },
    };
    let key_settings = match key_settings(settings, &record, request.key_size()) {
        Ok(k) => k,
        Err(NeedsPassphrase) => {
            unencrypted(ctx, &Request::Play { name });
            return reject(request, RejectReason::Core(CoreRejectReason::Unsecure)).await;
        }
    };
    let remote = request.remote();
    let guard = ctx.sessions.open(remote, "srt");
    guard.info.set_protocol("srt");
    tracing::Span::current().record("stream", tracing::field::display(&record.id));
    let slot = match record.max_viewers {
        None => None,
        Some(max) => match play_admission::reserve_slot(ctx, &record, guard.info.id, max).await {
            Ok(Some(slot)) => Some(slot),
            Ok(None) => return reject(request, refuse("max_viewers", ServerRejectReason::Overload)).await,
            Err(e) => {
                tracing::debug!(error = %e, "viewer slot unavailable; enforcing maxViewers locally");
                None
            }
        },
    };
    let cap = if slot.is_some() { None } else { record.max_viewers.map(|m| m as usize) };
    let stream = ctx.hub.get_or_create(&record);
    if cap.is_some_and(|cap| stream.player_count() >= cap) {
        ctx.hub.release(stream);
        play_admission::release_slot(ctx, &record, slot).await;
        return reject(request, refuse("max_viewers", ServerRejectReason::Overload)).await;
    }
    let socket = match request.accept(key_settings).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "SRT player gone before its handshake completed");
            ctx.hub.release(stream);
            play_admission::release_slot(ctx, &record, slot).await;
            return;
        }
    };
    // Published on another edge (or nowhere yet): this edge's pull of the stream feeds it.
    let pull = relay::pull::attach(ctx, &record, &stream);
    ctx.metrics.srt_connections_active.inc();
    let started = Instant::now();
    let end = super::play::serve_player(ctx, socket, guard.info.clone(), &record, &stream, slot, cap).await;
    ctx.hub.release(stream);
    drop(pull);
    let why = match end {
        super::play::PlayEnd::Closed(why) => why,
        super::play::PlayEnd::Slow => "too slow",
    };
    tracing::info!(
        role = "player",
        protocol = "srt",
        duration_s = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        bytes_sent = guard.info.snapshot().bytes_sent,
        reason = why,
        "session ended"
    );
    ctx.metrics.srt_connections_active.dec();
    ctx.metrics.connection_duration.with_label_values(&["player"]).observe(started.elapsed().as_secs_f64());
}

/// A plain caller where a passphrase is required.
struct NeedsPassphrase;

/// The encryption an admitted caller of `record` gets: the stream's own passphrase if its
/// record has one, else the edge's (`--srt-passphrase-file`), with the caller's key length.
/// `None`: a plain connection (no passphrase anywhere).
fn key_settings(
    settings: &SrtSettings,
    record: &StreamRecord,
    key_size: KeySize,
) -> Result<Option<KeySettings>, NeedsPassphrase> {
    let passphrase = match (&record.srt_passphrase, &settings.passphrase) {
        (Some(own), _) => own.expose(),
        (None, Some(fleet)) => fleet.as_str(),
        (None, None) => return Ok(None),
    };
    if key_size == KeySize::Unspecified {
        return Err(NeedsPassphrase);
    }
    // Both were checked for SRT's length rule (10 to 79 characters) when they were read.
    Passphrase::try_from(passphrase.to_string())
        .map(|passphrase| Some(KeySettings { key_size, passphrase }))
        .map_err(|_| NeedsPassphrase)
}

/// Counts a plain caller refused for want of a passphrase.
fn unencrypted(ctx: &Context, request: &Request) {
    match request {
        Request::Publish { .. } => ctx.metrics.publish_rejections.with_label_values(&[UNENCRYPTED, "srt"]).inc(),
        Request::Play { .. } => ctx.metrics.play_rejections.with_label_values(&[UNENCRYPTED]).inc(),
    }
    if refusal_logged() {
        tracing::info!("SRT caller refused: no passphrase, and one is required");
    }
}

type Stats = std::pin::Pin<Box<dyn futures::Stream<Item = srt_tokio::SocketStatistics> + Send>>;

async fn export_stats(mut stats: Stats, metrics: Arc<Metrics>, playback: String) {
    let link = &metrics.srt_link;
    let mut last = Instant::now() - STATS_EVERY;
    while let Some(s) = stats.next().await {
        if last.elapsed() < STATS_EVERY {
            continue;
        }
        last = Instant::now();
        link.loss_reports.with_label_values(&[&playback]).set(s.tx_nak as i64);
        link.lost.with_label_values(&[&playback]).set(s.rx_loss_data as i64);
        link.rtt.with_label_values(&[&playback]).set(s.rx_rtt.as_secs_f64());
        link.retransmitted.with_label_values(&[&playback]).set(s.rx_retransmit_data as i64);
        link.dropped.with_label_values(&[&playback]).set(s.rx_dropped_data as i64);
    }
}

/// An admitted SRT caller as the publisher's life sees it: MPEG-TS in, media out.
struct SrtPublisher {
    socket: SrtSocket,
    info: Arc<SessionInfo>,
    demux: Demuxer,
    media: ToMedia,
    pending: VecDeque<Media>,
    metrics: Arc<Metrics>,
}

impl SrtPublisher {
    fn bad_input(&self, kind: &'static str, e: impl std::fmt::Display) -> Ended {
        self.metrics.protocol_errors.with_label_values(&[kind]).inc();
        Ended::Closed(format!("bad MPEG-TS from the SRT publisher: {e}"))
    }
}

impl PublisherConn for SrtPublisher {
    fn protocol(&self) -> &'static str {
        "srt"
    }
    fn remote(&self) -> SocketAddr {
        self.info.remote_addr
    }
    fn session_id(&self) -> u64 {
        self.info.id
    }
    fn set_role(&mut self, stream: String, playback: String) {
        self.info.set_role(SessionRole::Publisher, Some(stream), Some(playback));
    }
    fn accept(&mut self) -> Result<(), Ended> {
        // The handshake completing was the answer.
        Ok(())
    }
    async fn next_media(&mut self) -> Result<Option<Media>, Ended> {
        let mut pes = Vec::new();
        let mut out = Vec::new();
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Ok(Some(m));
            }
            // Cancel-safe: a message is either taken whole or left in the socket.
            let (_, data) = match self.socket.next().await {
                None => return Err(Ended::Eof),
                Some(Err(e)) => return Err(Ended::Io(e)),
                Some(Ok(m)) => m,
            };
            self.info.bytes_received.fetch_add(data.len() as u64, Ordering::Relaxed);
            self.metrics.bytes_received.srt.inc_by(data.len() as u64);
            if let Err(e) = self.demux.push(&data, &mut pes) {
                return Err(self.bad_input("mpegts", e));
            }
            for p in pes.drain(..) {
                if let Err(e) = self.media.convert(p, &mut out) {
                    return Err(self.bad_input("mpegts", e));
                }
            }
            self.pending.extend(out.drain(..));
        }
    }
    fn close_with(&mut self, _level: Level, _code: &str, why: &str) -> Ended {
        // SRT has no status message: the caller sees the connection close (and reconnects).
        Ended::Closed(why.to_string())
    }
}
