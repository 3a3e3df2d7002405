//! Registry errors as values: each distinct outcome an edge or the operator must handle
//! differently gets its own variant.

use std::{sync::Arc, time::Duration};

use crate::{
    lease::HolderInfo,
    record::{KeyHash, StreamId},
};

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// No stream has this publish key (or playback name).
    #[error("no stream is registered for {what}")]
    NotFound { what: String },

    /// The stream exists but `spec.enabled` is false.
    #[error("stream {stream} is disabled")]
    Disabled { stream: StreamId },

    /// Another publisher holds the stream's lease somewhere in the cluster.
    /// `retry_in` is set when waiting may help (the takeover policy could admit this publisher
    /// once the holder has been idle long enough, or once the takeover cooldown has passed).
    #[error("stream {stream} is already being published on edge {} (since {} ms)", holder.edge, holder.since_ms)]
    AlreadyActive { stream: StreamId, holder: HolderInfo, retry_in: Option<Duration> },

    /// The lease was taken over, revoked, or expired: the holder must stop publishing now.
    #[error("lease for stream {stream} lost: {reason}")]
    LeaseLost { stream: StreamId, reason: LossReason },

    /// A record claims a playback name or key that another stream already owns.
    #[error("{what} is already used by stream {owner}")]
    Conflict { what: ConflictKind, owner: StreamId },

    /// The registry refused a new grant for a while after a restart that lost its state, so
    /// fencing tokens and leases from before the restart cannot be duplicated.
    #[error("registry restarted recently; new publishers are admitted again in {} ms", retry_in.as_millis())]
    Quarantined { retry_in: Duration },

    /// Redis is unreachable, timed out or answered with an error; the cause is kept as the
    /// error's source.
    #[error("registry unavailable: {0}")]
    Unavailable(#[source] Unavailable),

    /// The registry was written by an incompatible Streamfleet version.
    #[error(
        "registry schema version {found} is not the {expected} this build speaks; upgrade the operator and edges together"
    )]
    SchemaMismatch { found: String, expected: String },

    /// A record or argument is not acceptable (e.g. an invalid playback name).
    #[error("invalid: {0}")]
    Invalid(String),
}

/// What a `Conflict` is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConflictKind {
    PlaybackName(String),
    PublishKey(KeyHash),
}

impl std::fmt::Display for ConflictKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConflictKind::PlaybackName(n) => write!(f, "playback name {n:?}"),
            ConflictKind::PublishKey(h) => write!(f, "publish key {}…", h.short()),
        }
    }
}

/// Why a holder lost its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// Another holder has the lease (takeover, or ours expired and someone acquired).
    Stolen,
    /// The operator revoked it: stream deleted, disabled, or its key rotated.
    Revoked,
    /// No renew succeeded before the local deadline (Redis unreachable or too slow).
    Expired,
}

impl std::fmt::Display for LossReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl LossReason {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            LossReason::Stolen => "stolen",
            LossReason::Revoked => "revoked",
            LossReason::Expired => "expired",
        }
    }
}

impl RegistryError {
    /// Short label for metrics and RTMP status descriptions.
    pub fn label(&self) -> &'static str {
        match self {
            RegistryError::NotFound { .. } => "not_found",
            RegistryError::Disabled { .. } => "disabled",
            RegistryError::AlreadyActive { .. } => "already_active",
            RegistryError::LeaseLost { .. } => "lease_lost",
            RegistryError::Conflict { .. } => "conflict",
            RegistryError::Quarantined { .. } => "quarantined",
            RegistryError::Unavailable(_) => "unavailable",
            RegistryError::SchemaMismatch { .. } => "schema_mismatch",
            RegistryError::Invalid(_) => "invalid",
        }
    }

    /// Transient errors are worth retrying; the others will not change by themselves.
    pub fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Unavailable(_) | RegistryError::Quarantined { .. })
    }
}

impl From<redis::RedisError> for RegistryError {
    fn from(e: redis::RedisError) -> Self {
        RegistryError::Unavailable(Unavailable::caused_by(e.to_string(), e))
    }
}

/// Why the registry could not be used: what failed, and the underlying error when there is one
/// (a Redis or I/O error), available as the error's [`source`](std::error::Error::source).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Unavailable {
    message: String,
    #[source]
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Unavailable {
    /// `message` says what failed; nothing underneath (a timeout, an unexpected reply).
    pub fn new(message: impl Into<String>) -> Unavailable {
        Unavailable { message: message.into(), source: None }
    }

    /// `message` says what failed, `source` why.
    pub fn caused_by(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Unavailable {
        Unavailable { message: message.into(), source: Some(Arc::new(source)) }
    }
}

impl From<String> for Unavailable {
    fn from(message: String) -> Unavailable {
        Unavailable::new(message)
    }
}

impl From<&str> for Unavailable {
    fn from(message: &str) -> Unavailable {
        Unavailable::new(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_keeps_its_cause_as_the_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = RegistryError::Unavailable(Unavailable::caused_by("connect to redis:6379", io));
        assert_eq!(e.to_string(), "registry unavailable: connect to redis:6379");
        let cause = std::error::Error::source(&e).and_then(std::error::Error::source).expect("the I/O error");
        assert_eq!(cause.to_string(), "connection refused");
        assert!(std::error::Error::source(&RegistryError::Unavailable("timed out".into())).unwrap().source().is_none());
    }
}
