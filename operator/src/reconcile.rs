//! The reconcile core shared by the Kubernetes controller and `streamfleet-operator sync`: make
//! the registry hold exactly the record a LiveStream asks for (or none, when something blocks
//! it), revoke the current publisher when its key stopped being valid, and report what is live.
//!
//! It speaks only the [`Registry`] trait and takes its inputs as values (the record already
//! built from the Secret, and a rule for which conflicting records may be evicted), so both
//! callers run it unchanged and tests drive it with the memory backend.

use streamfleet_registry::{ConflictKind, OperatorRegistry, RegistryError, StreamId, StreamRecord};

use crate::{
    error::Result,
    status::{Observed, Problem},
};

/// What one apply changed in the registry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The record before this apply.
    pub previous: Option<StreamRecord>,
    /// The publish key differs from the one in the previous record.
    pub key_rotated: bool,
    /// The same publish key, hashed anew (the previous record had the legacy SHA-256, or the
    /// hash under another scheme): no revocation.
    pub rehashed: bool,
    /// A live publisher's lease was revoked (key rotated, stream disabled or blocked).
    pub revoked: bool,
    /// This stream's record was removed because something blocks it.
    pub removed: bool,
    /// Records of other streams evicted to free the playback name.
    pub evicted: Vec<StreamId>,
}

/// The outcome of [`apply_stream`]: what to put in status, and what changed.
#[derive(Clone, Debug, PartialEq)]
pub struct ApplyOutcome {
    pub observed: Observed,
    pub applied: Applied,
}

/// Makes the registry match one LiveStream.
///
/// `desired` is the record (built by `manifest::record_for` from the spec and the key) or the
/// problem that blocks the stream. A blocked stream's record is removed (its key can no longer
/// be proven valid), except for `InvalidSpec`, where the last good record is kept. `may_evict`
/// decides whether another stream's record holding our playback name may be removed; it is
/// asked only on a conflict. `same_key` says whether the previous record's hash was made from
/// the publish key `desired` was built from (`KeyHasher::matches`; `None`: cannot tell): a
/// record rewritten from the legacy SHA-256 to the keyed hash of the same key is a rehash, and
/// its publisher stays; anything else that changes the hash is a rotation, and revokes.
pub async fn apply_stream(
    registry: &dyn OperatorRegistry,
    id: &StreamId,
    desired: std::result::Result<StreamRecord, Problem>,
    same_key: &(dyn Fn(&StreamRecord) -> Option<bool> + Send + Sync),
    may_evict: &(dyn Fn(&StreamId) -> bool + Send + Sync),
) -> Result<ApplyOutcome> {
    let previous = registry.get_stream(id).await?;
    let mut applied = Applied { previous: previous.clone(), ..Applied::default() };
    let record = match desired {
        Ok(r) => r,
        Err(problem) => return blocked(registry, id, problem, applied).await,
    };

    // An unchanged record is not written again: at scale most reconciles come from live-state
    // signals (viewers, publishers) and would otherwise each rewrite the record and indexes.
    let mut attempt = if previous.as_ref() == Some(&record) { Ok(()) } else { registry.put_stream(&record).await };
    if let Err(RegistryError::Conflict { what: ConflictKind::PlaybackName(_), owner }) = &attempt
        && owner != id
        && may_evict(owner)
    {
        let owner = owner.clone();
        remove_record(registry, &owner).await?;
        tracing::info!(stream = %id, evicted = %owner, playback = %record.playback_name, "evicted a newer stream's record to free the playback name");
        applied.evicted.push(owner);
        attempt = registry.put_stream(&record).await;
    }
    match attempt {
        Ok(()) => {}
        Err(RegistryError::Conflict { what: ConflictKind::PlaybackName(name), owner }) => {
            let problem = Problem::PlaybackNameConflict { playback_name: name, owner: owner.to_string() };
            return blocked(registry, id, problem, applied).await;
        }
        Err(RegistryError::Conflict { what: ConflictKind::PublishKey(_), owner }) => {
            return blocked(registry, id, Problem::PublishKeyConflict { owner: owner.to_string() }, applied).await;
        }
        Err(RegistryError::Invalid(message)) => {
            let problem = Problem::InvalidSpec { field: "spec".into(), message };
            return blocked(registry, id, problem, applied).await;
        }
        Err(e) => return Err(e.into()),
    }

    let hash_changed = previous.as_ref().filter(|p| p.key_hash != record.key_hash || p.key_scheme != record.key_scheme);
    applied.rehashed = hash_changed.is_some_and(|p| same_key(p) == Some(true));
    applied.key_rotated = hash_changed.is_some() && !applied.rehashed;
    if applied.key_rotated {
        tracing::info!(stream = %id, key = %record.key_hash.short(), "publish key rotated");
    } else if applied.rehashed {
        tracing::info!(stream = %id, key = %record.key_hash.short(), scheme = %record.key_scheme, "record rewritten with the keyed hash of the same publish key; its publisher stays");
    }
    // A publisher admitted with the old key, or to a disabled stream, must go; revoking is
    // idempotent, so a disabled stream is revoked on every pass (a publisher admitted just
    // before the record changed cannot slip through).
    if applied.key_rotated || !record.enabled {
        applied.revoked = registry.revoke(id).await?;
    }
    let live = registry.live_status(id).await?;
    Ok(ApplyOutcome { observed: Observed::Registered { live }, applied })
}

async fn blocked(
    registry: &dyn OperatorRegistry,
    id: &StreamId,
    problem: Problem,
    mut applied: Applied,
) -> Result<ApplyOutcome> {
    if !matches!(problem, Problem::InvalidSpec { .. }) && applied.previous.is_some() {
        applied.revoked = registry.revoke(id).await?;
        applied.removed = registry.delete_stream(id).await?;
    }
    Ok(ApplyOutcome { observed: Observed::Blocked(problem), applied })
}

/// Removes a stream's record and any lease on it (deletion, eviction, pruning). Returns
/// whether a record existed.
pub async fn remove_record(registry: &dyn OperatorRegistry, id: &StreamId) -> Result<bool> {
    registry.revoke(id).await?;
    Ok(registry.delete_stream(id).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use streamfleet_registry::{
        AcquireOptions, EdgeRegistry, KeyHash, KeyHashSecret, KeyHasher, LeaseTiming, MemoryRegistry, PublisherInfo,
        RenewOutcome, TakeoverPolicy,
    };

    fn record(ns: &str, name: &str, key: &str, playback: &str) -> StreamRecord {
        StreamRecord {
            id: StreamId::new(ns, name),
            key_hash: KeyHash::of_key(key),
            key_scheme: streamfleet_registry::KeyScheme::Sha256,
            playback_name: playback.into(),
            enabled: true,
            max_viewers: None,
            takeover: TakeoverPolicy::ReplaceIdle,
            generation: 1,
            srt_passphrase: None,
        }
    }

    fn never(_: &StreamId) -> bool {
        false
    }

    /// A caller that cannot tell whether a previous record was made from the same key.
    fn unknown(_: &StreamRecord) -> Option<bool> {
        None
    }

    async fn publish(reg: &MemoryRegistry, key: &str) -> streamfleet_registry::Lease {
        let who = PublisherInfo { edge: "edge-a".into(), remote_addr: None, relay_addr: None, protocol: None };
        reg.acquire(&KeyHash::of_key(key), &who, &AcquireOptions::new(&LeaseTiming::default())).await.expect("admitted")
    }

    #[tokio::test]
    async fn writes_the_record_and_reports_live_state() {
        let reg = MemoryRegistry::new();
        let rec = record("media", "news", "k1", "news");
        let out = apply_stream(&reg, &rec.id, Ok(rec.clone()), &unknown, &never).await.expect("applied");
        assert_eq!(reg.get_stream(&rec.id).await.expect("get"), Some(rec.clone()));
        assert!(matches!(out.observed, Observed::Registered { ref live } if live.holder.is_none()));

        let lease = publish(&reg, "k1").await;
        let out = apply_stream(&reg, &rec.id, Ok(rec.clone()), &unknown, &never).await.expect("applied");
        assert!(!out.applied.revoked, "an unchanged key keeps its publisher");
        assert!(matches!(out.observed, Observed::Registered { ref live } if live.holder.is_some()));
        assert_eq!(reg.renew(&lease, Duration::from_secs(15)).await.expect("renew"), RenewOutcome::Renewed);
    }

    #[tokio::test]
    async fn key_rotation_and_disabling_revoke_the_publisher() {
        let reg = MemoryRegistry::new();
        let rec = record("media", "news", "k1", "news");
        apply_stream(&reg, &rec.id, Ok(rec.clone()), &unknown, &never).await.expect("applied");
        let lease = publish(&reg, "k1").await;

        let rotated = record("media", "news", "k2", "news");
        let out = apply_stream(&reg, &rec.id, Ok(rotated.clone()), &unknown, &never).await.expect("applied");
        assert!(out.applied.key_rotated && out.applied.revoked, "{:?}", out.applied);
        assert_ne!(reg.renew(&lease, Duration::from_secs(15)).await.expect("renew"), RenewOutcome::Renewed);
        assert!(reg.lookup(&KeyHash::of_key("k1")).await.is_err(), "the old key is gone");

        let lease = publish(&reg, "k2").await;
        let disabled = StreamRecord { enabled: false, ..rotated };
        let out = apply_stream(&reg, &rec.id, Ok(disabled), &unknown, &never).await.expect("applied");
        assert!(out.applied.revoked && !out.applied.key_rotated);
        assert_ne!(reg.renew(&lease, Duration::from_secs(15)).await.expect("renew"), RenewOutcome::Renewed);
    }

    #[tokio::test]
    async fn playback_conflicts_evict_only_when_allowed() {
        let reg = MemoryRegistry::new();
        let newer = record("b", "news", "kb", "news");
        apply_stream(&reg, &newer.id, Ok(newer.clone()), &unknown, &never).await.expect("applied");

        let older = record("a", "news", "ka", "news");
        let out = apply_stream(&reg, &older.id, Ok(older.clone()), &unknown, &never).await.expect("applied");
        assert!(
            matches!(out.observed, Observed::Blocked(Problem::PlaybackNameConflict { ref owner, .. }) if owner == "b/news")
        );
        assert_eq!(reg.get_stream(&older.id).await.expect("get"), None);

        let evict_b = |id: &StreamId| id == &StreamId::new("b", "news");
        let out = apply_stream(&reg, &older.id, Ok(older.clone()), &unknown, &evict_b).await.expect("applied");
        assert_eq!(out.applied.evicted, vec![newer.id.clone()]);
        assert!(matches!(out.observed, Observed::Registered { .. }));
        assert_eq!(reg.get_stream(&newer.id).await.expect("get"), None);
        assert_eq!(reg.lookup_playback("news").await.expect("owner").id, older.id);
    }

    #[tokio::test]
    async fn blocked_streams_leave_the_registry_except_for_invalid_specs() {
        let reg = MemoryRegistry::new();
        let rec = record("media", "news", "k1", "news");
        apply_stream(&reg, &rec.id, Ok(rec.clone()), &unknown, &never).await.expect("applied");

        let bad_spec = Problem::InvalidSpec { field: "spec.maxViewers".into(), message: "must be at least 1".into() };
        let out = apply_stream(&reg, &rec.id, Err(bad_spec), &unknown, &never).await.expect("applied");
        assert!(!out.applied.removed);
        assert!(reg.get_stream(&rec.id).await.expect("get").is_some(), "last good record kept");

        publish(&reg, "k1").await;
        let gone = Problem::SecretNotFound { secret: "news-key".into() };
        let out = apply_stream(&reg, &rec.id, Err(gone), &unknown, &never).await.expect("applied");
        assert!(out.applied.removed && out.applied.revoked);
        assert_eq!(reg.get_stream(&rec.id).await.expect("get"), None);
    }

    #[tokio::test]
    async fn shared_keys_are_a_conflict() {
        let reg = MemoryRegistry::new();
        let a = record("media", "a", "same", "a");
        let b = record("media", "b", "same", "b");
        apply_stream(&reg, &a.id.clone(), Ok(a), &unknown, &never).await.expect("applied");
        let out = apply_stream(&reg, &b.id, Ok(b.clone()), &unknown, &never).await.expect("applied");
        assert_eq!(out.observed, Observed::Blocked(Problem::PublishKeyConflict { owner: "media/a".into() }));
    }

    #[tokio::test]
    async fn a_rehash_of_the_same_key_keeps_the_publisher_and_a_rotation_does_not() {
        // A live publisher admitted on the legacy record; the operator now has a secret.
        let reg = MemoryRegistry::new();
        let legacy = record("media", "news", "k1", "news");
        apply_stream(&reg, &legacy.id, Ok(legacy.clone()), &unknown, &never).await.expect("applied");
        let lease = publish(&reg, "k1").await;
        let hasher = KeyHasher::new(Some(KeyHashSecret::new("reconcile-test-key-hash-secret").unwrap()));
        let keyed = |key: &str| {
            let k = hasher.record_hash(key);
            StreamRecord { key_hash: k.hash, key_scheme: k.scheme, ..legacy.clone() }
        };
        let digests = hasher.digests("k1");
        let same_key = |p: &StreamRecord| digests.matches(p.key_scheme, &p.key_hash);
        let out = apply_stream(&reg, &legacy.id, Ok(keyed("k1")), &same_key, &never).await.expect("applied");
        assert!(out.applied.rehashed && !out.applied.key_rotated && !out.applied.revoked, "{:?}", out.applied);
        assert_eq!(reg.renew(&lease, Duration::from_secs(15)).await.expect("renew"), RenewOutcome::Renewed);
        assert_eq!(reg.get_stream(&legacy.id).await.expect("get"), Some(keyed("k1")));
        // Applying it again changes nothing.
        let out = apply_stream(&reg, &legacy.id, Ok(keyed("k1")), &same_key, &never).await.expect("applied");
        assert!(!out.applied.rehashed && !out.applied.revoked);

        // A new key under the same secret is a rotation.
        let digests = hasher.digests("k2");
        let same_key = |p: &StreamRecord| digests.matches(p.key_scheme, &p.key_hash);
        let out = apply_stream(&reg, &legacy.id, Ok(keyed("k2")), &same_key, &never).await.expect("applied");
        assert!(out.applied.key_rotated && out.applied.revoked && !out.applied.rehashed, "{:?}", out.applied);
        assert_ne!(reg.renew(&lease, Duration::from_secs(15)).await.expect("renew"), RenewOutcome::Renewed);
    }

    #[tokio::test]
    async fn a_hash_the_operator_cannot_check_counts_as_a_rotation() {
        // The record was written under another secret (the secret changed): the key may have
        // changed too, so the publisher is revoked; it reconnects with its key at once.
        let reg = MemoryRegistry::new();
        let other = KeyHasher::new(Some(KeyHashSecret::new("the-previous-key-hash-secret").unwrap())).record_hash("k1");
        let rec =
            StreamRecord { key_hash: other.hash, key_scheme: other.scheme, ..record("media", "news", "k1", "news") };
        apply_stream(&reg, &rec.id, Ok(rec.clone()), &unknown, &never).await.expect("applied");
        let hasher = KeyHasher::new(Some(KeyHashSecret::new("reconcile-test-key-hash-secret").unwrap()));
        let k = hasher.record_hash("k1");
        let digests = hasher.digests("k1");
        let same_key = |p: &StreamRecord| digests.matches(p.key_scheme, &p.key_hash);
        let next = StreamRecord { key_hash: k.hash, key_scheme: k.scheme, ..rec.clone() };
        let out = apply_stream(&reg, &rec.id, Ok(next), &same_key, &never).await.expect("applied");
        assert!(out.applied.key_rotated && !out.applied.rehashed, "{:?}", out.applied);
    }
}
