//! The public listeners (`--rtmp-listen`, `--rtmps-listen`) from accept to a connection ready
//! for RTMP: the PROXY protocol header when one is expected, the connection limits and the TLS
//! handshake, each bounded in time and counted when it fails, in the order that keeps an
//! anonymous peer cheapest:
//!
//! 1. A listener that expects a PROXY header refuses any peer outside `--proxy-trusted-cidrs`
//!    before reading a byte (a header from anyone else would let them choose their address).
//! 2. The total limit, then the per-address limit, are taken before any TLS work. The address
//!    is the TCP peer's; behind a trusted balancer it is the header's source, so the per-address
//!    limit waits for the header (at most `--proxy-header-timeout` and 1 KiB), which the
//!    balancer sends at once.
//! 3. The TLS handshake, at most `--tls-handshake-timeout`.

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
use crate::{
    observe::log_text::refusal_logged,
    transport::{
        ProxyMode, TrustedCidrs,
        proxy_header::{self, Proxied},
        tls,
    },
};

/// One public listener.
pub(super) struct Public {
    pub(super) transport: &'static str,
    pub(super) proxy: ProxyMode,
    pub(super) tls: Option<TlsAcceptor>,
}

/// What the public listeners share: their limits and the PROXY protocol's trust.
pub(super) struct PublicShared {
    pub(super) gate: Gate,
    pub(super) trusted: TrustedCidrs,
    pub(super) proxy_header_timeout: Duration,
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
    let proxied = listener.proxy != ProxyMode::Off;
    if proxied && !shared.trusted.contains(peer.ip()) {
        ctx.metrics.proxy_header_failures.with_label_values(&["untrusted"]).inc();
        if refusal_logged() {
            tracing::warn!(%peer, transport = listener.transport, "connection refused: PROXY protocol expected, and this peer is not in --proxy-trusted-cidrs");
        }
        return;
    }
    let Some(total) = shared.gate.enter_total(ctx, peer) else { return };
    // Without a balancer the peer is the client: its limit is taken before a byte is read.
    let early_ip_slot = if proxied {
        None
    } else {
        let Some(slot) = shared.gate.enter_ip(ctx, peer) else { return };
        Some(slot)
    };
    let tracked = tracker.try_enter(usize::MAX);
    // Small handshake messages both ways: no Nagle delay on them.
    let _ = socket.set_nodelay(true);
    let ctx = ctx.clone();
    let shared = shared.clone();
    let (transport, mode, acceptor) = (listener.transport, listener.proxy, listener.tls.clone());
    let span = tracing::info_span!("accept", %peer, transport);
    crate::workers::spawn_connection(socket, move |mut socket| {
        async move {
            let (client, ip_slot) = match early_ip_slot {
                Some(slot) => (peer, slot),
                None => {
                    let Some(client) = read_proxy_header(&ctx, &shared, &mut socket, peer, mode).await else { return };
                    let Some(slot) = shared.gate.enter_ip(&ctx, client) else { return };
                    (client, slot)
                }
            };
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
        .instrument(span)
    });
}

/// The client's address from the PROXY header, or `None` (counted and logged) when the header
/// is late, wrong or missing.
async fn read_proxy_header(
    ctx: &Context,
    shared: &PublicShared,
    socket: &mut TcpStream,
    peer: SocketAddr,
    mode: ProxyMode,
) -> Option<SocketAddr> {
    let failure = match timeout(shared.proxy_header_timeout, proxy_header::read(socket, mode)).await {
        Ok(Ok(Proxied::Client(client))) => return Some(client),
        Ok(Ok(Proxied::Local)) => return Some(peer),
        Ok(Err(e)) => (e.reason(), e.to_string()),
        Err(_) => ("timeout", "no complete PROXY protocol header before --proxy-header-timeout".to_string()),
    };
    ctx.metrics.proxy_header_failures.with_label_values(&[failure.0]).inc();
    if refusal_logged() {
        tracing::warn!(reason = failure.0, error = %failure.1, "connection refused: bad PROXY protocol header");
    }
    None
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
