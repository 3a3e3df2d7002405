//! The internal relay listener (`--relay-listen`): other edges pull streams published on this
//! edge from it. It is a separate socket the public Service does not expose, and every play on
//! it must carry a valid token (see [`super::auth`]); a wrong or missing token gets
//! `NetStream.Play.Failed` and a closed connection. It serves plays only, and only of streams
//! an encoder publishes on this edge (a relayed stream is never relayed again, so there are no
//! chains or loops). A relay pull is served like a player (fast start, slow-player rules) but
//! is not a viewer: `maxViewers` and the viewer counts leave it out, the pulling edge counts
//! its own players. When the local publisher goes away the pull is ended with
//! `NetStream.Play.Stop`, so the pulling edge looks up the new owner at once.

use std::{net::SocketAddr, sync::Arc};

use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use crate::{
    connection::{
        driver::{Ended, Io, Listener, serve_on},
        protocol::{Event, ProtocolConfig},
    },
    context::Context,
    fanout::CloseReason,
    rtmp::messages::Level,
    sessions::SessionRole,
    shutdown::ConnTracker,
    stream::LiveState,
};

const FAILED: &str = "NetStream.Play.Failed";
const NOT_FOUND: &str = "NetStream.Play.StreamNotFound";

/// The relay connection's protocol settings: the public ones, serving the relay app only.
pub fn protocol_config(public: &ProtocolConfig) -> ProtocolConfig {
    ProtocolConfig { app: super::APP.into(), ..public.clone() }
}

/// Accepts relay connections until the listener task is aborted (at drain). Relay connections
/// count towards `--max-connections` and are waited for by the drain like any other.
pub async fn accept_loop(ctx: Arc<Context>, listener: TcpListener, tracker: Arc<ConnTracker>) {
    loop {
        match listener.accept().await {
            Ok((socket, remote)) => admit(&ctx, &tracker, socket, remote),
            Err(e) => {
                tracing::warn!(error = %e, "relay accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

fn admit(ctx: &Arc<Context>, tracker: &Arc<ConnTracker>, socket: TcpStream, remote: SocketAddr) {
    if tracker.active() >= ctx.settings.max_connections || ctx.is_draining() {
        ctx.metrics.connections_refused.with_label_values(&["max_connections"]).inc();
        return;
    }
    let tracked = tracker.enter();
    let ctx = ctx.clone();
    let span = tracing::info_span!("relay", %remote);
    tokio::spawn(
        async move {
            serve_on(ctx, socket, remote, Listener::Relay).await;
            drop(tracked);
        }
        .instrument(span),
    );
}

/// A play request on the relay listener: authenticate, then serve the local publisher's
/// stream to the pulling edge until either side ends.
pub async fn play(ctx: &Arc<Context>, io: &mut Io, name: String, query: &str, stream_id: u32) -> Ended {
    let Some(relay) = ctx.relay.get() else { return io.reject(FAILED, "relay is disabled on this edge") };
    if !relay.secret.verify(&name, query) {
        ctx.metrics.relay_auth_failures.inc();
        tracing::warn!(playback = %name, "relay play refused: missing or wrong authentication");
        return io.reject(FAILED, "relay authentication failed");
    }
    let not_here = "the stream is not published on this edge";
    let Some(stream) = ctx.hub.live_record(&name).and_then(|r| ctx.hub.get(&r.id)) else {
        return io.reject(NOT_FOUND, not_here);
    };
    if !stream.has_local_publisher() {
        ctx.hub.release(stream);
        tracing::info!(playback = %name, "relay play refused: not published on this edge");
        return io.reject(NOT_FOUND, not_here);
    }
    let ended = serve(ctx, io, &stream, stream_id).await;
    ctx.hub.release(stream);
    ended
}

async fn serve(ctx: &Arc<Context>, io: &mut Io, stream: &Arc<crate::stream::Stream>, stream_id: u32) -> Ended {
    if let Err(e) = io.conn.accept().map_err(Ended::Protocol).and_then(|outs| io.apply(outs)) {
        return e;
    }
    io.outbox.set_stream_id(stream_id);
    let session = io.info.id;
    stream.add_relay_player(session, io.outbox.clone(), ctx.settings.outbox.max_bytes);
    io.info.set_role(SessionRole::Player, Some(stream.id.to_string()), Some(stream.playback.clone()));
    ctx.metrics.relay_served_active.inc();
    tracing::info!(stream = %stream.id, playback = %stream.playback, "relay pull served");
    let ended = watch(ctx, io, stream).await;
    stream.remove_player(session);
    ctx.metrics.relay_served_active.dec();
    ended
}

async fn watch(ctx: &Arc<Context>, io: &mut Io, stream: &Arc<crate::stream::Stream>) -> Ended {
    let mut live = stream.watch_live();
    let mut shutdown = ctx.shutdown.clone();
    let outbox = io.outbox.clone();
    loop {
        tokio::select! {
            ev = io.next_event() => match ev {
                Ok(Event::PlayFinished) => return Ended::Closed("relay pull stopped".into()),
                Ok(_) => {}
                Err(e) => return e,
            },
            reason = outbox.wait_closed() => {
                if reason == CloseReason::SlowPlayer {
                    ctx.metrics.slow_player_disconnects.inc();
                }
                return Ended::Outbox(reason);
            }
            changed = live.changed() => {
                let offline = changed.is_err() || matches!(*live.borrow_and_update(), LiveState::Offline);
                // A takeover by another local publisher keeps the pull; anything else ends it so
                // the pulling edge follows the publisher to its next edge.
                if offline || !stream.has_local_publisher() {
                    let bytes = io.conn.status(Level::Status, "NetStream.Play.Stop", "the publisher left this edge");
                    return io.send(bytes).err().unwrap_or_else(|| Ended::Closed("publisher left; relay pull ended".into()));
                }
            }
            _ = crate::shutdown::draining(&mut shutdown) => {
                let bytes = io.conn.status(Level::Status, "NetStream.Play.Stop", "edge is shutting down");
                return io.send(bytes).err().unwrap_or_else(|| Ended::Closed("edge is shutting down".into()));
            }
        }
    }
}
