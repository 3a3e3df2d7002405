//! The public listeners (`--rtmp-listen`, `--rtmps-listen`) from accept to a connection ready
//! for RTMP: the connection limits, then the TLS handshake, bounded in time and counted when it
//! fails. The limits come first, so a peer over its per-address limit costs no TLS work.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{net::TcpStream, time::timeout};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use super::{
    context::Context,
    gate::Gate,
    serve::{Accepted, Listener, serve_on},
    shutdown::ConnTracker,
};
use crate::{observe::log_text::refusal_logged, transport::tls};

/// One public listener.
pub(super) struct Public {
    pub(super) transport: &'static str,
    pub(super) tls: Option<TlsAcceptor>,
}

/// What the public listeners share: their limits.
pub(super) struct PublicShared {
    pub(super) gate: Gate,
    pub(super) tls_handshake_timeout: Duration,
}

pub(super) fn admit(
    ctx: &Arc<Context>,
    tracker: &Arc<ConnTracker>,
    shared: &Arc<PublicShared>,
    listener: &Public,
    socket: TcpStream,
    peer: SocketAddr,
) {
    ctx.metrics.connections_accepted.with_label_values(&[listener.transport]).inc();
    // Before a byte is read: a peer over its limit costs no TLS work.
    let Some((total, ip_slot)) = shared.gate.enter(ctx, peer) else { return };
    let tracked = tracker.try_enter(usize::MAX);
    // Small handshake messages both ways: no Nagle delay on them.
    let _ = socket.set_nodelay(true);
    let ctx = ctx.clone();
    let shared = shared.clone();
    let (transport, acceptor) = (listener.transport, listener.tls.clone());
    let span = tracing::info_span!("accept", %peer, transport);
    tokio::spawn(
        async move {
            let client = peer;
            let accepted = match acceptor {
                None => Accepted::Tcp(socket),
                Some(acceptor) => match handshake(&ctx, &shared, &acceptor, socket, client).await {
                    Some(a) => a,
                    None => return,
                },
            };
            serve_on(ctx, accepted, client, Listener::Public, transport).await;
            drop(ip_slot);
            drop(total);
            drop(tracked);
        }
        .instrument(span),
    );
}

async fn handshake(
    ctx: &Context,
    shared: &PublicShared,
    acceptor: &TlsAcceptor,
    socket: TcpStream,
    client: SocketAddr,
) -> Option<Accepted> {
    let started = tokio::time::Instant::now();
    let reason = match timeout(shared.tls_handshake_timeout, acceptor.accept(socket)).await {
        Ok(Ok(stream)) => {
            ctx.metrics.tls_handshake_seconds.observe(started.elapsed().as_secs_f64());
            let (socket, conn) = stream.into_inner();
            return Some(Accepted::Tls(socket, Box::new(conn)));
        }
        Ok(Err(e)) => {
            let reason = tls::failure_reason(&e);
            if refusal_logged() {
                tracing::info!(%client, reason, error = %e, "TLS handshake failed");
            }
            reason
        }
        Err(_) => {
            if refusal_logged() {
                tracing::info!(%client, "TLS handshake not done before --tls-handshake-timeout");
            }
            "timeout"
        }
    };
    ctx.metrics.tls_handshake_failures.with_label_values(&[reason]).inc();
    None
}
