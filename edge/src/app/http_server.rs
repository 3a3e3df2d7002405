//! The HTTP listener's accept loop: every connection is served by hyper with a header-read
//! timeout, closed when idle, and the number of connections is capped (beyond it a connection
//! is closed at accept, `connections_refused_total{reason="http_max_connections"}`). The cap
//! also bounds the file descriptors HTTP can hold, so idle or slow HTTP clients can never use
//! up the descriptors RTMP accepts with.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context as TaskContext, Poll},
    time::Duration,
};

use axum::Router;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    time::{Instant, sleep_until},
};

use crate::observe::Metrics;

/// The HTTP limits (`--http-header-read-timeout`, `--http-idle-timeout`,
/// `--http-max-connections`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpLimits {
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections: usize,
}

/// Serves `app` on `listener` until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, app: Router, limits: HttpLimits, metrics: Arc<Metrics>) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let started = Instant::now();
    loop {
        let (socket, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connections_refused.with_label_values(&["http_max_connections"]).inc();
            tracing::debug!(%remote, "http connection refused: --http-max-connections reached");
            continue;
        };
        let app = app.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            metrics.http_connections_active.inc();
            serve_connection(socket, app, limits, started).await;
            metrics.http_connections_active.dec();
            drop(slot);
        });
    }
}

async fn serve_connection(socket: TcpStream, app: Router, limits: HttpLimits, epoch: Instant) {
    let last_activity = Arc::new(AtomicU64::new(millis_since(epoch)));
    let io = Tracked { inner: socket, last_activity: last_activity.clone(), epoch };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    tokio::pin!(conn);
    loop {
        let last = Duration::from_millis(last_activity.load(Ordering::Relaxed));
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "http connection ended");
                }
                return;
            }
            _ = sleep_until(epoch + last + limits.idle_timeout) => {
                if Duration::from_millis(last_activity.load(Ordering::Relaxed)) == last {
                    tracing::debug!("http connection idle; closing");
                    return;
                }
            }
        }
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A socket that records when bytes last moved in either direction.
struct Tracked {
    inner: TcpStream,
    last_activity: Arc<AtomicU64>,
    epoch: Instant,
}

impl Tracked {
    fn touch(&self) {
        self.last_activity.store(millis_since(self.epoch), Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
