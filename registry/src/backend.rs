//! The registry contract, split by who may call what: [`OperatorRegistry`] (records,
//! revocations, epoch) and [`EdgeRegistry`] (look-ups, leases, holder info, viewer counts), both
//! on [`RegistryStatus`] (live state, ping). The operator holds a [`SharedOperatorRegistry`]
//! and edges a [`SharedEdgeRegistry`], so the compiler enforces the "who owns what" table of
//! docs/architecture.md. Two backends implement both halves (Redis for a fleet, memory for one
//! node) and pass the same contract test suite (`registry/tests/contract.rs`).

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::{
    error::Result,
    lease::{AcquireOptions, Lease, LiveStatus, PublisherInfo, RenewOutcome},
    record::{KeyHash, StreamId, StreamRecord},
};

/// A whole backend (both halves): tests and fixtures that act as operator and edge at once.
pub type SharedRegistry = Arc<dyn Registry>;
/// The operator's handle.
pub type SharedOperatorRegistry = Arc<dyn OperatorRegistry>;
/// An edge's handle.
pub type SharedEdgeRegistry = Arc<dyn EdgeRegistry>;

/// Changes a holder reports about its own lease; fenced by the lease token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HolderUpdate {
    /// `Some(true)`: no media for the idle threshold (a takeover under `ReplaceIdle` may now
    /// replace us); `Some(false)`: media flows again.
    pub idle: Option<bool>,
    pub ingest_kbps: Option<u64>,
    /// What the encoder sends and whether it is healthy ([`HolderMedia`]).
    pub media: Option<crate::lease::HolderMedia>,
}

/// A signal from the registry's change feed ([`OperatorRegistry::changes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveChange {
    /// This stream's live state changed: a publisher admitted, reclaimed, released or revoked,
    /// idleness or the encoder's health verdict.
    Stream(StreamId),
    /// Only a viewer count of this stream changed: status shows it at the live-counter pace,
    /// so a reader may coalesce these.
    Viewers(StreamId),
    /// Signals may have been lost (the feed reconnected, or the reader fell behind): whoever
    /// depends on them should re-read everything.
    Resync,
}

/// What the operator uses: it owns the stream records and their revocations, and watches the
/// backend's epoch to rewrite every record after Redis restarted empty (the "Operator" row of
/// docs/architecture.md's "who owns what"). Edges never get this half.
#[async_trait]
pub trait OperatorRegistry: RegistryStatus {
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

    /// Identifier of the backend's current data epoch: it changes when Redis restarts empty, so
    /// the operator knows to rewrite every record.
    async fn epoch(&self) -> Result<u64>;

    /// The feed of live-state changes, so status can follow a stream without polling it. Best
    /// effort: a lease that simply expires (a crashed edge) is not signalled, and signals sent
    /// while the feed reconnects are lost ([`LiveChange::Resync`] follows), so callers keep a
    /// slower poll as a safety net. Runs until dropped. A backend without a feed never yields.
    fn changes(&self) -> BoxStream<'static, LiveChange> {
        Box::pin(futures::stream::pending())
    }
}

/// What an edge uses: it reads records (by key hash to publish, by playback name to play) and
/// owns its leases, its holder info and its viewer counts (the "Edge" row of
/// docs/architecture.md's "who owns what"). The operator never gets this half.
#[async_trait]
pub trait EdgeRegistry: RegistryStatus {
    /// Pre-flight check for a publish key: no state change. `NotFound` or `Disabled` otherwise.
    async fn lookup(&self, key: &KeyHash) -> Result<StreamRecord>;

    /// The stream players reach with `rtmp://HOST/live/<playback_name>`.
    async fn lookup_playback(&self, playback_name: &str) -> Result<StreamRecord>;

    /// Every stream record, sorted by id (an edge's streams API lists configured streams that
    /// are not live on it too). Read-only; the same data the operator lists.
    async fn stream_records(&self) -> Result<Vec<StreamRecord>>;

    /// Atomically: the key is registered and enabled AND no other publisher holds the lease
    /// (or the stream's takeover policy lets this one replace it). On success the caller is the
    /// only holder until the lease expires or is released. A fresh token per call: an edge
    /// admitting a publisher uses [`acquire_as`](Self::acquire_as) instead.
    async fn acquire(&self, key: &KeyHash, who: &PublisherInfo, opts: &AcquireOptions) -> Result<Lease> {
        self.acquire_as(key, who, opts, &crate::new_lease_token()).await
    }

    /// [`acquire`](Self::acquire) with a token the caller chose ([`crate::new_lease_token`]),
    /// one per admission. An admission whose ask timed out cannot know whether the grant was
    /// made (the script may have run and only its reply been late), so it asks again with the
    /// same token: a lease this token already holds is then granted again as it stands ("already
    /// mine", its TTL extended) instead of refused as held by this very edge.
    async fn acquire_as(&self, key: &KeyHash, who: &PublisherInfo, opts: &AcquireOptions, token: &str)
    -> Result<Lease>;

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

    /// `maxViewers` admission, atomic across every edge: drops the stream's expired slots and,
    /// if fewer than `max` remain, gives `player` (unique per player: edge id, process token,
    /// session) a slot that expires after `ttl` unless renewed. `Ok(false)`: the stream is full.
    /// A player that already holds a slot has it refreshed (a retry after a late reply is safe).
    async fn reserve_viewer(&self, id: &StreamId, player: &str, max: u32, ttl: Duration) -> Result<bool>;

    /// Frees a player's slot (it left). Returns whether it held one.
    async fn release_viewer(&self, id: &StreamId, player: &str) -> Result<bool>;

    /// Extends these players' slots by `ttl` (an edge's periodic renewal). A slot already
    /// released or expired is not brought back.
    async fn renew_viewers(&self, players: &[(StreamId, String)], ttl: Duration) -> Result<()>;
}

/// What both sides read: the live state of a stream and whether the backend answers.
#[async_trait]
pub trait RegistryStatus: Send + Sync + 'static {
    /// Current holder and viewers of a stream (operator status, maxViewers on edges, the
    /// cross-edge relay's owner lookup).
    async fn live_status(&self, id: &StreamId) -> Result<LiveStatus>;

    /// Round trip to the backend: readiness probes use it.
    async fn ping(&self) -> Result<()>;
}

/// A whole backend, both halves: what the backends implement, what the contract tests and
/// test fixtures (which play both an operator and edges) use.
pub trait Registry: OperatorRegistry + EdgeRegistry {}

impl<T: OperatorRegistry + EdgeRegistry + ?Sized> Registry for T {}
