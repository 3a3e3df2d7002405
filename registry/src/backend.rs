//! The registry contract: one trait, two backends (Redis for a fleet, memory for one node).
//! Both pass the same contract test suite (`registry/tests/contract.rs`).

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;

use crate::{
    error::Result,
    lease::{AcquireOptions, Lease, LiveStatus, PublisherInfo, RenewOutcome},
    record::{KeyHash, StreamId, StreamRecord},
};

/// Shared handle used by edges and the operator.
pub type SharedRegistry = Arc<dyn Registry>;

/// Changes a holder reports about its own lease; fenced by the lease token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HolderUpdate {
    /// `Some(true)`: no media for the idle threshold (a takeover under `ReplaceIdle` may now
    /// replace us); `Some(false)`: media flows again.
    pub idle: Option<bool>,
    pub ingest_kbps: Option<u64>,
}

#[async_trait]
pub trait Registry: Send + Sync + 'static {
    // ---- records: written by the operator -------------------------------------------------

    /// Inserts or replaces a stream record and its key and playback-name indexes, atomically.
    /// Fails with `Conflict` if another stream owns the key hash or the playback name.
    async fn put_stream(&self, record: &StreamRecord) -> Result<()>;

    /// Removes a record, its indexes and any lease on it. Returns whether a record existed.
    async fn delete_stream(&self, id: &StreamId) -> Result<bool>;

    async fn get_stream(&self, id: &StreamId) -> Result<Option<StreamRecord>>;

    async fn list_streams(&self) -> Result<Vec<StreamRecord>>;

    /// Drops the current lease on a stream, whoever holds it (disable, delete, key rotation).
    /// The holder notices at its next renew. Returns whether a lease existed.
    async fn revoke(&self, id: &StreamId) -> Result<bool>;

    // ---- admission: used by edges ----------------------------------------------------------

    /// Pre-flight check for a publish key: no state change. `NotFound` or `Disabled` otherwise.
    async fn lookup(&self, key: &KeyHash) -> Result<StreamRecord>;

    /// The stream players reach with `rtmp://HOST/live/<playback_name>`.
    async fn lookup_playback(&self, playback_name: &str) -> Result<StreamRecord>;

    /// Atomically: the key is registered and enabled AND no other publisher holds the lease
    /// (or the stream's takeover policy lets this one replace it). On success the caller is the
    /// only holder until the lease expires or is released.
    async fn acquire(&self, key: &KeyHash, who: &PublisherInfo, opts: &AcquireOptions) -> Result<Lease>;

    /// After the registry restarted and lost the lease, takes it back for the same holder if the
    /// stream is still free and the key still valid; allowed during the restart quarantine.
    /// Updates `lease` in place (new fence token and epoch).
    async fn reclaim(&self, lease: &mut Lease, ttl: Duration) -> Result<()>;

    /// Compare-and-renew: extends the lease by `ttl` only if `lease.token` still holds it.
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<RenewOutcome>;

    /// Compare-and-delete. Safe to call with a lease that was lost or already released: it never
    /// frees someone else's lease. Returns whether our lease was freed.
    async fn release(&self, lease: &Lease) -> Result<bool>;

    /// Holder-side live state (idle flag, ingest bitrate). `LeaseLost` if we no longer hold it.
    async fn update_holder(&self, lease: &Lease, update: HolderUpdate) -> Result<()>;

    /// This edge's viewer counts, replacing its previous report for these streams; each entry
    /// expires after `ttl` unless reported again, so a crashed edge's viewers vanish.
    async fn set_viewers(&self, edge: &str, counts: &[(StreamId, u32)], ttl: Duration) -> Result<()>;

    /// Current holder and viewers of a stream (operator status, cross-edge relay lookup).
    async fn live_status(&self, id: &StreamId) -> Result<LiveStatus>;

    /// Round trip to the backend: readiness probes use it.
    async fn ping(&self) -> Result<()>;

    /// Identifier of the backend's current data epoch: it changes when Redis restarts empty, so
    /// the operator knows to rewrite every record.
    async fn epoch(&self) -> Result<u64>;
}
