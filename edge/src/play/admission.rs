//! A player's admission after `play(name)`: look the playback name up, wait (bounded) for the
//! stream to be live, enforce `maxViewers`, accept; then the [player loop](super::player) runs
//! while the stream's fast start (metadata, sequence headers, cached GOP) and live frames reach
//! the connection's outbox.
//!
//! `maxViewers` is cluster-wide as far as the registry allows: the other edges' counts come from
//! the registry (each edge reports its own within ~250 ms of a change and at least every renew
//! interval), this edge's own count is exact. Two edges admitting players in the same instant
//! can therefore overshoot by the players admitted within one report delay.
//!
//! A stream published on another edge reaches this edge's players through the relay
//! ([`crate::relay::pull`]): the player attaches to the stream's pull and then waits for the
//! stream to be live exactly as for a local publisher.
//!
//! When the publisher goes away, players stay connected and wait up to `--play-wait-timeout`
//! for a republish (which resumes them on the same connection), then get
//! `NetStream.Play.StreamNotFound`.

use std::sync::Arc;

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
};

const FAILED: &str = "NetStream.Play.Failed";

pub(crate) async fn run(
    ctx: &Arc<Context>,
    io: &mut Session,
    name: String,
    stream_id: u32,
    requested_at: Instant,
    deadline: Instant,
) -> Ended {
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
    let ended = play(ctx, io, &record, &stream, stream_id).await;
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
    let cap = match local_cap(ctx, record).await {
        Ok(cap) => cap,
        Err(e) => {
            // Without the other edges' counts, enforce the limit on this edge alone.
            tracing::debug!(error = %e, "viewer counts unavailable; enforcing maxViewers locally");
            record.max_viewers.map(|m| m as usize)
        }
    };
    if cap.is_some_and(|cap| stream.player_count() >= cap) {
        return refuse(ctx, io, "max_viewers", FAILED, &max_viewers_text(record));
    }
    if let Err(e) = io.accept() {
        return e;
    }
    io.outbox.set_stream_id(stream_id);
    let session = io.info.id;
    match stream.add_player(session, io.outbox.clone(), ctx.settings.outbox.max_bytes, cap) {
        Ok(n) => ctx.metrics.stream_players.with_label_values(&[&record.playback_name]).set(n as i64),
        Err(_) => {
            ctx.metrics.play_rejections.with_label_values(&["max_viewers"]).inc();
            let why = max_viewers_text(record);
            return io.close_with(Level::Error, FAILED, &why, &why);
        }
    }
    io.set_role(SessionRole::Player, record.id.to_string(), record.playback_name.clone());
    ctx.metrics.players_active.inc();
    ctx.viewers_changed.notify_one();
    tracing::info!(stream = %record.id, playback = %record.playback_name, "player started");

    let ended = player::watch(ctx, io, stream, Watcher::Viewer).await;

    let n = stream.remove_player(session);
    ctx.metrics.stream_players.with_label_values(&[&record.playback_name]).set(n as i64);
    ctx.metrics.players_active.dec();
    ctx.viewers_changed.notify_one();
    ended
}

/// Resolves once the stream is live (the guard `wait_for` returns is dropped here, not held in
/// the caller's `select!`).
async fn wait_live(live: &mut tokio::sync::watch::Receiver<LiveState>) {
    if live.wait_for(|s| matches!(s, LiveState::Live { .. })).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn max_viewers_text(record: &StreamRecord) -> String {
    format!("stream {:?} has reached its viewer limit ({})", record.playback_name, record.max_viewers.unwrap_or(0))
}

/// How many players this edge may have on the stream under `maxViewers` (`None`: no limit):
/// the limit minus what the other edges last reported.
async fn local_cap(ctx: &Context, record: &StreamRecord) -> Result<Option<usize>, RegistryError> {
    let Some(max) = record.max_viewers else { return Ok(None) };
    let status = tokio::time::timeout(std::time::Duration::from_secs(1), ctx.registry.live_status(&record.id))
        .await
        .map_err(|_| RegistryError::Unavailable("viewer counts timed out".into()))??;
    let ours = status.viewers_by_edge.get(&ctx.settings.edge_id).copied().unwrap_or(0);
    let others = status.viewers.saturating_sub(ours);
    Ok(Some((max.saturating_sub(others)) as usize))
}

/// Longer than any playback name can be (a Kubernetes name is at most 253 characters): refused
/// without a registry look-up, and without echoing the name.
const MAX_NAME_BYTES: usize = 253;

fn refuse(ctx: &Context, io: &mut Session, reason: &str, code: &str, description: &str) -> Ended {
    ctx.metrics.play_rejections.with_label_values(&[reason]).inc();
    if refusal_logged() {
        tracing::info!(reason, description = %shown(description), "play rejected");
    }
    io.reject(code, description)
}
