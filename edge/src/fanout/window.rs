//! The write window's flusher (`--write-window`): writes each player's queued media when the
//! player's window ends, with no task wake-up or timer per player.
//!
//! Who writes: the publishers. A publisher's task is awake for every message it receives
//! anyway (a 30 fps stream with audio sends about 80 a second), so after handing a message to
//! its players it also writes every player of the process whose window has ended
//! ([`WindowFlusher::write_due`]). Windows end on a fine grid shared by the whole process
//! ([`window_end`]), so players due together are taken in one go. This
//! process's own task only steps in when no publisher has written for a whole window (every
//! publisher paused or gone): then it wakes at the players' deadlines itself, so what is queued
//! still goes out, at most a window late. A timer task waking at every grid step instead cost
//! 67 wake-ups a second with a 120 ms window, on top of the publisher's own.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

use super::spread::write_spread;
use crate::sync::lock;

/// What the flusher writes when a window ends (an outbox; a trait so the flusher does not
/// depend on the queue it serves). Called once per player and window, not per frame.
pub(crate) trait Windowed: Send + Sync + 'static {
    fn window_elapsed(self: Arc<Self>, now: Instant);
}

/// Players waiting for their window to end, by when it ends.
pub(crate) struct WindowFlusher {
    state: Mutex<Due>,
    /// Something was scheduled while nothing was: the fallback task has work again.
    scheduled: Notify,
    started: OnceLock<()>,
    window: Duration,
}

#[derive(Default)]
struct Due {
    at: BTreeMap<Instant, Vec<Arc<dyn Windowed>>>,
    /// When a publisher last looked for due players.
    publisher_seen: Option<Instant>,
}

impl WindowFlusher {
    pub(crate) fn new(window: Duration) -> Arc<WindowFlusher> {
        Arc::new(WindowFlusher {
            state: Mutex::new(Due::default()),
            scheduled: Notify::new(),
            started: OnceLock::new(),
            window,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Due> {
        lock(&self.state)
    }

    /// Writes `outbox`'s queue at `at` (once; the outbox registers again for later media).
    /// Starts the fallback task on first use (on the caller's runtime).
    pub(crate) fn schedule(self: &Arc<Self>, outbox: Arc<dyn Windowed>, at: Instant) {
        self.started.get_or_init(|| {
            tokio::spawn(self.clone().run());
        });
        let mut due = self.lock();
        let was_empty = due.at.is_empty();
        due.at.entry(at).or_default().push(outbox);
        drop(due);
        if was_empty {
            self.scheduled.notify_one();
        }
    }

    /// Writes every player whose window has ended by `now`. Called by publishers after each
    /// message (see the module docs); cheap when nobody is due (one uncontended lock).
    pub(crate) fn write_due(&self, now: Instant) {
        let batch = {
            let mut due = self.lock();
            due.publisher_seen = Some(now);
            take_due(&mut due, now)
        };
        write_all(batch, now);
    }

    /// The fallback: sleeps while publishers do the writing, and writes due players itself
    /// once none has for a window.
    async fn run(self: Arc<Self>) {
        loop {
            match self.fallback_step(Instant::now()) {
                Step::Idle => self.scheduled.notified().await,
                Step::Wrote => {}
                Step::SleepUntil(at) => tokio::time::sleep_until(at).await,
            }
        }
    }

    fn fallback_step(&self, now: Instant) -> Step {
        let mut due = self.lock();
        let Some(first) = due.at.keys().next().copied() else { return Step::Idle };
        let wake = due.publisher_seen.map_or(first, |seen| first.max(seen + self.window));
        if wake > now {
            return Step::SleepUntil(wake);
        }
        let batch = take_due(&mut due, now);
        drop(due);
        write_all(batch, now);
        Step::Wrote
    }
}

enum Step {
    /// Nothing scheduled: wait until something is.
    Idle,
    Wrote,
    SleepUntil(Instant),
}

fn take_due(due: &mut Due, now: Instant) -> Vec<Arc<dyn Windowed>> {
    let mut batch = Vec::new();
    while let Some(entry) = due.at.first_entry().filter(|e| *e.key() <= now) {
        batch.append(&mut entry.remove());
    }
    batch
}

fn write_all(mut batch: Vec<Arc<dyn Windowed>>, now: Instant) {
    write_spread(&mut batch, move |outbox| outbox.clone().window_elapsed(now));
}

/// When a window that starts `now` ends: `window` later, rounded up to a grid of `window / 32`
/// shared by the whole process, so that players due together share one entry of the flusher's
/// schedule (and its fallback task, when it runs, wakes once for all of them). The grid is fine
/// because publishers do the writing at their own messages: it adds at most 4 ms at 120 ms.
pub(super) fn window_end(now: Instant, window: Duration) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let grid = (window / 32).max(Duration::from_millis(1)).as_nanos();
    let due = (now + window).saturating_duration_since(epoch).as_nanos();
    let rounded = due.div_ceil(grid) * grid;
    epoch + Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX))
}
