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

use super::{context::Context, health::Health};
use crate::{observe::SessionSnapshot, streams::StreamSnapshot};

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) ctx: Arc<Context>,
    pub(crate) health: Arc<Health>,
    /// The bearer token `/api/*` requires, if one is configured (never logged).
    pub(crate) api_token: Option<Arc<str>>,
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
}

async fn streams(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refused) = refusal(&s, &headers) {
        return refused;
    }
    let streams = s.ctx.hub.list().iter().map(|st| st.snapshot()).collect();
    Json(StreamsResponse { edge: s.ctx.settings.edge_id.clone(), streams }).into_response()
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
