//! The registry: the contract between the Streamfleet operator and its edges.
//!
//! Layout:
//! - [`api`]: the `LiveStream` custom resource types (the single source of the CRD).
//! - [`record`]: stream records (what the operator writes, what edges look up).
//! - [`key_hash`]: how a publish key becomes a record's hash (keyed, or legacy SHA-256).
//! - [`manifest`]: LiveStream + Secret YAML into records (edge `--streams`, operator `sync`).
//! - [`backend`]: the contract, split by side: [`OperatorRegistry`] and [`EdgeRegistry`] on
//!   [`RegistryStatus`]; every backend implements both ([`Registry`]).
//! - [`memory`]: the in-memory backend (one node, the quick start).
//! - [`redis`]: the Redis backend (a fleet): key schema and Lua scripts in `redis/scripts`.
//! - [`lease`]: lease value types and timing; [`lease_keeper`]: where a lease is renewed.
//! - [`takeover`]: the pure decision whether a new publisher may replace the live one.
//!
//! Invariant: at most one publisher per stream holds a lease at any time, cluster-wide, and a
//! holder that can no longer prove its lease stops before anyone else can be admitted.

pub mod api;
pub mod backend;
pub mod error;
pub mod key_hash;
pub mod lease;
pub mod lease_keeper;
pub mod manifest;
pub mod memory;
pub mod record;
pub mod redis;
pub mod takeover;

pub use backend::{
    EdgeRegistry, HolderUpdate, LiveChange, OperatorRegistry, Registry, RegistryStatus, SharedEdgeRegistry,
    SharedOperatorRegistry, SharedRegistry,
};
pub use error::{ConflictKind, LossReason, RegistryError, Result, Unavailable};
pub use key_hash::{KeyCandidate, KeyDigests, KeyHashSecret, KeyHasher, KeyScheme, SecretId};
pub use lease::{
    AcquireOptions, HolderInfo, HolderMedia, IngestProtocol, Lease, LeaseTiming, LiveStatus, PublisherInfo,
    RenewOutcome, new_lease_token,
};
pub use lease_keeper::{KeeperEvent, LeaseKeeper};
pub use memory::MemoryRegistry;
pub use record::{KeyHash, SrtPassphrase, StreamId, StreamRecord, TakeoverPolicy};
