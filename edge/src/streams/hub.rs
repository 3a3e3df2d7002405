//! The streams present on this edge (published here, played here, or both), by stream id.
//!
//! A stream's lifetime is explicit: publishers, players and relay pulls hold a [`HeldStream`]
//! (from [`StreamHub::get_or_create`] or [`StreamHub::hold`]), and the stream leaves the hub
//! (with its per-stream metrics) when the last one is dropped. The holder count changes only
//! under the hub's lock, so taking a hold and letting the last one go cannot interleave. Plain
//! `Arc<Stream>` clones (the streams API listing, a look-up with [`StreamHub::get`]) do not
//! count and cannot keep a stream in the hub: the reference count of the `Arc` says nothing
//! about who still needs the stream, only the holds do.

use std::{
    collections::HashMap,
    ops::Deref,
    sync::{Arc, Mutex},
};

use streamfleet_registry::{StreamId, StreamRecord};

use super::{
    gop_budget::{GopBudget, GopLimits},
    health::HealthRules,
    stream::Stream,
};
use crate::sync::lock;

/// Told when a stream leaves this edge (the metrics drop its per-stream series); a trait so
/// the streams do not depend on the metrics.
pub(crate) trait HubObserver: Send + Sync + 'static {
    fn stream_removed(&self, playback: &str);
}

/// A stream in the hub and how many [`HeldStream`]s it has.
struct Entry {
    stream: Arc<Stream>,
    holders: usize,
}

/// The streams by id, and those replaced under the same id (after a playback-name change)
/// while still held, by address.
#[derive(Default)]
struct Table {
    current: HashMap<StreamId, Entry>,
    replaced: HashMap<usize, Entry>,
}

struct Inner {
    table: Mutex<Table>,
    gop: GopLimits,
    health_rules: HealthRules,
    observer: Arc<dyn HubObserver>,
}

pub(crate) struct StreamHub {
    inner: Arc<Inner>,
}

/// One holder's claim on a stream: the stream stays in the hub while any exists. Dereferences
/// to the stream's `Arc`; cloning it takes another hold.
pub(crate) struct HeldStream {
    stream: Arc<Stream>,
    hub: Arc<Inner>,
}

impl Deref for HeldStream {
    type Target = Arc<Stream>;

    fn deref(&self) -> &Arc<Stream> {
        &self.stream
    }
}

impl Clone for HeldStream {
    fn clone(&self) -> HeldStream {
        let mut table = self.hub.lock();
        let key = Arc::as_ptr(&self.stream) as usize;
        let entry = match table.current.get_mut(&self.stream.id) {
            Some(e) if Arc::ptr_eq(&e.stream, &self.stream) => Some(e),
            _ => table.replaced.get_mut(&key),
        };
        // This hold exists, so its entry does too.
        if let Some(e) = entry {
            e.holders += 1;
        }
        HeldStream { stream: self.stream.clone(), hub: self.hub.clone() }
    }
}

impl Drop for HeldStream {
    fn drop(&mut self) {
        self.hub.let_go(&self.stream);
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Every change leaves the table consistent; a poisoned one is still valid.
        lock(&self.table)
    }

    fn let_go(&self, stream: &Arc<Stream>) {
        let mut table = self.lock();
        if let Some(e) = table.current.get_mut(&stream.id)
            && Arc::ptr_eq(&e.stream, stream)
        {
            e.holders -= 1;
            if e.holders == 0 {
                table.current.remove(&stream.id);
                self.observer.stream_removed(&stream.playback);
            }
            return;
        }
        let key = Arc::as_ptr(stream) as usize;
        if let Some(e) = table.replaced.get_mut(&key) {
            e.holders -= 1;
            if e.holders == 0 {
                table.replaced.remove(&key);
                // Its series goes unless the stream that replaced it uses the same name.
                if !table.current.values().any(|c| c.stream.playback == stream.playback) {
                    self.observer.stream_removed(&stream.playback);
                }
            }
        }
    }
}

impl StreamHub {
    pub(crate) fn new(gop: GopLimits, observer: Arc<dyn HubObserver>) -> StreamHub {
        StreamHub {
            inner: Arc::new(Inner {
                table: Mutex::new(Table::default()),
                gop,
                health_rules: HealthRules::default(),
                observer,
            }),
        }
    }

    /// When this hub's streams count as unhealthy (`--health-keyframe-interval`); call before
    /// the hub is shared.
    pub(crate) fn with_health_rules(self, rules: HealthRules) -> StreamHub {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.health_rules = rules;
                StreamHub { inner: Arc::new(inner) }
            }
            Err(inner) => StreamHub { inner },
        }
    }

    /// What the GOP caches of this edge's streams hold together, and their bound.
    pub(crate) fn gop_budget(&self) -> &GopBudget {
        &self.inner.gop.budget
    }

    fn held(&self, entry: &mut Entry) -> HeldStream {
        entry.holders += 1;
        HeldStream { stream: entry.stream.clone(), hub: self.inner.clone() }
    }

    /// A hold on the stream of `record`, created if this edge does not have it yet.
    pub(crate) fn get_or_create(&self, record: &StreamRecord) -> HeldStream {
        let mut table = self.inner.lock();
        let table = &mut *table;
        // If the record's playback name changed while the old stream object is still held,
        // new holders get a fresh object under the new name.
        if let Some(e) = table.current.get_mut(&record.id) {
            if e.stream.playback == record.playback_name {
                e.stream.set_record(record);
                return self.held(e);
            }
            if let Some(old) = table.current.remove(&record.id) {
                table.replaced.insert(Arc::as_ptr(&old.stream) as usize, old);
            }
        }
        let stream = Arc::new(Stream::with_rules(record.clone(), self.inner.gop.clone(), self.inner.health_rules));
        let entry = table.current.entry(record.id.clone()).or_insert(Entry { stream, holders: 0 });
        self.held(entry)
    }

    /// A hold on a stream this edge has, if it has it.
    pub(crate) fn hold(&self, id: &StreamId) -> Option<HeldStream> {
        let mut table = self.inner.lock();
        table.current.get_mut(id).map(|e| self.held(e))
    }

    /// Gives back a hold (the same as dropping it; named for the call sites).
    pub(crate) fn release(&self, stream: HeldStream) {
        drop(stream);
    }

    /// The record of a stream live on this edge under `playback` (players can still join it
    /// while the registry is unreachable).
    pub(crate) fn live_record(&self, playback: &str) -> Option<StreamRecord> {
        self.inner
            .lock()
            .current
            .values()
            .find(|e| e.stream.playback == playback && e.stream.is_live())
            .map(|e| e.stream.record())
    }

    /// A look at a stream without holding it (it may leave the hub meanwhile).
    pub(crate) fn get(&self, id: &StreamId) -> Option<Arc<Stream>> {
        self.inner.lock().current.get(id).map(|e| e.stream.clone())
    }

    pub(crate) fn list(&self) -> Vec<Arc<Stream>> {
        let mut v: Vec<_> = self.inner.lock().current.values().map(|e| e.stream.clone()).collect();
        v.sort_by(|a, b| a.playback.cmp(&b.playback));
        v
    }

    /// Players per stream on this edge (for the registry's viewer counts).
    pub(crate) fn viewer_counts(&self) -> Vec<(StreamId, u32)> {
        self.inner.lock().current.values().map(|e| (e.stream.id.clone(), e.stream.player_count() as u32)).collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let t = self.inner.lock();
        t.current.len() + t.replaced.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Removed(AtomicUsize);

    impl HubObserver for Removed {
        fn stream_removed(&self, _: &str) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn hub() -> (StreamHub, Arc<Removed>) {
        let removed = Arc::new(Removed::default());
        (StreamHub::new(GopLimits::per_stream(1 << 20), removed.clone()), removed)
    }

    #[test]
    fn release_removes_only_unheld_streams() {
        let (hub, removed) = hub();
        let rec = crate::streams::stream::tests::record("default", "demo");
        let id = rec.id.clone();
        let a = hub.get_or_create(&rec);
        let b = hub.get_or_create(&rec);
        assert!(Arc::ptr_eq(&a, &b));
        hub.release(a);
        assert!(hub.get(&id).is_some(), "b still holds it");
        hub.release(b);
        assert!(hub.get(&id).is_none());
        assert_eq!(removed.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_look_at_the_stream_during_the_last_release_does_not_keep_it() {
        // The streams API lists (clones) the stream just as its last holder releases it: the
        // stream must still leave, and its metric series with it.
        let (hub, removed) = hub();
        let rec = crate::streams::stream::tests::record("default", "demo");
        let held = hub.get_or_create(&rec);
        let listing = hub.list();
        let looked_up = hub.get(&rec.id);
        hub.release(held);
        drop((listing, looked_up));
        assert_eq!(hub.len(), 0, "the stream leaked");
        assert_eq!(removed.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn holds_racing_listings_and_each_other_leave_nothing_behind() {
        // Publishers/players taking and dropping holds on one stream while another thread keeps
        // listing it (the race the reference count lost): once every hold is gone, so is the
        // stream, and every removal was reported once per stream that left.
        let (hub, removed) = hub();
        let hub = Arc::new(hub);
        let rec = crate::streams::stream::tests::record("default", "demo");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let lister = {
            let (hub, stop) = (hub.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let l = hub.list();
                    std::hint::black_box(&l);
                }
            })
        };
        let holders: Vec<_> = (0..3)
            .map(|_| {
                let (hub, rec) = (hub.clone(), rec.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        let h = hub.get_or_create(&rec);
                        let again = h.clone();
                        drop(h);
                        hub.release(again);
                    }
                })
            })
            .collect();
        for h in holders {
            h.join().unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        lister.join().unwrap();
        assert_eq!(hub.len(), 0, "the stream leaked");
        assert!(removed.0.load(Ordering::SeqCst) >= 1);
    }

    #[test]
    fn a_stream_replaced_under_a_new_name_leaves_when_its_last_holder_does() {
        let (hub, removed) = hub();
        let old = crate::streams::stream::tests::record("default", "demo");
        let mut renamed = old.clone();
        renamed.playback_name = "demo2".into();
        let a = hub.get_or_create(&old);
        let b = hub.get_or_create(&renamed);
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(hub.len(), 2);
        drop(a);
        assert_eq!(hub.len(), 1);
        drop(b);
        assert_eq!(hub.len(), 0);
        assert_eq!(removed.0.load(Ordering::SeqCst), 2);
    }
}
