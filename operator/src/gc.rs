//! Garbage collection of orphaned registry records: records whose LiveStream no longer exists
//! (deleted while the operator was down, or with its finalizer removed by hand). Runs once the
//! LiveStream cache is complete, then periodically.

use std::{collections::HashSet, time::Duration};

use streamfleet_registry::{OperatorRegistry, StreamId, StreamRecord};

use crate::{
    error::Result,
    reconcile::remove_record,
    scope::{Scope, Streams},
};

/// Records of `scope` without a LiveStream. A record outside the scope is never an orphan: a
/// namespace-scoped operator cannot see those LiveStreams, and another operator may own them.
pub fn orphans(records: &[StreamRecord], existing: &HashSet<StreamId>, scope: &Scope) -> Vec<StreamId> {
    records.iter().filter(|r| scope.owns(&r.id) && !existing.contains(&r.id)).map(|r| r.id.clone()).collect()
}

/// Removes orphaned records and returns their ids. The registry is listed *before* the
/// LiveStreams are snapshotted: a record written after the listing is not considered, and every
/// record in the listing was written for an object the snapshot already holds (the cache is
/// updated before reconcile runs), so a new stream's record is never collected.
pub async fn collect(
    registry: &dyn OperatorRegistry,
    existing: impl FnOnce() -> HashSet<StreamId>,
    scope: &Scope,
) -> Result<Vec<StreamId>> {
    let records = registry.list_streams().await?;
    let orphaned = orphans(&records, &existing(), scope);
    for id in &orphaned {
        remove_record(registry, id).await?;
        tracing::info!(stream = %id, "removed orphaned registry record");
    }
    Ok(orphaned)
}

/// The ids of the LiveStreams the controller knows.
pub fn ids_in(store: &Streams) -> HashSet<StreamId> {
    store.state().iter().filter_map(|ls| ls.stream_id()).collect()
}

/// Collects orphans when the store is ready and every `every` after that, until dropped.
pub async fn run(registry: &dyn OperatorRegistry, store: Streams, scope: Scope, every: Duration) {
    if !store.wait_until_ready().await {
        // The store's writer is gone, so the controller is stopping: nothing left to collect.
        return futures::future::pending().await;
    }
    loop {
        if let Err(e) = collect(registry, || ids_in(&store), &scope).await {
            tracing::warn!(error = %e, "orphan collection failed; retrying at the next interval");
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamfleet_registry::{KeyHash, MemoryRegistry, TakeoverPolicy};

    fn record(name: &str) -> StreamRecord {
        record_in("media", name)
    }

    fn record_in(ns: &str, name: &str) -> StreamRecord {
        StreamRecord {
            id: StreamId::new(ns, name),
            key_hash: KeyHash::of_key(name),
            key_scheme: streamfleet_registry::KeyScheme::Sha256,
            playback_name: name.into(),
            enabled: true,
            max_viewers: None,
            takeover: TakeoverPolicy::Reject,
            generation: 1,
            srt_passphrase: None,
        }
    }

    #[tokio::test]
    async fn only_records_without_a_livestream_are_collected() {
        let reg = MemoryRegistry::new();
        for n in ["kept", "orphan"] {
            reg.put_stream(&record(n)).await.expect("put");
        }
        let existing = HashSet::from([StreamId::new("media", "kept"), StreamId::new("media", "no-record")]);
        let removed = collect(&reg, || existing, &Scope::Cluster).await.expect("collected");
        assert_eq!(removed, vec![StreamId::new("media", "orphan")]);
        let left: Vec<_> = reg.list_streams().await.expect("list").into_iter().map(|r| r.id.name).collect();
        assert_eq!(left, vec!["kept".to_string()]);
    }

    #[tokio::test]
    async fn a_namespace_scoped_operator_never_collects_records_outside_its_namespaces() {
        let reg = MemoryRegistry::new();
        reg.put_stream(&record_in("media", "orphan")).await.expect("put");
        reg.put_stream(&record_in("elsewhere", "not-mine")).await.expect("put");
        let scope = Scope::from_list(&["media".to_string()]);
        let removed = collect(&reg, HashSet::new, &scope).await.expect("collected");
        assert_eq!(removed, vec![StreamId::new("media", "orphan")]);
        let left: Vec<_> = reg.list_streams().await.expect("list").into_iter().map(|r| r.id).collect();
        assert_eq!(left, vec![StreamId::new("elsewhere", "not-mine")]);
    }
}
