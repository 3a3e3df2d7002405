//! A publisher's life after `publish(key)`: admission (see [`super::admission`]), then ingest
//! into the local [`Stream`] while the lease is held.
//!
//! The publisher is dropped at once, with an `onStatus` saying why, when its lease is lost
//! (taken over on another edge, revoked, or unprovable because the registry is unreachable),
//! when a newer publisher on this edge replaced it, after `--idle-publisher-timeout` without
//! media, or when the edge drains. Its lease is released the moment it ends, so the next
//! publisher gets in immediately. While it is silent for a moment it tells the registry it is
//! idle, which is what lets a reconnecting encoder replace it under `ReplaceIdle`.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, SystemTime},
};

use streamfleet_registry::{
    HolderMedia, HolderUpdate, IngestProtocol, KeyHash, Lease, RegistryError, SharedEdgeRegistry,
};
use tokio::{sync::watch, time::Instant};

use super::{
    admission::{self, Admitted},
    read_pacing::ReadPacing,
};
use crate::{
    app::{context::Context, shutdown},
    connection::{
        Event,
        session::{Ended, Session},
    },
    media::{Media, MediaKind},
    observe::{SessionRole, log_text::refusal_logged},
    rtmp::messages::Level,
    streams::{
        Kick, PublisherMeta, Stream,
        health::{HealthReport, MediaReport},
    },
};

/// Silence after which the publisher loop wakes to check idleness and to let a paced socket
/// wake the edge for anything (and every `QUIET` after that while the publisher stays silent).
const QUIET: Duration = Duration::from_millis(100);
/// Pause before retrying a failed holder update.
const RETRY_HOLDER_UPDATE: Duration = Duration::from_millis(200);
/// Bitrate measurement window.
const BITRATE_WINDOW: Duration = Duration::from_secs(2);

/// What the holder reports to the registry (sent by [`report_holder`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct HolderState {
    idle: bool,
    kbps: u64,
    media: Option<HolderMedia>,
}

/// The registry's summary of a stream's health (what the operator shows in the LiveStream's
/// status): the measured resolution, else the announced one; rates as whole hundredths.
fn holder_media(codecs: (&str, &str), media: &MediaReport, health: &HealthReport) -> HolderMedia {
    let video = &media.video;
    let (width, height) = match (video.config.width, video.config.height) {
        (Some(w), Some(h)) => (Some(w), Some(h)),
        _ => (media.announced.width, media.announced.height),
    };
    let known = |c: &str| (c != "unknown").then(|| c.to_string());
    HolderMedia {
        video_codec: known(codecs.0),
        width,
        height,
        fps_centi: video.fps.map(|f| (f * 100.0).round() as u32),
        keyframe_interval_ms: video.keyframe_interval_s.map(|k| (k * 1000.0).round() as u32),
        audio_codec: known(codecs.1),
        healthy: health.healthy,
        reason: health.reason.map(str::to_string),
        message: health.message.clone(),
    }
}

pub(crate) async fn run(ctx: &Arc<Context>, io: &mut Session, key: String, deadline: Instant) -> Ended {
    let candidates = ctx.settings.key_hasher.candidates(&key);
    drop(key);
    // Logs name a key by the first hex digits of the hash it is looked up by first (the keyed
    // one when there is a secret: a prefix of an unsalted hash would let log readers test
    // guesses offline).
    let Some(key_hash) = candidates.first().map(|c| c.hash) else {
        return io.reject("NetStream.Publish.BadName", "this edge accepts no publish keys");
    };
    tracing::debug!(key = %key_hash.short(), "publish requested");
    let asked = Instant::now();
    let mut shutdown = ctx.shutdown.clone();
    let admitted = tokio::select! {
        r = admission::admit(ctx, &candidates, io.remote, ingest_protocol(io.info.transport), deadline) => r,
        ended = io.until_closed_while_pending() => return ended,
        _ = shutdown::draining(&mut shutdown) => {
            return io.reject(admission::FAILED, "edge is shutting down; reconnect to publish");
        }
    };
    let admitted = match admitted {
        Ok(a) => a,
        Err(rejection) => {
            let delay = refused(ctx, &rejection, io.remote, &key_hash, "rtmp");
            if !delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline.min(Instant::now() + delay)) => {}
                    ended = io.until_closed_while_pending() => return ended,
                    _ = shutdown::draining(&mut shutdown) => {}
                }
            }
            return io.reject(rejection.code(), &rejection.description());
        }
    };
    run_admitted(ctx, io, admitted, &key_hash, asked).await
}

/// What the registry records for an RTMP publisher, from its listener's transport (`rtmp` or
/// `rtmps`).
fn ingest_protocol(transport: &str) -> IngestProtocol {
    IngestProtocol::parse(transport).unwrap_or(IngestProtocol::Rtmp)
}

/// Counts and logs a refused publish; returns how long to hold the answer back (wrong keys
/// from one address are answered later and later; a right key never waits).
pub(crate) fn refused(
    ctx: &Context,
    rejection: &admission::Rejection,
    remote: std::net::SocketAddr,
    key_hash: &KeyHash,
    protocol: &'static str,
) -> Duration {
    let mut delay = Duration::ZERO;
    if *rejection == admission::Rejection::UnknownKey {
        delay = ctx.key_failures.failed(remote.ip());
        if !delay.is_zero() {
            ctx.metrics.publish_key_failures_delayed.inc();
        }
    }
    ctx.metrics.publish_rejections.with_label_values(&[rejection.reason(), protocol]).inc();
    if refusal_logged() {
        tracing::info!(key = %key_hash.short(), reason = rejection.reason(), protocol, "publish rejected");
    }
    delay
}

/// What a publisher's life needs from its connection, whatever protocol it came in over.
pub(crate) trait PublisherConn: Send {
    /// `rtmp` or `srt`: a metric label and what `/api/v1/streams` shows.
    fn protocol(&self) -> &'static str;
    fn remote(&self) -> std::net::SocketAddr;
    fn session_id(&self) -> u64;
    fn set_role(&mut self, stream: String, playback: String);
    /// Tells the encoder it is live (RTMP: `NetStream.Publish.Start`).
    fn accept(&mut self) -> Result<(), Ended>;
    /// The next audio, video or data message; `Ok(None)` once the encoder finished publishing.
    fn next_media(&mut self) -> impl std::future::Future<Output = Result<Option<Media>, Ended>> + Send;
    /// Ends the publish, telling the encoder why where the protocol can.
    fn close_with(&mut self, level: Level, code: &str, why: &str) -> Ended;
    /// Lets the connection gather `bytes` before it wakes the edge (see
    /// [`read_pacing`](super::read_pacing)); `Unsupported` where the transport has no such mark.
    fn wake_after(&mut self, _bytes: usize) -> std::io::Result<()> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

impl PublisherConn for Session {
    fn protocol(&self) -> &'static str {
        "rtmp"
    }
    fn remote(&self) -> std::net::SocketAddr {
        self.remote
    }
    fn session_id(&self) -> u64 {
        self.info.id
    }
    fn set_role(&mut self, stream: String, playback: String) {
        Session::set_role(self, SessionRole::Publisher, stream, playback);
    }
    fn accept(&mut self) -> Result<(), Ended> {
        Session::accept(self)
    }
    async fn next_media(&mut self) -> Result<Option<Media>, Ended> {
        loop {
            match self.next_event().await? {
                Event::Media(media) => return Ok(Some(media)),
                Event::PublishFinished => return Ok(None),
                _ => {}
            }
        }
    }
    fn close_with(&mut self, level: Level, code: &str, why: &str) -> Ended {
        Session::close_with(self, level, code, why, why)
    }
    fn wake_after(&mut self, bytes: usize) -> std::io::Result<()> {
        Session::wake_after(self, bytes)
    }
}

/// The life of an admitted publisher (it holds the lease): ingest into the local stream until
/// it ends, then stop the stream and release the lease. `asked`: when it asked to publish (the
/// admission histogram's start).
pub(crate) async fn run_admitted<C: PublisherConn>(
    ctx: &Arc<Context>,
    io: &mut C,
    admitted: Admitted,
    key_hash: &KeyHash,
    asked: Instant,
) -> Ended {
    let Admitted { record, lease, mut keeper } = admitted;
    let session = io.session_id();
    let stream = ctx.hub.get_or_create(&record);
    // From here until the release returns, a newcomer on this edge that finds the lease held
    // waits for this publisher's release instead of applying the takeover policy to it once it
    // has ended.
    let mut local_lease = stream.local_leases.hold();
    let meta = PublisherMeta {
        session,
        remote_addr: io.remote().to_string(),
        since: SystemTime::now(),
        relay_source: None,
        protocol: Some(io.protocol()),
    };
    let (mut kick, replaced_local) = stream.begin_publish(meta);
    if lease.took_over {
        ctx.metrics.takeovers.inc();
    }
    tracing::info!(
        stream = %record.id, playback = %record.playback_name, key = %key_hash.short(), fence = lease.fence,
        took_over = lease.took_over, replaced_local, protocol = io.protocol(), "publisher admitted"
    );
    io.set_role(record.id.to_string(), record.playback_name.clone());
    ctx.metrics.publishers_active.get(io.protocol()).inc();

    let (holder_tx, holder_rx) = watch::channel(HolderState::default());
    let reporter = tokio::spawn(report_holder(
        ctx.registry.clone(),
        lease.clone(),
        holder_rx,
        ctx.settings.lease_timing.renew_every,
    ));

    let ended = match io.accept() {
        Err(e) => e,
        Ok(()) => {
            ctx.metrics
                .publish_admission_seconds
                .with_label_values(&[io.protocol()])
                .observe(asked.elapsed().as_secs_f64());
            ingest(ctx, io, &stream, session, &mut keeper, &mut kick, &holder_tx, &record.playback_name).await
        }
    };

    // Stop first, then free the lease: players must not see frames after the release.
    local_lease.releasing();
    stream.end_publish(session);
    drop(holder_tx);
    reporter.abort();
    match keeper.release().await {
        Ok(true) => tracing::info!(stream = %record.id, "lease released"),
        Ok(false) => tracing::debug!(stream = %record.id, "lease was no longer ours to release"),
        Err(e) => tracing::warn!(stream = %record.id, error = %e, "lease release failed; it expires after its TTL"),
    }
    drop(local_lease);
    ctx.metrics.publishers_active.get(io.protocol()).dec();
    ctx.metrics.stream_ingest_bitrate_kbps.with_label_values(&[&record.playback_name]).set(0);
    ctx.hub.release(stream);
    ended
}

#[allow(clippy::too_many_arguments)]
async fn ingest<C: PublisherConn>(
    ctx: &Arc<Context>,
    io: &mut C,
    stream: &Arc<Stream>,
    session: u64,
    keeper: &mut streamfleet_registry::LeaseKeeper,
    kick: &mut tokio::sync::oneshot::Receiver<Kick>,
    holder: &watch::Sender<HolderState>,
    playback: &str,
) -> Ended {
    let settings = &ctx.settings;
    let mut shutdown = ctx.shutdown.clone();
    let mut last_media = Instant::now();
    // Fires once the publisher has sent no audio or video for a `QUIET` (and every `QUIET` after
    // that while it stays silent): the idle clock and the pacing fallback need nothing while
    // media flows. Messages move the deadline on by replacing the timer, at most once per
    // quarter `QUIET` (`rearm_at`). Not `Sleep::reset`: moving a deadline later in place leaves
    // the entry filed at the old one, and the runtime then wakes there only to re-file it, about
    // 20 times a second per publisher, each a wake-up of its own when nothing else is due. The
    // wheel first handles an entry 100 ms out no sooner than 36 ms later (when its 64 ms slot
    // comes down), so at 30 pictures a second the next one replaces it before then.
    let quiet = tokio::time::sleep_until(last_media + QUIET);
    tokio::pin!(quiet);
    let mut rearm_at = last_media + QUIET / 4;
    // Mirrors `holder.idle`, so a message does not take the watch channel's lock to check it.
    let mut reported_idle = false;
    let mut bitrate = BitrateWindow {
        start: last_media,
        due: last_media + BITRATE_WINDOW,
        bytes: 0,
        gauge: ctx.metrics.stream_ingest_bitrate_kbps.with_label_values(&[playback]),
    };
    ctx.metrics.health_publisher_changed(playback);
    // Created once, not per loop turn: each of these registers with a watch channel when first
    // polled, and a fresh one per message would register and unregister every time.
    let lost = keeper.lost();
    tokio::pin!(lost);
    let drain = shutdown::draining(&mut shutdown);
    tokio::pin!(drain);
    let mut pacing = ReadPacing::new(settings.outbox.hold_audio);
    loop {
        tokio::select! {
            // Media first, and the rest only when no message is ready: every turn of an
            // unbiased select polls the other branches in a random order before the read, and
            // polling the lease's or the drain's watch notification takes a lock. tokio's task
            // budget makes the read (or an SRT publisher's channel) return `Pending` after a
            // bounded number of reads, so a publisher that never pauses still lets the lease,
            // kick, quiet and drain branches run.
            biased;
            ev = io.next_media() => match ev {
                Ok(Some(media)) => {
                    // The one clock reading per message: the idle clock, the bitrate window and
                    // the stream's health all use it.
                    let now = Instant::now();
                    if matches!(media.kind, MediaKind::Audio | MediaKind::Video) {
                        last_media = now;
                        if now >= rearm_at {
                            rearm_at = now + QUIET / 4;
                            quiet.set(tokio::time::sleep_until(now + QUIET));
                        }
                        if reported_idle {
                            reported_idle = false;
                            holder.send_modify(|h| h.idle = false);
                            stream.publisher_idle.store(false, Ordering::Relaxed);
                        }
                    }
                    bitrate.bytes += media.payload.len() as u64;
                    if now >= bitrate.due {
                        bitrate.report(ctx, stream, holder, playback, now);
                    }
                    if let Some(mark) = pacing.media(media.kind, media.payload.len()) {
                        pace(io, &mut pacing, mark);
                    }
                    ctx.deliver(stream, session, media, now);
                }
                Ok(None) => return Ended::Closed("publisher finished".into()),
                Err(e) => return e,
            },
            reason = &mut lost => {
                let why = format!("publishing stopped: this edge lost the stream's lease ({reason})");
                tracing::warn!(%reason, "dropping publisher: lease lost");
                return io.close_with(Level::Error, "NetStream.Publish.BadName", &why);
            }
            k = &mut *kick => {
                let why = match k {
                    Ok(Kick::Replaced) | Err(_) => "publishing stopped: a new publisher with the stream key replaced this one",
                };
                tracing::info!("dropping publisher: replaced by a newer publisher on this edge");
                return io.close_with(Level::Error, "NetStream.Publish.BadName", why);
            }
            () = &mut quiet => {
                let now = Instant::now();
                let silent = now.saturating_duration_since(last_media);
                if silent < QUIET {
                    // Media came after the deadline was last moved: not quiet yet.
                    rearm_at = last_media + QUIET / 4;
                    quiet.as_mut().reset(last_media + QUIET);
                    continue;
                }
                rearm_at = now + QUIET / 4;
                quiet.as_mut().reset(now + QUIET);
                if let Some(mark) = pacing.quiet() {
                    pace(io, &mut pacing, mark);
                }
                if silent >= settings.idle_publisher_timeout {
                    let why = format!("no media for {}; publisher disconnected", humantime::format_duration(settings.idle_publisher_timeout));
                    return io.close_with(Level::Error, "NetStream.Publish.Idle", &why);
                }
                if silent >= settings.idle_report_after && !reported_idle {
                    tracing::debug!(silent_ms = silent.as_millis() as u64, "publisher idle");
                    reported_idle = true;
                    holder.send_modify(|h| h.idle = true);
                    stream.publisher_idle.store(true, Ordering::Relaxed);
                }
                // A silent publisher's bitrate still falls to zero on time.
                if now >= bitrate.due {
                    bitrate.report(ctx, stream, holder, playback, now);
                }
            }
            _ = &mut drain => {
                let why = "edge is shutting down; reconnect to continue publishing";
                return io.close_with(Level::Status, "NetStream.Unpublish.Success", why);
            }
        }
    }
}

/// Bytes received since `start`, reported as the ingest bitrate once a [`BITRATE_WINDOW`] has
/// passed, together with the stream's health.
struct BitrateWindow {
    start: Instant,
    /// `start` + [`BITRATE_WINDOW`] (a comparison per message instead of a subtraction).
    due: Instant,
    bytes: u64,
    gauge: prometheus::IntGauge,
}

impl BitrateWindow {
    fn report(
        &mut self,
        ctx: &Context,
        stream: &Stream,
        holder: &watch::Sender<HolderState>,
        playback: &str,
        now: Instant,
    ) {
        let window = now.saturating_duration_since(self.start);
        let kbps = self.bytes * 8 / window.as_millis().max(1) as u64;
        self.gauge.set(kbps as i64);
        let (video, audio, media, health) = stream.health();
        ctx.metrics.observe_health(playback, (&video, &audio), &media, &health);
        let summary = Some(holder_media((&video, &audio), &media, &health));
        holder.send_if_modified(|h| {
            let changed = h.media != summary;
            h.media = summary;
            changed
        });
        holder.send_if_modified(|h| {
            let changed = h.kbps != kbps;
            h.kbps = kbps;
            changed
        });
        self.start = now;
        self.due = now + BITRATE_WINDOW;
        self.bytes = 0;
    }
}

/// Gives the publisher's socket a new low-water mark; a transport without one turns pacing off.
fn pace<C: PublisherConn>(io: &mut C, pacing: &mut ReadPacing, mark: usize) {
    match io.wake_after(mark) {
        Ok(()) => tracing::trace!(bytes = mark, "publisher socket wakes the edge after"),
        Err(e) => {
            if e.kind() != std::io::ErrorKind::Unsupported {
                tracing::debug!(error = %e, "socket refused a receive low-water mark; reads are not paced");
            }
            pacing.disable();
        }
    }
}

/// Reports idleness and a change of health at once, the ingest bitrate and the other media
/// figures at most once per renew interval. Failures are only logged: the lease keeper is what
/// decides whether the lease is still held.
async fn report_holder(
    registry: SharedEdgeRegistry,
    lease: Lease,
    mut rx: watch::Receiver<HolderState>,
    every: Duration,
) {
    let mut last = HolderState::default();
    let mut last_kbps_report = Instant::now();
    let mut last_media_report = Instant::now();
    let verdict = |m: &Option<HolderMedia>| m.as_ref().map(|m| (m.healthy, m.reason.clone()));
    loop {
        let state = rx.borrow_and_update().clone();
        let idle_changed = state.idle != last.idle;
        let kbps_due = state.kbps != last.kbps && last_kbps_report.elapsed() >= every;
        let health_changed = verdict(&state.media) != verdict(&last.media);
        let media_due = state.media != last.media && (health_changed || last_media_report.elapsed() >= every);
        if !idle_changed && !kbps_due && !media_due {
            if rx.changed().await.is_err() {
                return;
            }
            continue;
        }
        let update = HolderUpdate {
            idle: idle_changed.then_some(state.idle),
            ingest_kbps: kbps_due.then_some(state.kbps),
            media: if media_due { state.media.clone() } else { None },
        };
        match registry.update_holder(&lease, update).await {
            Ok(()) => {
                if idle_changed {
                    last.idle = state.idle;
                }
                if kbps_due {
                    last.kbps = state.kbps;
                    last_kbps_report = Instant::now();
                }
                if media_due {
                    last.media = state.media;
                    last_media_report = Instant::now();
                }
            }
            Err(RegistryError::LeaseLost { .. }) => return,
            Err(e) => {
                tracing::debug!(error = %e, "holder update failed; retrying");
                tokio::time::sleep(RETRY_HOLDER_UPDATE).await;
            }
        }
    }
}
