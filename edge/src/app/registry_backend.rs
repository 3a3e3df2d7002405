//! Builds the registry the edge admits against: `--streams FILE` (in-memory, loaded from
//! LiveStream + Secret manifests) or `--redis-url` (the shared fleet registry).

use std::{path::Path, sync::Arc};

use streamfleet_registry::{
    KeyHasher, MemoryRegistry, OperatorRegistry, SharedEdgeRegistry,
    manifest::load_manifests,
    redis::{RedisConfig, RedisRegistry, redact_url},
};

use super::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot read --streams {path}: {source}")]
    ReadStreams { path: String, source: std::io::Error },
    #[error("--streams {path} has errors:\n{errors}")]
    BadManifests { path: String, errors: String },
    #[error("--streams {path}: {message}")]
    Load { path: String, message: String },
    #[error("cannot read --redis-password-file {path}: {source}")]
    ReadPassword { path: String, source: std::io::Error },
    #[error("Redis registry {url}: {message}")]
    Redis { url: String, message: String },
    #[error("give exactly one of --streams FILE or --redis-url URL")]
    NoRegistry,
}

pub(crate) async fn connect(config: &Config, hasher: &KeyHasher) -> Result<SharedEdgeRegistry, BackendError> {
    match (&config.streams, &config.redis_url) {
        (Some(path), None) => memory_from_file(path, hasher).await,
        (None, Some(url)) => {
            let mut cfg = RedisConfig::new(url.clone());
            if let Some(path) = &config.redis_password_file {
                let password = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|source| BackendError::ReadPassword { path: path.display().to_string(), source })?;
                cfg.password = Some(password.trim_end_matches(['\n', '\r']).to_string());
            }
            let registry = RedisRegistry::connect(cfg)
                .await
                .map_err(|e| BackendError::Redis { url: redact_url(url), message: e.to_string() })?;
            tracing::info!(url = %redact_url(url), "using the Redis registry");
            Ok(Arc::new(registry))
        }
        _ => Err(BackendError::NoRegistry),
    }
}

/// An in-memory registry holding the streams of a manifest file, keys hashed with `hasher`
/// (the one admission looks keys up with).
pub(crate) async fn memory_from_file(path: &Path, hasher: &KeyHasher) -> Result<SharedEdgeRegistry, BackendError> {
    let shown = path.display().to_string();
    // Read off the async workers (tokio::fs), like every file the edge reads.
    let yaml = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| BackendError::ReadStreams { path: shown.clone(), source })?;
    let records = load_manifests(&yaml, hasher).map_err(|errors| BackendError::BadManifests {
        path: shown.clone(),
        errors: errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"),
    })?;
    let registry = MemoryRegistry::new();
    for record in &records {
        registry
            .put_stream(record)
            .await
            .map_err(|e| BackendError::Load { path: shown.clone(), message: e.to_string() })?;
        tracing::info!(stream = %record.id, playback = %record.playback_name, key = %record.key_hash.short(),
            enabled = record.enabled, takeover = record.takeover.as_str(), "stream loaded");
    }
    if records.is_empty() {
        tracing::warn!(path = %shown, "no LiveStream in the manifest file: every publish will be rejected");
    }
    Ok(Arc::new(registry))
}
