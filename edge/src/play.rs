//! A player's life after `play(name)`: look the playback name up, wait (bounded) for the stream
//! to be live, enforce `maxViewers`, accept, then receive the stream's fast start (metadata,
//! sequence headers, cached GOP) followed by live frames through the connection's outbox.
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
use tokio::time::{Instant, sleep_until, timeout_at};

use crate::{
    connection::{
        driver::{Ended, Io},
        protocol::Event,
    },
    context::Context,
    fanout::CloseReason,
    rtmp::messages::Level,
    sessions::SessionRole,
    stream::{LiveState, Stream},
};

const NOT_FOUND: &str = "NetStream.Play.StreamNotFound";
const FAILED: &str = "NetStream.Play.Failed";

pub async fn run(
    ctx: &Arc<Context>,
    io: &mut Io,
    name: String,
    stream_id: u32,
    requested_at: Instant,
    deadline: Instant,
) -> Ended {
    let _ = io.outbox.play_requested.set(requested_at);
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
            tracing::debug!(playback = %name, "registry unreachable; playing the local stream");
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
    let pull = crate::relay::pull::attach(ctx, &record, &stream);
    let ended = play(ctx, io, &record, &stream, stream_id).await;
    ctx.hub.release(stream);
    drop(pull);
    ended
}

async fn play(ctx: &Arc<Context>, io: &mut Io, record: &StreamRecord, stream: &Arc<Stream>, stream_id: u32) -> Ended {
    let wait = ctx.settings.play_wait_timeout;
    if !stream.is_live() {
        let mut live = stream.watch_live();
        let mut shutdown = ctx.shutdown.clone();
        let waited = tokio::select! {
            r = timeout_at(Instant::now() + wait, wait_live(&mut live)) => r.is_ok(),
            ended = io.until_closed_while_pending() => return ended,
            _ = crate::shutdown::draining(&mut shutdown) => {
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
    if let Err(e) = io.conn.accept().map_err(Ended::Protocol).and_then(|outs| io.apply(outs)) {
        return e;
    }
    io.outbox.set_stream_id(stream_id);
    let session = io.info.id;
    match stream.add_player(session, io.outbox.clone(), ctx.settings.outbox.max_bytes, cap) {
        Ok(n) => ctx.metrics.stream_players.with_label_values(&[&record.playback_name]).set(n as i64),
        Err(_) => {
            ctx.metrics.play_rejections.with_label_values(&["max_viewers"]).inc();
            let bytes = io.conn.status(Level::Error, FAILED, &max_viewers_text(record));
            return io.send(bytes).err().unwrap_or_else(|| Ended::Closed(max_viewers_text(record)));
        }
    }
    io.info.set_role(SessionRole::Player, Some(record.id.to_string()), Some(record.playback_name.clone()));
    ctx.metrics.players_active.inc();
    ctx.viewers_changed.notify_one();
    tracing::info!(stream = %record.id, playback = %record.playback_name, "player started");

    let ended = watch_player(ctx, io, stream).await;

    let n = stream.remove_player(session);
    ctx.metrics.stream_players.with_label_values(&[&record.playback_name]).set(n as i64);
    ctx.metrics.players_active.dec();
    ctx.viewers_changed.notify_one();
    ended
}

/// The player's loop: serves its control input, follows publisher changes, ends on close.
async fn watch_player(ctx: &Arc<Context>, io: &mut Io, stream: &Arc<Stream>) -> Ended {
    let wait = ctx.settings.play_wait_timeout;
    let mut live = stream.watch_live();
    let mut offline_deadline = (!stream.is_live()).then(|| Instant::now() + wait);
    let mut shutdown = ctx.shutdown.clone();
    let outbox = io.outbox.clone();
    loop {
        tokio::select! {
            ev = io.next_event() => match ev {
                Ok(Event::PlayFinished) => return Ended::Closed("player stopped".into()),
                Ok(_) => {}
                Err(e) => return e,
            },
            reason = outbox.wait_closed() => {
                if reason == CloseReason::SlowPlayer {
                    ctx.metrics.slow_player_disconnects.inc();
                    tracing::info!("disconnecting slow player");
                }
                return Ended::Outbox(reason);
            }
            changed = live.changed() => {
                if changed.is_err() {
                    return Ended::Closed("stream ended".into());
                }
                let is_live = matches!(*live.borrow_and_update(), LiveState::Live { .. });
                offline_deadline = if is_live { None } else { Some(Instant::now() + wait) };
            }
            _ = sleep_until(offline_deadline.unwrap_or_else(far_future)), if offline_deadline.is_some() => {
                let bytes = io.conn.status(Level::Error, NOT_FOUND, "the stream is no longer live");
                return io.send(bytes).err().unwrap_or_else(|| Ended::Closed("stream not republished in time".into()));
            }
            _ = crate::shutdown::draining(&mut shutdown) => {
                let bytes = io.conn.status(Level::Status, "NetStream.Play.Stop", "edge is shutting down; reconnect to continue");
                return io.send(bytes).err().unwrap_or_else(|| Ended::Closed("edge is shutting down".into()));
            }
        }
    }
}

/// Resolves once the stream is live (the guard `wait_for` returns is dropped here, not held in
/// the caller's `select!`).
async fn wait_live(live: &mut tokio::sync::watch::Receiver<LiveState>) {
    if live.wait_for(|s| matches!(s, LiveState::Live { .. })).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(86_400)
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

fn refuse(ctx: &Context, io: &mut Io, reason: &str, code: &str, description: &str) -> Ended {
    ctx.metrics.play_rejections.with_label_values(&[reason]).inc();
    tracing::info!(reason, description, "play rejected");
    io.reject(code, description)
}
