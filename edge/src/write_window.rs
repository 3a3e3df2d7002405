//! The write window's flusher (`--write-batch`): one task per process that writes each
//! player's queued media when the player's window ends. Windows end on a grid shared by the
//! whole process ([`crate::fanout`]'s `window_end`), so one wake-up of this task serves every
//! player due in the same grid step, and a player costs one system call per window and no task
//! wake-up or timer of its own.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, OnceLock},
};

use tokio::{sync::Notify, time::Instant};

use crate::fanout::Outbox;

/// Players waiting for their window to end, by when it ends.
#[derive(Default)]
pub struct WindowFlusher {
    due: Mutex<BTreeMap<Instant, Vec<Arc<Outbox>>>>,
    /// An earlier deadline than the one the task sleeps towards was added.
    earlier: Notify,
    started: OnceLock<()>,
}

impl WindowFlusher {
    pub fn new() -> Arc<WindowFlusher> {
        Arc::new(WindowFlusher::default())
    }

    /// Writes `outbox`'s queue at `at` (once; the outbox registers again for later media).
    /// Starts the flusher task on first use (on the caller's runtime).
    pub(crate) fn schedule(self: &Arc<Self>, outbox: Arc<Outbox>, at: Instant) {
        self.started.get_or_init(|| {
            tokio::spawn(self.clone().run());
        });
        let mut due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        let first = due.keys().next().is_none_or(|k| at < *k);
        due.entry(at).or_default().push(outbox);
        drop(due);
        if first {
            self.earlier.notify_one();
        }
    }

    async fn run(self: Arc<Self>) {
        let mut batch: Vec<Arc<Outbox>> = Vec::new();
        loop {
            let next = {
                let mut due = self.due.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                while let Some(entry) = due.first_entry().filter(|e| *e.key() <= now) {
                    batch.append(&mut entry.remove());
                }
                due.keys().next().copied()
            };
            let now = Instant::now();
            for outbox in batch.drain(..) {
                outbox.window_elapsed(now);
            }
            match next {
                // Only due entries were taken: look again (new ones may have arrived).
                Some(at) if at <= Instant::now() => {}
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.earlier.notified() => {}
                    }
                }
                None => self.earlier.notified().await,
            }
        }
    }
}
