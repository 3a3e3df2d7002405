//! The streams present on this edge (published here, played here, or both), by stream id.
//! A stream stays while anyone holds it: publisher and player tasks hold an `Arc<Stream>` and
//! give it back with [`StreamHub::release`], which removes it (and its per-stream metrics) once
//! the last holder is gone.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use streamfleet_registry::{StreamId, StreamRecord};

use super::stream::Stream;
use crate::sync::lock;

/// Told when a stream leaves this edge (the metrics drop its per-stream series); a trait so
/// the streams do not depend on the metrics.
pub(crate) trait HubObserver: Send + Sync + 'static {
    fn stream_removed(&self, playback: &str);
}

pub(crate) struct StreamHub {
    streams: Mutex<HashMap<StreamId, Arc<Stream>>>,
    max_gop_bytes: usize,
    observer: Arc<dyn HubObserver>,
}

impl StreamHub {
    pub(crate) fn new(max_gop_bytes: usize, observer: Arc<dyn HubObserver>) -> StreamHub {
        StreamHub { streams: Mutex::new(HashMap::new()), max_gop_bytes, observer }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, Arc<Stream>>> {
        // Inserts and removes only; a poisoned map is still a valid map.
        lock(&self.streams)
    }

    /// The stream of `record`, created if this edge does not have it yet.
    pub(crate) fn get_or_create(&self, record: &StreamRecord) -> Arc<Stream> {
        let mut map = self.lock();
        // If the record's playback name changed while the old stream object is still in use,
        // new holders get a fresh object under the new name.
        if let Some(s) = map.get(&record.id)
            && s.playback == record.playback_name
        {
            s.set_record(record);
            return s.clone();
        }
        let s = Arc::new(Stream::new(record.clone(), self.max_gop_bytes));
        map.insert(record.id.clone(), s.clone());
        s
    }

    /// The record of a stream live on this edge under `playback` (players can still join it
    /// while the registry is unreachable).
    pub(crate) fn live_record(&self, playback: &str) -> Option<StreamRecord> {
        self.lock().values().find(|s| s.playback == playback && s.is_live()).map(|s| s.record())
    }

    pub(crate) fn get(&self, id: &StreamId) -> Option<Arc<Stream>> {
        self.lock().get(id).cloned()
    }

    /// Gives back a holder's reference; drops the stream when nobody else holds it.
    pub(crate) fn release(&self, stream: Arc<Stream>) {
        let id = stream.id.clone();
        let playback = stream.playback.clone();
        let ptr = Arc::as_ptr(&stream);
        drop(stream);
        let mut map = self.lock();
        if let Some(s) = map.get(&id)
            && Arc::as_ptr(s) == ptr
            && Arc::strong_count(s) == 1
        {
            map.remove(&id);
            self.observer.stream_removed(&playback);
        }
    }

    pub(crate) fn list(&self) -> Vec<Arc<Stream>> {
        let mut v: Vec<_> = self.lock().values().cloned().collect();
        v.sort_by(|a, b| a.playback.cmp(&b.playback));
        v
    }

    /// Players per stream on this edge (for the registry's viewer counts).
    pub(crate) fn viewer_counts(&self) -> Vec<(StreamId, u32)> {
        self.lock().values().map(|s| (s.id.clone(), s.player_count() as u32)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_removes_only_unheld_streams() {
        let hub = StreamHub::new(1 << 20, Arc::new(crate::observe::Metrics::new().unwrap()));
        let rec = crate::streams::stream::tests::record("default", "demo");
        let id = rec.id.clone();
        let a = hub.get_or_create(&rec);
        let b = hub.get_or_create(&rec);
        assert!(Arc::ptr_eq(&a, &b));
        hub.release(a);
        assert!(hub.get(&id).is_some(), "b still holds it");
        hub.release(b);
        assert!(hub.get(&id).is_none());
    }
}
