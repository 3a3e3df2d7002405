//! The edge's HTTP endpoints: `/metrics` (Prometheus text), `/healthz` (the process serves),
//! `/readyz` (503 while the registry is unreachable or the edge drains), `/api/v1/streams` and
//! `/api/v1/sessions` (JSON). With an API token configured (`--api-token-file`,
//! `STREAMFLEET_API_TOKEN`) every `/api/*` request must carry `Authorization: Bearer <token>`;
//! the probes and `/metrics` never do.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Serialize;

use std::collections::HashSet;

use streamfleet_registry::{RegistryError, SharedEdgeRegistry, StreamRecord};

use super::{context::Context, health::Health};
use crate::{observe::SessionSnapshot, streams::StreamSnapshot};

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) ctx: Arc<Context>,
    pub(crate) health: Arc<Health>,
    /// The bearer token `/api/*` requires, if one is configured (never logged).
    pub(crate) api_token: Option<Arc<str>>,
    pub(crate) configured: Arc<ConfiguredStreams>,
}

/// The registry's stream records, read at most every [`ConfiguredStreams::FRESH_FOR`]: a
/// dashboard polling the API of every edge must not turn into a full registry scan per request.
#[derive(Default)]
pub(crate) struct ConfiguredStreams {
    cached: tokio::sync::Mutex<Option<(tokio::time::Instant, Arc<Vec<StreamRecord>>)>>,
}

impl ConfiguredStreams {
    const FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(5);

    async fn get(&self, registry: &SharedEdgeRegistry) -> Result<Arc<Vec<StreamRecord>>, RegistryError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, records)) = cached.as_ref()
            && at.elapsed() < Self::FRESH_FOR
        {
            return Ok(records.clone());
        }
        let records = Arc::new(registry.stream_records().await?);
        *cached = Some((tokio::time::Instant::now(), records.clone()));
        Ok(records)
    }
}

/// The 401 to answer with, unless the request carries the configured bearer token (or none is
/// configured).
fn refusal(s: &AppState, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = &s.api_token else { return None };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if constant_time_eq(presented.trim().as_bytes(), token.as_bytes()) {
        return None;
    }
    s.ctx.metrics.api_auth_failures.inc();
    Some(
        (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "a bearer token is required for /api/*\n")
            .into_response(),
    )
}

/// Compares without an early exit on the first differing byte (the length is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/streams", get(streams))
        .route("/api/v1/sessions", get(sessions))
        .with_state(state)
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let gop = s.ctx.hub.gop_budget();
    s.ctx.metrics.observe_gop_caches(gop.used(), gop.max(), gop.refusals());
    s.ctx.metrics.observe_workers(&crate::workers::loads());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.ctx.metrics.render())
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.ctx.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else if !s.health.registry_up() {
        (StatusCode::SERVICE_UNAVAILABLE, "registry unreachable\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

#[derive(Serialize)]
struct StreamsResponse {
    edge: String,
    streams: Vec<StreamSnapshot>,
    /// Why configured streams that are idle here are missing from the list (the registry did not
    /// answer); absent when the list is complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    incomplete: Option<String>,
}

/// The streams on this edge, then every other configured stream as `idle` (or `disabled`): an
/// empty list would read as "nothing configured" to someone setting up their first stream.
async fn streams(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refused) = refusal(&s, &headers) {
        return refused;
    }
    let mut streams: Vec<StreamSnapshot> = s.ctx.hub.list().iter().map(|st| st.snapshot()).collect();
    let incomplete = match s.configured.get(&s.ctx.registry).await {
        Ok(records) => {
            let here: HashSet<String> = streams.iter().map(|st| st.stream.clone()).collect();
            streams
                .extend(records.iter().filter(|r| !here.contains(&r.id.to_string())).map(StreamSnapshot::configured));
            None
        }
        Err(e) => Some(format!("configured streams not listed: {e}")),
    };
    Json(StreamsResponse { edge: s.ctx.settings.edge_id.clone(), streams, incomplete }).into_response()
}

#[derive(Serialize)]
struct SessionsResponse {
    edge: String,
    sessions: Vec<SessionSnapshot>,
}

async fn sessions(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refused) = refusal(&s, &headers) {
        return refused;
    }
    Json(SessionsResponse { edge: s.ctx.settings.edge_id.clone(), sessions: s.ctx.sessions.snapshot() }).into_response()
}
