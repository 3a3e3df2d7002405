//! The relay pulls of one edge, by stream: how many local players each has, and the idle timer
//! that stops a pull `--relay-idle-timeout` after its last player left (unless one attached
//! again meanwhile). What a pull does is [`super::pull`]'s.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use streamfleet_registry::StreamId;
use tokio::task::AbortHandle;

use crate::sync::lock;

/// Idle timer generations (see [`Entry::idle_generation`]).
static NEXT_IDLE_GENERATION: AtomicU64 = AtomicU64::new(1);

struct Entry {
    /// Local players attached.
    users: usize,
    /// Set anew whenever the count drops to zero: only the latest idle timer may stop the pull.
    idle_generation: u64,
    task: AbortHandle,
}

struct Inner {
    entries: Mutex<HashMap<StreamId, Entry>>,
    idle_timeout: Duration,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, Entry>> {
        // Inserts, removes and counter updates only: a poisoned map is still consistent.
        lock(&self.entries)
    }

    fn stop_if_idle(&self, id: &StreamId, generation: u64) {
        let mut map = self.lock();
        if map.get(id).is_some_and(|e| e.users == 0 && e.idle_generation == generation)
            && let Some(e) = map.remove(id)
        {
            e.task.abort();
            tracing::info!(stream = %id, "relay pull stopped: no local players");
        }
    }
}

/// The pulls of one edge, by stream.
pub(crate) struct Pulls {
    inner: Arc<Inner>,
}

/// A local player's hold on its stream's pull; dropping it may start the idle timer.
pub(crate) struct PullGuard {
    inner: Arc<Inner>,
    id: StreamId,
}

impl Drop for PullGuard {
    fn drop(&mut self) {
        let generation = {
            let mut map = self.inner.lock();
            let Some(e) = map.get_mut(&self.id) else { return };
            e.users = e.users.saturating_sub(1);
            if e.users > 0 {
                return;
            }
            // Unique across entries, so a timer of a removed entry can never match its successor.
            e.idle_generation = NEXT_IDLE_GENERATION.fetch_add(1, Ordering::Relaxed);
            e.idle_generation
        };
        let inner = self.inner.clone();
        let id = self.id.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    tokio::time::sleep(inner.idle_timeout).await;
                    inner.stop_if_idle(&id, generation);
                });
            }
            // Outside a runtime (process teardown) there is nothing left to wait for.
            Err(_) => inner.stop_if_idle(&id, generation),
        }
    }
}

impl Pulls {
    pub(crate) fn new(idle_timeout: Duration) -> Pulls {
        Pulls { inner: Arc::new(Inner { entries: Mutex::new(HashMap::new()), idle_timeout }) }
    }

    /// One more local player of stream `id`; `start` starts its pull if it has none.
    pub(super) fn attach(&self, id: &StreamId, start: impl FnOnce() -> AbortHandle) -> PullGuard {
        let mut map = self.inner.lock();
        match map.get_mut(id) {
            Some(e) => e.users += 1,
            None => {
                map.insert(id.clone(), Entry { users: 1, idle_generation: 0, task: start() });
            }
        }
        PullGuard { inner: self.inner.clone(), id: id.clone() }
    }
}
