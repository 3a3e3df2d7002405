//! The edge's HTTP endpoints: `/metrics` (Prometheus text), `/healthz` (the process serves),
//! `/readyz` (503 while the registry is unreachable or the edge drains), `/api/v1/streams` and
//! `/api/v1/sessions` (JSON).

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use serde::Serialize;

use super::{context::Context, health::Health};
use crate::{observe::SessionSnapshot, streams::StreamSnapshot};

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) ctx: Arc<Context>,
    pub(crate) health: Arc<Health>,
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

async fn streams(State(s): State<AppState>) -> Json<StreamsResponse> {
    let streams = s.ctx.hub.list().iter().map(|st| st.snapshot()).collect();
    Json(StreamsResponse { edge: s.ctx.settings.edge_id.clone(), streams })
}

#[derive(Serialize)]
struct SessionsResponse {
    edge: String,
    sessions: Vec<SessionSnapshot>,
}

async fn sessions(State(s): State<AppState>) -> Json<SessionsResponse> {
    Json(SessionsResponse { edge: s.ctx.settings.edge_id.clone(), sessions: s.ctx.sessions.snapshot() })
}
