//! The internal relay listener (`--relay-listen`): other edges pull streams published on this
//! edge from it. It is a separate socket the public Service does not expose, and every play on
//! it must carry a valid token (see [`super::auth`]); a wrong or missing token gets
//! `NetStream.Play.Failed` and a closed connection. It serves plays only, and only of streams
//! an encoder publishes on this edge (a relayed stream is never relayed again, so there are no
//! chains or loops). A relay pull is served like a player (fast start, slow-player rules) but
//! is not a viewer: `maxViewers` and the viewer counts leave it out, the pulling edge counts
//! its own players. When the local publisher goes away the pull is ended with
//! `NetStream.Play.Stop`, so the pulling edge looks up the new owner at once.

use std::sync::Arc;

use crate::{
    app::context::Context,
    connection::{
        ProtocolConfig,
        session::{Ended, Session},
    },
    observe::{
        SessionRole,
        log_text::{refusal_logged, shown},
    },
    play::player::{self, NOT_FOUND, Watcher},
    streams::Stream,
};

const FAILED: &str = "NetStream.Play.Failed";

/// The relay connection's protocol settings: the public ones, serving the relay app only.
pub(crate) fn protocol_config(public: &ProtocolConfig) -> ProtocolConfig {
    ProtocolConfig { app: super::APP.into(), ..public.clone() }
}

/// A play request on the relay listener: authenticate, then serve the local publisher's
/// stream to the pulling edge until either side ends.
pub(crate) async fn play(ctx: &Arc<Context>, io: &mut Session, name: String, query: &str, stream_id: u32) -> Ended {
    let Some(relay) = ctx.relay.get() else { return io.reject(FAILED, "relay is disabled on this edge") };
    if !relay.secret.verify(&name, query) {
        ctx.metrics.relay_auth_failures.inc();
        if refusal_logged() {
            tracing::warn!(playback = %shown(&name), "relay play refused: missing or wrong authentication");
        }
        return io.reject(FAILED, "relay authentication failed");
    }
    let not_here = "the stream is not published on this edge";
    let Some(stream) = ctx.hub.live_record(&name).and_then(|r| ctx.hub.hold(&r.id)) else {
        return io.reject(NOT_FOUND, not_here);
    };
    if !stream.has_local_publisher() {
        ctx.hub.release(stream);
        if refusal_logged() {
            tracing::info!(playback = %shown(&name), "relay play refused: not published on this edge");
        }
        return io.reject(NOT_FOUND, not_here);
    }
    let ended = serve(ctx, io, &stream, stream_id).await;
    ctx.hub.release(stream);
    ended
}

async fn serve(ctx: &Arc<Context>, io: &mut Session, stream: &Arc<Stream>, stream_id: u32) -> Ended {
    if let Err(e) = io.accept() {
        return e;
    }
    io.outbox.set_stream_id(stream_id);
    let session = io.info.id;
    stream.add_relay_player(session, io.outbox.clone(), ctx.settings.outbox.max_bytes);
    io.set_role(SessionRole::Player, stream.id.to_string(), stream.playback.clone());
    ctx.metrics.relay_served_active.inc();
    tracing::info!(stream = %stream.id, playback = %stream.playback, "relay pull served");
    let ended = player::watch(ctx, io, stream, Watcher::RelayPull, None).await;
    stream.remove_player(session);
    ctx.metrics.relay_served_active.dec();
    ended
}
