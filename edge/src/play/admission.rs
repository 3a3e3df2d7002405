//! A player's admission after `play(name)`: look the playback name up, wait (bounded) for the
//! stream to be live, enforce `maxViewers`, accept; then the [player loop](super::player) runs
//! while the stream's fast start (metadata, sequence headers, cached GOP) and live frames reach
//! the connection's outbox.
//!
//! `maxViewers` holds cluster-wide, bursts included: a player of a limited stream is admitted
//! only once it holds a slot in the registry (one atomic `reserve_viewer` round trip, see
//! docs/registry.md), released when it leaves and renewed with the edge's viewer report, so a
//! dead edge's slots expire after one lease TTL. Streams without a limit make no such call. When
//! the registry cannot be reached, the limit is enforced on this edge alone.
//!
//! A stream published on another edge reaches this edge's players through the relay
//! ([`crate::relay::pull`]): the player attaches to the stream's pull and then waits for the
//! stream to be live exactly as for a local publisher.
//!
//! When the publisher goes away, players stay connected and wait up to `--play-wait-timeout`
//! for a republish (which resumes them on the same connection), then get
//! `NetStream.Play.StreamNotFound`.

use std::{sync::Arc, time::Duration};

use streamfleet_registry::{RegistryError, StreamRecord};
use tokio::time::{Instant, timeout_at};

use super::player::{self, NOT_FOUND, Watcher};
use crate::{
    app::{context::Context, shutdown},
    connection::session::{Ended, Session},
    observe::{
        SessionRole,
        log_text::{refusal_logged, shown},
    },
    relay,
    rtmp::messages::Level,
    streams::{LiveState, Stream},
    sync::lock,
};

const FAILED: &str = "NetStream.Play.Failed";

/// A viewer's `play`.
pub(crate) struct Request {
    pub(crate) name: String,
    pub(crate) stream_id: u32,
    /// How long the client asked to play (`play`'s len argument, e.g. rtmpdump's `--stop`).
    pub(crate) duration: Option<Duration>,
    pub(crate) at: Instant,
}

pub(crate) async fn run(ctx: &Arc<Context>, io: &mut Session, request: Request, deadline: Instant) -> Ended {
    let Request { name, stream_id, duration, at: requested_at } = request;
    let _ = io.outbox.play_requested.set(requested_at);
    if name.len() > MAX_NAME_BYTES {
        let description =
            format!("a stream name of {} bytes is longer than any stream name (at most {MAX_NAME_BYTES})", name.len());
        return refuse(ctx, io, "not_found", NOT_FOUND, &description);
    }
    let lookup = tokio::select! {
        r = timeout_at(deadline, ctx.registry.lookup_playback(&name)) => r,
        ended = io.until_closed_while_pending() => return ended,
    };
    let record = match lookup {
        Ok(Ok(r)) => r,
        Ok(Err(RegistryError::NotFound { .. })) => {
            return refuse(ctx, io, "not_found", NOT_FOUND, &format!("no stream is named {name:?}"));
        }
        // A stream published on this edge stays watchable while the registry is unreachable.
        Ok(Err(_)) | Err(_) if ctx.hub.live_record(&name).is_some() => {
            tracing::debug!(playback = %shown(&name), "registry unreachable; playing the local stream");
            match ctx.hub.live_record(&name) {
                Some(r) => r,
                None => return refuse(ctx, io, "unavailable", FAILED, "stream registry unavailable"),
            }
        }
        Ok(Err(e)) => return refuse(ctx, io, "unavailable", FAILED, &format!("stream registry unavailable: {e}")),
        Err(_) => return refuse(ctx, io, "unavailable", FAILED, "stream registry did not answer in time"),
    };
    let stream = ctx.hub.get_or_create(&record);
    // Published on another edge (or nowhere yet): this edge's pull of the stream feeds it.
    let pull = relay::pull::attach(ctx, &record, &stream);
    let ended = play(ctx, io, &record, &stream, stream_id, duration).await;
    ctx.hub.release(stream);
    drop(pull);
    ended
}

async fn play(
    ctx: &Arc<Context>,
    io: &mut Session,
    record: &StreamRecord,
    stream: &Arc<Stream>,
    stream_id: u32,
    duration: Option<Duration>,
) -> Ended {
    let wait = ctx.settings.play_wait_timeout;
    if !stream.is_live() {
        let mut live = stream.watch_live();
        let mut shutdown = ctx.shutdown.clone();
        let waited = tokio::select! {
            r = timeout_at(Instant::now() + wait, wait_live(&mut live)) => r.is_ok(),
            ended = io.until_closed_while_pending() => return ended,
            _ = shutdown::draining(&mut shutdown) => {
                return refuse(ctx, io, "draining", NOT_FOUND, "edge is shutting down; reconnect to play");
            }
        };
        if !waited {
            let why =
                format!("stream {:?} is not live (waited {})", record.playback_name, humantime::format_duration(wait));
            return refuse(ctx, io, "not_live", NOT_FOUND, &why);
        }
    }
    // maxViewers: a slot in the registry first (atomic across every edge); streams without a
    // limit make no registry call here.
    let slot = match record.max_viewers {
        None => None,
        Some(max) => match reserve_slot(ctx, record, io.info.id, max).await {
            Ok(Some(slot)) => Some(slot),
            Ok(None) => return refuse(ctx, io, "max_viewers", FAILED, &max_viewers_text(record)),
            Err(e) => {
                // Registry unreachable: the limit holds on this edge alone (as a single node).
                tracing::debug!(error = %e, "viewer slot unavailable; enforcing maxViewers locally");
                None
            }
        },
    };
    // Without a registry slot, a limited stream is still capped by this edge's own count.
    let cap = if slot.is_some() { None } else { record.max_viewers.map(|m| m as usize) };
    if cap.is_some_and(|cap| stream.player_count() >= cap) {
        return refuse(ctx, io, "max_viewers", FAILED, &max_viewers_text(record));
    }
    if let Err(e) = io.accept() {
        release_slot(ctx, record, slot).await;
        return e;
    }
    io.outbox.set_stream_id(stream_id);
    let session = io.info.id;
    match stream.add_player(session, io.outbox.clone(), ctx.settings.outbox.max_bytes, cap) {
        Ok(n) => ctx.metrics.stream_players.with_label_values(&[&record.playback_name]).set(n as i64),
        Err(_) => {
            release_slot(ctx, record, slot).await;
            ctx.metrics.play_rejections.with_label_values(&["max_viewers"]).inc();
            let why = max_viewers_text(record);
            return io.close_with(Level::Error, FAILED, &why, &why);
        }
    }
    io.set_role(SessionRole::Player, record.id.to_string(), record.playback_name.clone());
    ctx.metrics.players_active.rtmp.inc();
    ctx.viewers_changed.notify_one();
    tracing::info!(stream = %record.id, playback = %record.playback_name, "player started");

    let ended = player::watch(ctx, io, stream, Watcher::Viewer, duration.map(|d| Instant::now() + d)).await;

    let n = stream.remove_player(session);
    ctx.metrics.stream_players.with_label_values(&[&record.playback_name]).set(n as i64);
    ctx.metrics.players_active.rtmp.dec();
    ctx.viewers_changed.notify_one();
    release_slot(ctx, record, slot).await;
    ended
}

/// How long a registry call of a play's `maxViewers` slot may take.
const SLOT_CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Takes a `maxViewers` slot for this player in the registry: `Ok(Some(name))` admitted (the
/// edge renews it with its viewer report until [`release_slot`]), `Ok(None)` the stream is full.
/// The slot expires after three renew intervals (the lease TTL) unless renewed, so a dead edge's
/// slots free themselves.
pub(crate) async fn reserve_slot(
    ctx: &Context,
    record: &StreamRecord,
    session: u64,
    max: u32,
) -> Result<Option<String>, RegistryError> {
    let name = format!("{}{session}", ctx.slot_prefix);
    let ttl = ctx.settings.lease_timing.renew_every * 3;
    let granted = tokio::time::timeout(SLOT_CALL_TIMEOUT, ctx.registry.reserve_viewer(&record.id, &name, max, ttl))
        .await
        .map_err(|_| RegistryError::Unavailable("viewer slot timed out".into()))??;
    if !granted {
        return Ok(None);
    }
    lock(&ctx.viewer_slots).entry(record.id.clone()).or_default().insert(name.clone());
    Ok(Some(name))
}

/// Frees a player's slot (no renewal from now on; the registry drops it at once, or at its
/// expiry if the registry cannot be reached now).
pub(crate) async fn release_slot(ctx: &Context, record: &StreamRecord, slot: Option<String>) {
    let Some(name) = slot else { return };
    {
        let mut slots = lock(&ctx.viewer_slots);
        if let Some(set) = slots.get_mut(&record.id) {
            set.remove(&name);
            if set.is_empty() {
                slots.remove(&record.id);
            }
        }
    }
    match tokio::time::timeout(SLOT_CALL_TIMEOUT, ctx.registry.release_viewer(&record.id, &name)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "viewer slot release failed; it expires by itself"),
        Err(_) => tracing::debug!("viewer slot release timed out; it expires by itself"),
    }
}

/// Resolves once the stream is live (the guard `wait_for` returns is dropped here, not held in
/// the caller's `select!`).
async fn wait_live(live: &mut tokio::sync::watch::Receiver<LiveState>) {
    if live.wait_for(|s| matches!(s, LiveState::Live { .. })).await.is_err() {
        std::future::pending::<()>().await;
    }
}

pub(crate) fn max_viewers_text(record: &StreamRecord) -> String {
    format!("stream {:?} has reached its viewer limit ({})", record.playback_name, record.max_viewers.unwrap_or(0))
}

/// Longer than any playback name can be (a Kubernetes name is at most 253 characters): refused
/// without a registry look-up, and without echoing the name.
pub(crate) const MAX_NAME_BYTES: usize = 253;

fn refuse(ctx: &Context, io: &mut Session, reason: &str, code: &str, description: &str) -> Ended {
    ctx.metrics.play_rejections.with_label_values(&[reason]).inc();
    if refusal_logged() {
        tracing::info!(reason, description = %shown(description), "play rejected");
    }
    io.reject(code, description)
}
