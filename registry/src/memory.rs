//! In-memory registry: one process, no Redis. Serves the quick start and single-node use, and
//! keeps exactly the semantics of the Redis backend (same contract tests), including lease
//! expiry, so an edge behaves the same whichever backend it runs on.

// `RegistryError::AlreadyActive` carries the holder by value on purpose (see redis/mod.rs).
#![allow(clippy::result_large_err)]

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::Duration,
};

use async_trait::async_trait;
use tokio::time::Instant;

use crate::{
    backend::{EdgeRegistry, HolderUpdate, OperatorRegistry, RegistryStatus},
    error::{ConflictKind, RegistryError, Result},
    lease::{AcquireOptions, HolderInfo, Lease, LiveStatus, PublisherInfo, RenewOutcome, now_ms},
    record::{KeyHash, StreamId, StreamRecord},
};

/// The memory backend's epoch never changes: it cannot restart without its holders.
const EPOCH: u64 = 1;

pub struct MemoryRegistry {
    state: Mutex<State>,
    /// The change feed ([`OperatorRegistry::changes`]): the in-process counterpart of the Redis
    /// backend's `PUBLISH`, sent on the same changes.
    changes: tokio::sync::broadcast::Sender<crate::LiveChange>,
}

/// Signals a slow reader may fall behind by before it is told to resync.
const CHANGE_BACKLOG: usize = 4096;

impl Default for MemoryRegistry {
    fn default() -> Self {
        MemoryRegistry { state: Mutex::default(), changes: tokio::sync::broadcast::channel(CHANGE_BACKLOG).0 }
    }
}

#[derive(Default)]
struct State {
    streams: BTreeMap<StreamId, StreamRecord>,
    by_key: HashMap<KeyHash, StreamId>,
    by_playback: HashMap<String, StreamId>,
    leases: HashMap<StreamId, HeldLease>,
    /// When each stream's takeover cooldown ends: set by a takeover with the taker's cooldown
    /// (as the Redis backend's `takeover:{id}` key with PX) and outlives the lease that did it.
    cooldown_until: HashMap<StreamId, Instant>,
    viewers: HashMap<StreamId, HashMap<String, (u32, Instant)>>,
    /// maxViewers slots: player -> expiry, per stream (the Redis backend's `viewer_slots:{id}`).
    viewer_slots: HashMap<StreamId, HashMap<String, Instant>>,
    fence: u64,
}

struct HeldLease {
    token: String,
    expires: Instant,
    holder: HolderInfo,
    idle_since: Option<Instant>,
}

impl State {
    /// Drops an expired lease so every operation sees the same truth Redis would.
    fn live_lease(&mut self, id: &StreamId) -> Option<&mut HeldLease> {
        let now = Instant::now();
        if self.leases.get(id).is_some_and(|l| l.expires <= now) {
            self.leases.remove(id);
        }
        self.leases.get_mut(id)
    }

    fn record_for_key(&self, key: &KeyHash) -> Result<&StreamRecord> {
        let id = self
            .by_key
            .get(key)
            .ok_or_else(|| RegistryError::NotFound { what: format!("publish key {}…", key.short()) })?;
        let rec = self.streams.get(id).ok_or_else(|| RegistryError::NotFound { what: format!("stream {id}") })?;
        if !rec.enabled {
            return Err(RegistryError::Disabled { stream: rec.id.clone() });
        }
        Ok(rec)
    }
}

impl MemoryRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    fn signal(&self, id: &StreamId) {
        // No receiver is not an error: nobody follows the feed.
        let _ = self.changes.send(crate::LiveChange::Stream(id.clone()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every mutation is a few
        // assignments), so a poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl OperatorRegistry for MemoryRegistry {
    async fn put_stream(&self, rec: &StreamRecord) -> Result<()> {
        if !crate::record::valid_playback_name(&rec.playback_name) {
            return Err(RegistryError::Invalid(format!("playback name {:?} is not a DNS label", rec.playback_name)));
        }
        let mut st = self.lock();
        if let Some(owner) = st.by_key.get(&rec.key_hash).filter(|o| **o != rec.id) {
            return Err(RegistryError::Conflict { what: ConflictKind::PublishKey(rec.key_hash), owner: owner.clone() });
        }
        if let Some(owner) = st.by_playback.get(&rec.playback_name).filter(|o| **o != rec.id) {
            return Err(RegistryError::Conflict {
                what: ConflictKind::PlaybackName(rec.playback_name.clone()),
                owner: owner.clone(),
            });
        }
        if let Some(old) = st.streams.get(&rec.id).cloned() {
            st.by_key.remove(&old.key_hash);
            st.by_playback.remove(&old.playback_name);
        }
        st.by_key.insert(rec.key_hash, rec.id.clone());
        st.by_playback.insert(rec.playback_name.clone(), rec.id.clone());
        st.streams.insert(rec.id.clone(), rec.clone());
        Ok(())
    }

    async fn delete_stream(&self, id: &StreamId) -> Result<bool> {
        let mut st = self.lock();
        st.leases.remove(id);
        st.viewers.remove(id);
        st.cooldown_until.remove(id);
        match st.streams.remove(id) {
            Some(old) => {
                st.by_key.remove(&old.key_hash);
                st.by_playback.remove(&old.playback_name);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn get_stream(&self, id: &StreamId) -> Result<Option<StreamRecord>> {
        Ok(self.lock().streams.get(id).cloned())
    }

    async fn list_streams(&self) -> Result<Vec<StreamRecord>> {
        Ok(self.lock().streams.values().cloned().collect())
    }

    async fn revoke(&self, id: &StreamId) -> Result<bool> {
        let mut st = self.lock();
        let had = st.live_lease(id).is_some();
        st.leases.remove(id);
        drop(st);
        if had {
            self.signal(id);
        }
        Ok(had)
    }

    async fn epoch(&self) -> Result<u64> {
        Ok(EPOCH)
    }

    fn changes(&self) -> futures::stream::BoxStream<'static, crate::LiveChange> {
        let rx = self.changes.subscribe();
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            use tokio::sync::broadcast::error::RecvError;
            match rx.recv().await {
                Ok(change) => Some((change, rx)),
                Err(RecvError::Lagged(_)) => Some((crate::LiveChange::Resync, rx)),
                Err(RecvError::Closed) => None,
            }
        }))
    }
}

#[async_trait]
impl EdgeRegistry for MemoryRegistry {
    async fn lookup(&self, key: &KeyHash) -> Result<StreamRecord> {
        self.lock().record_for_key(key).cloned()
    }

    async fn stream_records(&self) -> Result<Vec<StreamRecord>> {
        OperatorRegistry::list_streams(self).await
    }

    async fn lookup_playback(&self, name: &str) -> Result<StreamRecord> {
        let st = self.lock();
        st.by_playback
            .get(name)
            .and_then(|id| st.streams.get(id))
            .cloned()
            .ok_or_else(|| RegistryError::NotFound { what: format!("playback name {name:?}") })
    }

    async fn acquire_as(
        &self,
        key: &KeyHash,
        who: &PublisherInfo,
        opts: &AcquireOptions,
        token: &str,
    ) -> Result<Lease> {
        let mut st = self.lock();
        let rec = st.record_for_key(key)?.clone();
        let now = Instant::now();
        let mut took_over = false;
        // Already mine: the same admission asking again is granted the lease it holds.
        if let Some(cur) = st.live_lease(&rec.id)
            && cur.token == token
        {
            cur.expires = now + opts.ttl;
            let holder = cur.holder.clone();
            let fence = holder.fence;
            return Ok(Lease {
                stream: rec.id,
                key_hash: *key,
                key_hash_alt: None,
                token: token.to_string(),
                fence,
                epoch: EPOCH,
                holder,
                took_over: false,
            });
        }
        if let Some(cur) = st.live_lease(&rec.id) {
            let holder = cur.holder.clone();
            let idle_for = cur.idle_since.map(|t| now.saturating_duration_since(t));
            let cooldown_left = st
                .cooldown_until
                .get(&rec.id)
                .map(|until| until.saturating_duration_since(now))
                .filter(|d| !d.is_zero());
            let decision = crate::takeover::decide(rec.takeover, idle_for, opts.idle_threshold, cooldown_left);
            if let crate::takeover::Decision::Refuse { retry_in } = decision {
                return Err(RegistryError::AlreadyActive { stream: rec.id.clone(), holder, retry_in });
            }
            took_over = true;
        }
        if took_over {
            st.cooldown_until.insert(rec.id.clone(), now + opts.takeover_cooldown);
        }
        st.fence += 1;
        let holder = HolderInfo {
            edge: who.edge.clone(),
            remote_addr: who.remote_addr.clone(),
            relay_addr: who.relay_addr.clone(),
            protocol: who.protocol,
            since_ms: now_ms(),
            fence: st.fence,
            idle_since_ms: None,
            ingest_kbps: None,
            media: None,
        };
        let token = token.to_string();
        st.leases.insert(
            rec.id.clone(),
            HeldLease { token: token.clone(), expires: now + opts.ttl, holder: holder.clone(), idle_since: None },
        );
        let fence = st.fence;
        drop(st);
        self.signal(&rec.id);
        Ok(Lease { stream: rec.id, key_hash: *key, key_hash_alt: None, token, fence, epoch: EPOCH, holder, took_over })
    }

    async fn reclaim(&self, lease: &mut Lease, ttl: Duration) -> Result<()> {
        // The memory backend never loses leases behind a holder's back; a reclaim is a plain
        // re-acquire that must find the stream free and the key valid.
        let mut st = self.lock();
        let rec = match (st.record_for_key(&lease.key_hash), lease.key_hash_alt) {
            (Ok(rec), _) => rec.clone(),
            // The record was rewritten under the key's other hash (a legacy record rehashed).
            (Err(RegistryError::NotFound { .. }), Some(alt)) => {
                let rec = st.record_for_key(&alt)?.clone();
                lease.key_hash_alt = Some(std::mem::replace(&mut lease.key_hash, alt));
                rec
            }
            (Err(e), _) => return Err(e),
        };
        if rec.id != lease.stream {
            return Err(RegistryError::NotFound { what: format!("stream {}", lease.stream) });
        }
        if let Some(cur) = st.live_lease(&rec.id)
            && cur.token != lease.token
        {
            return Err(RegistryError::AlreadyActive { stream: rec.id, holder: cur.holder.clone(), retry_in: None });
        }
        st.fence += 1;
        lease.fence = st.fence;
        lease.epoch = EPOCH;
        lease.holder.fence = st.fence;
        lease.holder.idle_since_ms = None;
        let held = HeldLease {
            token: lease.token.clone(),
            expires: Instant::now() + ttl,
            holder: lease.holder.clone(),
            idle_since: None,
        };
        st.leases.insert(rec.id.clone(), held);
        drop(st);
        self.signal(&rec.id);
        Ok(())
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<RenewOutcome> {
        let mut st = self.lock();
        match st.live_lease(&lease.stream) {
            Some(cur) if cur.token == lease.token => {
                cur.expires = Instant::now() + ttl;
                Ok(RenewOutcome::Renewed)
            }
            Some(_) => Ok(RenewOutcome::HeldByOther),
            None => Ok(RenewOutcome::Missing { registry_restarted: false }),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        let mut st = self.lock();
        if st.live_lease(&lease.stream).is_some_and(|cur| cur.token == lease.token) {
            st.leases.remove(&lease.stream);
            drop(st);
            self.signal(&lease.stream);
            return Ok(true);
        }
        Ok(false)
    }

    async fn update_holder(&self, lease: &Lease, update: HolderUpdate) -> Result<()> {
        let mut st = self.lock();
        match st.live_lease(&lease.stream) {
            Some(cur) if cur.token == lease.token => {
                // Signalled as update_holder.lua does: idleness flipped, or the health verdict.
                let mut changed = match update.idle {
                    Some(true) => cur.idle_since.is_none(),
                    Some(false) => cur.idle_since.is_some(),
                    None => false,
                };
                match update.idle {
                    Some(true) if cur.idle_since.is_none() => {
                        cur.idle_since = Some(Instant::now());
                        cur.holder.idle_since_ms = Some(now_ms());
                    }
                    Some(false) => {
                        cur.idle_since = None;
                        cur.holder.idle_since_ms = None;
                    }
                    _ => {}
                }
                if let Some(kbps) = update.ingest_kbps {
                    cur.holder.ingest_kbps = Some(kbps);
                }
                if let Some(media) = update.media.filter(|m| m.encode().is_some()) {
                    let verdict = |m: &crate::lease::HolderMedia| (m.healthy, m.reason.clone());
                    changed |= cur.holder.media.as_deref().map(verdict) != Some(verdict(&media));
                    cur.holder.media = Some(Box::new(media));
                }
                drop(st);
                if changed {
                    self.signal(&lease.stream);
                }
                Ok(())
            }
            Some(_) => {
                Err(RegistryError::LeaseLost { stream: lease.stream.clone(), reason: crate::error::LossReason::Stolen })
            }
            None => Err(RegistryError::LeaseLost {
                stream: lease.stream.clone(),
                reason: crate::error::LossReason::Revoked,
            }),
        }
    }

    async fn set_viewers(&self, edge: &str, counts: &[(StreamId, u32)], ttl: Duration) -> Result<()> {
        let mut st = self.lock();
        let expires = Instant::now() + ttl;
        let mut changed = Vec::new();
        for (id, n) in counts {
            let before = st.viewers.entry(id.clone()).or_default().insert(edge.to_string(), (*n, expires));
            if before.map_or(0, |(b, _)| b) != *n {
                changed.push(id);
            }
        }
        drop(st);
        for id in changed {
            let _ = self.changes.send(crate::LiveChange::Viewers(id.clone()));
        }
        Ok(())
    }

    async fn reserve_viewer(&self, id: &StreamId, player: &str, max: u32, ttl: Duration) -> Result<bool> {
        let mut st = self.lock();
        let now = Instant::now();
        let slots = st.viewer_slots.entry(id.clone()).or_default();
        slots.retain(|_, exp| *exp > now);
        if !slots.contains_key(player) && slots.len() >= max as usize {
            return Ok(false);
        }
        slots.insert(player.to_string(), now + ttl);
        Ok(true)
    }

    async fn release_viewer(&self, id: &StreamId, player: &str) -> Result<bool> {
        let mut st = self.lock();
        let Some(slots) = st.viewer_slots.get_mut(id) else { return Ok(false) };
        let held = slots.remove(player).is_some();
        if slots.is_empty() {
            st.viewer_slots.remove(id);
        }
        Ok(held)
    }

    async fn renew_viewers(&self, players: &[(StreamId, String)], ttl: Duration) -> Result<()> {
        let mut st = self.lock();
        let now = Instant::now();
        for (id, player) in players {
            if let Some(exp) = st.viewer_slots.get_mut(id).and_then(|s| s.get_mut(player))
                && *exp > now
            {
                *exp = now + ttl;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl RegistryStatus for MemoryRegistry {
    async fn live_status(&self, id: &StreamId) -> Result<LiveStatus> {
        let mut st = self.lock();
        let now = Instant::now();
        let (holder, lease_ms_left) = match st.live_lease(id) {
            Some(l) => {
                let left = l.expires.saturating_duration_since(now).as_millis();
                (Some(l.holder.clone()), Some(u64::try_from(left).unwrap_or(u64::MAX)))
            }
            None => (None, None),
        };
        let mut viewers_by_edge = BTreeMap::new();
        if let Some(per_edge) = st.viewers.get_mut(id) {
            per_edge.retain(|_, (_, exp)| *exp > now);
            for (edge, (n, _)) in per_edge.iter() {
                if *n > 0 {
                    viewers_by_edge.insert(edge.clone(), *n);
                }
            }
        }
        let viewers = viewers_by_edge.values().sum();
        Ok(LiveStatus { holder, viewers, viewers_by_edge, lease_ms_left })
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
