//! One accepted connection from its first byte to its end: the handshake and
//! connect-to-publish/play timeouts, then the role the peer asks for (publisher, player, or a
//! relay pull on the relay listener), and the goodbye flush. The session handle it drives is
//! [`crate::connection::session`]; the roles are [`crate::publish`], [`crate::play`] and
//! [`crate::relay`].

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    net::TcpStream,
    time::{Instant, sleep_until, timeout, timeout_at},
};
use tracing::Instrument;

use super::{context::Context, shutdown};
use crate::{
    connection::{
        Connection, Event,
        session::{Ended, Session},
    },
    fanout::{CloseReason, Outbox, Sink, TcpSink, run_writer},
    observe::SessionRole,
    play, publish, relay,
    transport::{reader::Reader, tls_stream},
};

/// How long the goodbye bytes (a final onStatus) may take once a session ends.
const FLUSH_ON_CLOSE: Duration = Duration::from_secs(2);

/// Which listener a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    /// `--rtmp-listen`: encoders and players.
    Public,
    /// `--relay-listen`: other edges pulling streams published here (play only, authenticated).
    Relay,
}

/// A connection ready for RTMP: a TCP socket, or one with a finished TLS handshake.
pub(crate) enum Accepted {
    Tcp(TcpStream),
    Tls(TcpStream, Box<rustls::ServerConnection>),
}

/// Serves one accepted RTMP connection to its end. `remote` is the client's address (the TCP
/// peer's, or the one a trusted PROXY protocol header gave); `transport` is what the session
/// table shows (`rtmp`, `rtmps`).
pub(crate) async fn serve_on(
    ctx: Arc<Context>,
    accepted: Accepted,
    remote: SocketAddr,
    listener: Listener,
    transport: &'static str,
) {
    let started = Instant::now();
    let (read, sink): (Reader, Arc<dyn Sink>) = match accepted {
        Accepted::Tcp(socket) => {
            // Low latency for every message (and no Nagle/delayed-ACK stall on the command exchange).
            let _ = socket.set_nodelay(true);
            let (read, write) = socket.into_split();
            (Reader::Tcp(read), Arc::new(TcpSink::new(write)))
        }
        Accepted::Tls(socket, conn) => {
            let _ = socket.set_nodelay(true);
            let (read, write) = tls_stream::split(socket, *conn);
            (Reader::Tls(read), Arc::new(write))
        }
    };
    let guard = ctx.sessions.open(remote, transport);
    let outbox = Outbox::new(ctx.settings.outbox);
    let _ = guard.info.outbox.set(outbox.clone());
    outbox.attach(sink, ctx.metrics.clone(), ctx.window.clone());
    let writer = tokio::spawn(run_writer(outbox.clone()));
    ctx.metrics.connections_active.inc();
    let conn = Connection::new(match listener {
        Listener::Public => ctx.settings.protocol.clone(),
        Listener::Relay => relay::serve::protocol_config(&ctx.settings.protocol),
    });
    let mut io = Session::new(read, conn, outbox.clone(), guard.info.clone(), ctx.metrics.clone(), remote);
    // `stream` is recorded by the role once it knows the stream (`Session::set_role`).
    let span = tracing::info_span!("conn", id = guard.info.id, %remote, stream = tracing::field::Empty);
    let ended = run_session(&ctx, &mut io, started, listener).instrument(span.clone()).await;
    span.in_scope(|| ended.record(&ctx.metrics));
    io.conn.close();
    outbox.close(CloseReason::Finished);
    let abort = writer.abort_handle();
    if timeout(FLUSH_ON_CLOSE, writer).await.is_err() {
        abort.abort();
        outbox.release_sink();
    }
    let role = guard.info.role();
    // Every admitted session's end, at info: how long viewers stay and why encoders drop is what
    // operators ask first. Connections that never took a role are logged (rate-limited) above.
    if role != SessionRole::Pending {
        let s = guard.info.snapshot();
        span.in_scope(|| {
            tracing::info!(
                role = role.as_str(),
                duration_s = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                bytes_received = s.bytes_received,
                bytes_sent = s.bytes_sent,
                reason = %ended.summary(),
                "session ended"
            )
        });
    }
    ctx.metrics.connections_active.dec();
    ctx.metrics.connection_duration.with_label_values(&[role.as_str()]).observe(started.elapsed().as_secs_f64());
}

async fn run_session(ctx: &Arc<Context>, io: &mut Session, started: Instant, listener: Listener) -> Ended {
    match timeout_at(started + ctx.settings.handshake_timeout, io.handshake()).await {
        Err(_) => {
            ctx.metrics.handshake_failures.inc();
            return Ended::Closed("no RTMP handshake before --handshake-timeout".into());
        }
        Ok(Err(Ended::Eof)) => {
            ctx.metrics.handshake_failures.inc();
            return Ended::Closed("connection closed during the RTMP handshake".into());
        }
        Ok(Err(e)) => return e,
        Ok(Ok(())) => {}
    }
    let deadline = started + ctx.settings.publish_timeout;
    let mut shutdown = ctx.shutdown.clone();
    loop {
        tokio::select! {
            ev = io.next_event() => match ev {
                Ok(Event::Connected { flash_ver, tc_url }) => io.info.set_client(flash_ver, tc_url),
                Ok(Event::PublishRequested { key }) => {
                    if listener == Listener::Relay {
                        drop(key);
                        return io.reject("NetStream.Publish.Denied", "the relay listener serves plays only");
                    }
                    // Boxed: each role's future is allocated only by connections that take it.
                    return Box::pin(publish::run(ctx, io, key, deadline)).await;
                }
                Ok(Event::PlayRequested { name, query, stream_id, duration }) => {
                    if listener == Listener::Relay {
                        return Box::pin(relay::serve::play(ctx, io, name, &query, stream_id)).await;
                    }
                    let request = play::Request { name, stream_id, duration, at: Instant::now() };
                    return Box::pin(play::run(ctx, io, request, deadline)).await;
                }
                Ok(_) => {}
                Err(e) => return e,
            },
            _ = sleep_until(deadline) => {
                return Ended::Closed("no publish or play before --publish-timeout".into());
            }
            _ = shutdown::draining(&mut shutdown) => return Ended::Closed("edge is shutting down".into()),
        }
    }
}
