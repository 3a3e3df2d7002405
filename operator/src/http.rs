//! The operator's HTTP endpoints: `/metrics` (Prometheus text), `/healthz` (the process
//! serves) and `/readyz` (the registry answers; 503 otherwise). Served by every replica, leader
//! or not.

use std::{future::Future, sync::Arc, time::Duration};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use streamfleet_registry::SharedOperatorRegistry;

use crate::metrics::Metrics;

/// How long `/readyz` waits for the registry before calling it unreachable.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    /// `None` when there is nothing to probe (readiness is then just liveness).
    pub registry: Option<SharedOperatorRegistry>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], s.metrics.render())
}

async fn readyz(State(s): State<HttpState>) -> (StatusCode, String) {
    let Some(reg) = s.registry else { return (StatusCode::OK, "ok\n".into()) };
    match tokio::time::timeout(READY_TIMEOUT, reg.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ok\n".into()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("registry unavailable: {e}\n")),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "registry did not answer within 1s\n".into()),
    }
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamfleet_registry::MemoryRegistry;

    async fn get_text(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        let code = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (code, out)
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics = Metrics::new();
        metrics.is_leader.set(1);
        let state = HttpState { metrics, registry: Some(Arc::new(MemoryRegistry::new())) };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, state, async {
            let _ = rx.await;
        }));
        let run = async {
            let (code, body) = get_text(addr, "/metrics").await;
            assert_eq!(code, 200);
            assert!(body.contains("streamfleet_operator_is_leader 1"), "{body}");
            assert_eq!(get_text(addr, "/healthz").await.0, 200);
            assert_eq!(get_text(addr, "/readyz").await.0, 200);
            assert_eq!(get_text(addr, "/nope").await.0, 404);
        };
        tokio::time::timeout(Duration::from_secs(10), run).await.expect("in time");
        let _ = tx.send(());
        tokio::time::timeout(Duration::from_secs(5), server).await.expect("stops").expect("joined").expect("served");
    }
}
